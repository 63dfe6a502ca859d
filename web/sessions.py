"""The web UI's sessions: Starlette's signed cookie, with three lifetimes.

- **Idle**: the cookie's signature is dated and re-signed on every answer;
  one older than PAAS_SESSION_IDLE_MINUTES is not accepted.
- **Absolute**: a session records when its user signed in; after
  PAAS_SESSION_HOURS it ends, however busy.
- **Revocation**: it carries its user's session version; a new password or a
  deleted user moves that on, and every older session ends at its next
  request (checked against the database on every request that has one).

The cookie is HttpOnly, SameSite=Lax and host-only; over HTTPS it is
``Secure`` and named ``__Host-paas_session`` (browsers then refuse it from
plain HTTP and from any other host or path).
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from paas import users
from paas.settings import Settings

__all__ = ["SessionBySchemeMiddleware", "SessionCheck", "start_session"]

PLAIN_COOKIE = "paas_session"
SECURE_COOKIE = "__Host-paas_session"
UNCHECKED = ("/static/", "/api/", "/hooks/", "/healthz", "/readyz")


def now() -> float:
    """Wall-clock seconds (sessions outlive processes, so not monotonic)."""
    return time.time()


def start_session(session: dict[str, Any], user: users.User) -> None:
    """A fresh session for ``user`` (nothing kept from before: no fixation)."""
    session.clear()
    session.update(user=user.username, sv=user.session_version, iat=int(now()))


class SessionBySchemeMiddleware:
    """The signed session cookie, Secure and __Host- named when the request came
    over HTTPS (nginx passes X-Forwarded-Proto; uvicorn trusts it from
    127.0.0.1) or when the public URL is https."""

    def __init__(self, app: ASGIApp, *, secret_key: str, settings: Settings) -> None:
        def sessions(secure: bool) -> SessionMiddleware:
            return SessionMiddleware(
                app,
                secret_key=secret_key,
                session_cookie=SECURE_COOKIE if secure else PLAIN_COOKIE,
                max_age=settings.session_idle_minutes * 60,
                same_site="lax",
                https_only=secure,
            )

        self.secure = sessions(True)
        self.plain = self.secure if settings.public_url.startswith("https://") else sessions(False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") in ("https", "wss")
        await (self.secure if https else self.plain)(scope, receive, send)


class SessionCheck:
    """Empties a session that has outlived PAAS_SESSION_HOURS or whose user's
    session version moved on (runs inside the session middleware)."""

    def __init__(self, app: ASGIApp, *, engine: Engine, settings: Settings) -> None:
        self.app = app
        self.engine = engine
        self.lifetime = settings.session_hours * 3600

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session: dict[str, Any] = scope.get("session") or {}
        checked = session.get("user") and not scope["path"].startswith(UNCHECKED)
        if checked and not await anyio.to_thread.run_sync(self.valid, dict(session)):
            session.clear()
        await self.app(scope, receive, send)

    def valid(self, session: dict[str, Any]) -> bool:
        started, version = session.get("iat"), session.get("sv")
        if not isinstance(started, int) or not isinstance(version, int):
            return False  # made before sessions were dated: sign in again
        if now() - started > self.lifetime:
            return False
        with Session(self.engine) as db:
            return users.session_version(db, str(session["user"])) == version
