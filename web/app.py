"""The control plane's FastAPI application, built by ``create_web_app(settings)``.

It never touches the Docker socket and never runs a subprocess: it records
intent in the database and the agent acts on it.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paas.crypto import Keyring
from paas.db import current_revision, database_full, head_revision, make_engine, on_job_queued
from paas.errors import PaasError
from paas.settings import Settings
from paas.version import version
from web.agent_client import agent_waker
from web.pages import app as app_pages
from web.pages import app_settings, signin
from web.pages import apps as apps_pages
from web.pages import common as pages
from web.pages import databases as database_pages
from web.plain_http import PlainHttpGuard, control_certificate_issued
from web.routes import api, databases, hooks, notify, runtime
from web.sessions import SessionBySchemeMiddleware, SessionCheck

log = logging.getLogger("paas.web")

__all__ = ["create_web_app"]


def create_web_app(
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
    app.state.login_throttle = signin.LoginThrottle()
    on_job_queued(app.state.engine, agent_waker(settings))
    app.add_middleware(SessionCheck, engine=app.state.engine, settings=settings)
    app.add_middleware(
        SessionBySchemeMiddleware,
        secret_key=settings.secret_key or secrets.token_urlsafe(48),
        settings=settings,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(  # outermost: a refused request reaches nothing else
        PlainHttpGuard,
        settings=settings,
        has_certificate=control_certificate_issued(app.state.engine, settings),
    )

    _add_error_handlers(app)
    _add_health(app, settings)
    app.include_router(hooks.router, tags=["webhooks"])
    app.include_router(api.router, tags=["api"])
    app.include_router(runtime.router, tags=["api"])
    app.include_router(notify.router, tags=["api"])
    app.include_router(databases.router, tags=["api"])
    app.include_router(signin.router)
    app.include_router(database_pages.router)
    app.include_router(apps_pages.router)
    app.include_router(app_pages.router)
    app.include_router(app_settings.router)
    app.mount("/static", StaticFiles(packages=[("web", "static")]), name="static")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Pages get an HTML page, the API and webhooks JSON; neither names internals or echoes input."""

    @app.exception_handler(pages.NotSignedIn)
    async def _not_signed_in(request: Request, exc: pages.NotSignedIn) -> Response:
        return pages.login_redirect(request, exc)

    @app.exception_handler(pages.StaleForm)
    async def _stale_form(request: Request, _exc: pages.StaleForm) -> Response:
        return pages.error_page(request, 403, "The form expired: go back, reload the page and try again.")

    @app.exception_handler(PaasError)
    async def _paas_error(request: Request, exc: PaasError) -> Response:
        if is_ui(request):
            return pages.error_page(request, exc.status_code, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(OperationalError)
    async def _database_error(request: Request, exc: OperationalError) -> Response:
        if not database_full(exc):
            raise exc
        log.error("the database could not be written: the disk is full (%s)", exc.orig)
        detail = (
            "the server's disk is full: nothing was saved. Free space (paas doctor shows where) and retry."
        )
        if is_ui(request):
            return pages.error_page(request, 507, detail)
        return JSONResponse({"detail": detail}, status_code=507)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_ui(request) and exc.status_code in (404, 405):
            return pages.error_page(request, exc.status_code, "There is no such page.")
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, _exc: Exception) -> Response:
        # logged with its traceback by the server; the answer names no internals
        if is_ui(request):
            return pages.error_page(request, 500, "Something went wrong on the server; it is in the web log.")
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_ui(request):
            return pages.error_page(
                request,
                422,
                "That address is not valid: "
                + "; ".join(
                    f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()
                ),
            )
        # FastAPI's default echoes each rejected input back: that could be a secret.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def _add_health(app: FastAPI, settings: Settings) -> None:
    """/healthz (the process is up) and /readyz (the database answers and is migrated)."""

    @app.get("/healthz", summary="The web process is up", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="The database is reachable and migrated; which paas version answers",
        tags=["health"],
        responses={503: {"description": "Not ready, with the reason"}},
    )
    def readyz() -> JSONResponse:
        try:
            with app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = current_revision(app.state.engine)
        except Exception as exc:  # noqa: BLE001  (any DB failure means not ready)
            return JSONResponse(
                {"status": "unavailable", "detail": type(exc).__name__, "version": version()}, 503
            )
        head = head_revision()
        if current != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "detail": f"database at {current}, code expects {head}",
                    "version": version(),
                },
                503,
            )
        return JSONResponse({"status": "ok", "version": version()})


NOT_UI = ("/api/", "/hooks/", "/static/", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")


def is_ui(request: Request) -> bool:
    """Browser pages answer errors with HTML; the API, webhooks and probes with JSON."""
    return not request.url.path.startswith(NOT_UI)


SECURITY_HEADERS = [
    # every script and style is a file under /static: no inline code runs
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Headers that keep pages from being framed, sniffed or running injected script."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
