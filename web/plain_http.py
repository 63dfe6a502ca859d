"""No credential over plain HTTP once the control plane has a certificate.

nginx passes plain-HTTP requests for the control host through to web (with
``X-Forwarded-Proto: http``). From a non-loopback address, once the control
plane's certificate is issued, web then:

- serves what must work either way: signed webhooks (GitHub may hold an
  ``http://`` URL) and the health probes;
- redirects a GET or HEAD without credentials to the same path over HTTPS;
- refuses everything else with 403, and logs it: an ``Authorization``
  header, a sign-in or any form that came in clear. A token that arrived
  this way has crossed the network in clear: the log says to revoke it.

Loopback clients (the CLI on the server itself, the agent, tests) may use
plain HTTP: their traffic never leaves the machine.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.types import ASGIApp, Receive, Scope, Send

from paas.models import CertState, Domain
from paas.settings import Settings

__all__ = ["PlainHttpGuard", "control_certificate_issued", "is_loopback"]

log = logging.getLogger("paas.web")

EITHER_SCHEME = ("/hooks/", "/healthz", "/readyz")
CHECK_SECONDS = 5.0  # how long the answer "has a certificate" is reused


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def control_certificate_issued(engine: Engine, settings: Settings) -> Callable[[], bool]:
    """Whether the control plane's certificate is issued, asked of the
    database at most every CHECK_SECONDS."""
    checked_at, answer = float("-inf"), False

    def issued() -> bool:
        nonlocal checked_at, answer
        now = time.monotonic()
        if now - checked_at >= CHECK_SECONDS:
            with Session(engine) as session:
                state = session.exec(
                    select(Domain.cert_state).where(
                        Domain.hostname == settings.control_host, col(Domain.app_id).is_(None)
                    )
                ).first()
            checked_at, answer = now, state == CertState.issued
        return answer

    return issued


class PlainHttpGuard:
    def __init__(self, app: ASGIApp, *, settings: Settings, has_certificate: Callable[[], bool]) -> None:
        self.app = app
        self.has_certificate = has_certificate
        port = "" if settings.https_port == 443 else f":{settings.https_port}"
        self.https_base = f"https://{settings.control_host}{port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"  # web serves no websockets
            or scope.get("scheme") != "http"
            or scope["path"].startswith(EITHER_SCHEME)
            or is_loopback((scope.get("client") or ("", 0))[0])
            or not self.has_certificate()
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        client = (scope.get("client") or ("?", 0))[0]
        method = scope.get("method", "GET")
        if method in ("GET", "HEAD") and b"authorization" not in headers:
            query = scope.get("query_string", b"").decode("latin-1")
            location = self.https_base + scope["path"] + (f"?{query}" if query else "")
            await _answer(send, 301, b"", [(b"location", location.encode("latin-1"))])
            return
        carried = (
            " with an API token: revoke it (paas admin tokens revoke)" if b"authorization" in headers else ""
        )
        log.warning("refused plain-HTTP %s %s from %s%s", method, scope["path"], client, carried)
        body = (
            b'{"detail":"this control plane takes credentials over HTTPS only: use '
            + self.https_base.encode()
            + b" (paas login "
            + self.https_base.encode()
            + b')"}'
        )
        await _answer(send, 403, body, [(b"content-type", b"application/json")])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
