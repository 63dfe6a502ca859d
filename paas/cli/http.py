"""The CLI's HTTP client for the REST API, and where it keeps its login.

The login (server URL and token) lives in ``<config dir>/paas/config.json``
with 0600 permissions; ``PAAS_URL`` and ``PAAS_TOKEN`` override it.

The token never goes over plain HTTP to anything but a loopback address,
unless the login says ``--insecure`` (``PAAS_INSECURE=1`` beside the
variables), and then every command says so.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import typer

from paas.errors import PaasError
from paas.files import atomic_write

__all__ = [
    "ApiClient",
    "ClientError",
    "Login",
    "config_path",
    "https_twin",
    "is_loopback_url",
    "load_login",
    "save_login",
]


class ClientError(PaasError):
    """A request to the control plane failed; the message is one line."""


def config_path() -> Path:
    return Path(typer.get_app_dir("paas")) / "config.json"


class Login(NamedTuple):
    url: str
    token: str
    insecure: bool = False  # the person said a token may cross the network in clear


def save_login(url: str, token: str, *, insecure: bool = False) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {"url": url.rstrip("/"), "token": token}
    if insecure:
        saved["insecure"] = True
    atomic_write(path, json.dumps(saved), mode=0o600)
    return path


def load_login() -> Login:
    url, token = os.environ.get("PAAS_URL", ""), os.environ.get("PAAS_TOKEN", "")
    insecure = os.environ.get("PAAS_INSECURE", "").lower() in ("1", "true", "yes", "on")
    if not (url and token):
        try:
            saved = json.loads(config_path().read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        if not url:
            insecure = insecure or saved.get("insecure") is True
        url = url or saved.get("url", "")
        token = token or saved.get("token", "")
    if not url or not token:
        raise ClientError("not logged in: run `paas login URL --token TOKEN` first")
    return Login(url.rstrip("/"), token, insecure)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine: localhost or a loopback address."""
    host = httpx.URL(url).host
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, *, insecure: bool) -> None:
    """Refuse to send a token over plain HTTP off this machine, unless told to."""
    if not url.startswith("http://") or is_loopback_url(url):
        return
    host = httpx.URL(url).host
    if not insecure:
        raise ClientError(
            f"refusing to send your token in clear to {url}: log in with https:// "
            f"(paas login https://{host} --token …), or add --insecure to send it anyway"
        )
    typer.echo(f"warning: your API token crosses the network in clear to {url} (--insecure)", err=True)


def https_twin(url: str, *, timeout: float = 5) -> str | None:
    """The same control plane over HTTPS, if it answers there with a valid
    certificate; found without sending any credential.

    Candidates: where a plain GET of ``/`` redirects to (an https:// URL on the
    same host, so a tampered redirect cannot send us elsewhere), then the
    host on HTTPS's own port."""
    plain = httpx.URL(url)
    candidates = []
    try:
        answer = httpx.get(url + "/", timeout=timeout, follow_redirects=False)
        target = httpx.URL(answer.headers.get("location", ""))
        if answer.is_redirect and target.scheme == "https" and target.host == plain.host:
            candidates.append(f"https://{target.netloc.decode('ascii')}")
    except (httpx.HTTPError, httpx.InvalidURL):
        pass
    candidates.append(f"https://[{plain.host}]" if ":" in plain.host else f"https://{plain.host}")
    for origin in dict.fromkeys(candidates):
        twin = origin + plain.path.rstrip("/")
        try:
            if httpx.get(twin + "/healthz", timeout=timeout).status_code == 200:
                return twin
        except httpx.HTTPError:
            continue
    return None


class ApiClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_transport(url, insecure=insecure)
        self._url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            transport=transport,
        )

    @classmethod
    def from_login(cls) -> ApiClient:
        login = load_login()
        return cls(login.url, login.token, insecure=login.insecure)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._reaching():
            response = self._http.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            raise ClientError(_error_text(response))
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def stream(self, path: str, **params: Any) -> Iterator[str]:
        """GET a streaming text answer, chunk by chunk, as it arrives."""
        with (
            self._reaching(),
            self._http.stream(
                "GET", f"/api/v1{path}", params=params, timeout=httpx.Timeout(30, read=None)
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise ClientError(_error_text(response))
            yield from response.iter_text()

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """httpx's failures inside, as one line naming the server."""
        try:
            yield
        except httpx.ConnectError:
            raise ClientError(f"cannot connect to {self._url}: is paas running?") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"request to {self._url} failed: {type(exc).__name__}") from None


def _error_text(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if response.status_code == 401:
        return "the server refused the token: run `paas login` with a valid one"
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for err in detail:
            loc = ".".join(str(p) for p in err.get("loc", []) if p not in ("body", "query", "path"))
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "invalid input: " + "; ".join(parts)
    return str(detail or f"HTTP {response.status_code}")
