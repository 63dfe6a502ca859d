"""The CLI's HTTP client for the REST API, and where it keeps its login.

The login (server URL and token) lives in ``<config dir>/paas/config.json``
with 0600 permissions; ``PAAS_URL`` and ``PAAS_TOKEN`` override it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer

from paas.errors import PaasError

__all__ = ["ApiClient", "ClientError", "config_path", "load_login", "save_login"]


class ClientError(PaasError):
    """A request to the control plane failed; the message is one line."""


def config_path() -> Path:
    return Path(typer.get_app_dir("paas")) / "config.json"


def save_login(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url.rstrip("/"), "token": token}, handle)
    os.chmod(path, 0o600)
    return path


def load_login() -> tuple[str, str]:
    url, token = os.environ.get("PAAS_URL", ""), os.environ.get("PAAS_TOKEN", "")
    if not (url and token):
        try:
            saved = json.loads(config_path().read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        url = url or saved.get("url", "")
        token = token or saved.get("token", "")
    if not url or not token:
        raise ClientError("not logged in: run `paas login URL --token TOKEN` first")
    return url.rstrip("/"), token


class ApiClient:
    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self._url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            transport=transport,
        )

    @classmethod
    def from_login(cls) -> ApiClient:
        return cls(*load_login())

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.ConnectError:
            raise ClientError(f"cannot connect to {self._url}: is paas running?") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"request to {self._url} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ClientError(_error_text(response))
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def stream(self, path: str, **params: Any) -> Iterator[str]:
        """GET a streaming text answer, chunk by chunk, as it arrives."""
        try:
            with self._http.stream(
                "GET", f"/api/v1{path}", params=params, timeout=httpx.Timeout(30, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_text(response))
                yield from response.iter_text()
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
