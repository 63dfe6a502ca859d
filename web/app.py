"""The control plane's FastAPI application, built by ``create_app(settings)``.

It never touches the Docker socket and never runs a subprocess: it records
intent in the database and the agent acts on it.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from starlette.middleware.sessions import SessionMiddleware

from paas.crypto import Keyring
from paas.db import current_revision, head_revision, make_engine
from paas.errors import PaasError
from paas.settings import Settings
from web import api, hooks, live, ui

__all__ = ["create_app"]


def create_app(
    settings: Settings, *, engine: Engine | None = None, keyring: Keyring | None = None
) -> FastAPI:
    """The web process's app. Its keyring never holds the private key: it can
    seal secrets but not open them (the agent's file is not even read)."""
    app = FastAPI(
        title="paas",
        version="0.1.0",
        description="A self-hosted mini-PaaS. Authenticate with `Authorization: Bearer <token>`.",
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings)
    app.state.keyring = keyring or Keyring(settings.keys_dir, private=False)
    app.state.login_limiter = ui.LoginLimiter()
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key or secrets.token_urlsafe(48),
        session_cookie="paas_session",
        max_age=settings.session_hours * 3600,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )

    @app.exception_handler(ui.NotSignedIn)
    async def _not_signed_in(request: Request, exc: ui.NotSignedIn) -> Response:
        return ui.login_redirect(request, exc)

    @app.exception_handler(PaasError)
    async def _paas_error(_request: Request, exc: PaasError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each rejected input back: that could be a secret.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/healthz", summary="The web process is up", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="The database is reachable and migrated",
        tags=["health"],
        responses={503: {"description": "Not ready, with the reason"}},
    )
    def readyz() -> JSONResponse:
        try:
            with app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = current_revision(app.state.engine)
        except Exception as exc:  # noqa: BLE001  (any DB failure means not ready)
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, 503)
        head = head_revision(settings)
        if current != head:
            return JSONResponse(
                {"status": "unavailable", "detail": f"database at {current}, code expects {head}"},
                503,
            )
        return JSONResponse({"status": "ok"})

    app.include_router(hooks.router, tags=["webhooks"])
    app.include_router(api.router, tags=["api"])
    app.include_router(live.router, tags=["api"])
    app.include_router(ui.router)
    return app
