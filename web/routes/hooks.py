"""POST /hooks/github/{app}: the one unauthenticated route that changes state,
so it is authenticated by the app's own HMAC secret instead.

Order matters: size, then app, then signature, then JSON. A rejected request
changes nothing; an accepted push is only enqueued (the agent builds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from paas import services, webhooks
from paas.crypto import Keyring
from paas.db import session_scope
from paas.errors import Conflict, NotFound
from paas.github import verify_signature
from web.deps import SettingsDep

router = APIRouter()


class _TooLarge(Exception):
    pass


class _Refused(Exception):
    """Raised out of the transaction, so that whatever it wrote is undone."""

    def __init__(self, reply: JSONResponse) -> None:
        self.reply = reply


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _reply(status_code: int, detail: str, **extra: object) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)


@router.post(
    "/hooks/github/{app_name}",
    summary="GitHub webhook (push and ping), signed with X-Hub-Signature-256",
    responses={
        200: {"description": "Ping answered, delivery ignored (with the reason) or a duplicate"},
        202: {"description": "Push accepted: a deploy job was queued"},
        400: {"description": "Body is not valid JSON or not a push payload"},
        401: {"description": "Missing or wrong signature"},
        404: {"description": "No such app"},
        409: {"description": "The app is being deleted"},
        413: {"description": "Body over the size limit"},
    },
)
async def github_webhook(
    app_name: str,
    request: Request,
    settings: SettingsDep,
    x_github_event: Annotated[str, Header()] = "",
    x_github_delivery: Annotated[str, Header()] = "",
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    try:
        body = await _read_body(request, settings.webhook_max_bytes)
    except _TooLarge:
        return _reply(413, f"body is over the {settings.webhook_max_bytes}-byte limit")
    delivery = _Delivery(
        app_name=app_name,
        body=body,
        event=x_github_event,
        delivery=x_github_delivery,
        signature=x_hub_signature_256,
    )
    # Database work may wait for SQLite's write lock: keep it off the event loop.
    return await run_in_threadpool(_process, request.app.state.engine, request.app.state.keyring, delivery)


@dataclass(frozen=True)
class _Delivery:
    app_name: str
    body: bytes
    event: str
    delivery: str
    signature: str | None


def _process(engine: Engine, keyring: Keyring, d: _Delivery) -> JSONResponse:
    try:
        with session_scope(engine) as session:
            return _decide(session, keyring, d)
    except IntegrityError:  # the same delivery id raced in twice; the first one won
        return _reply(200, "delivery already received", duplicate=True)
    except _Refused as refused:
        return refused.reply


def _decide(session: Session, keyring: Keyring, d: _Delivery) -> JSONResponse:
    """Check in order: app, signature, JSON, event. Rejections write nothing."""
    try:
        app = services.get_app(session, d.app_name)
    except NotFound as exc:
        return _reply(404, str(exc))
    if not verify_signature(keyring.decrypt(app.webhook_secret), d.body, d.signature):
        return _reply(401, "missing or wrong X-Hub-Signature-256")
    try:
        payload = json.loads(d.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _reply(400, "body is not valid JSON (set the webhook content type to application/json)")
    if not d.event:
        return _reply(400, "missing X-GitHub-Event header")
    if not d.delivery:
        return _reply(400, "missing X-GitHub-Delivery header")
    try:
        outcome = webhooks.handle_github_event(
            session, app=app, event=d.event, delivery_id=d.delivery, payload=payload
        )
    except ValueError as exc:
        raise _Refused(_reply(400, f"malformed {d.event} payload: {exc}")) from exc
    except Conflict as exc:
        raise _Refused(_reply(409, str(exc))) from exc
    return JSONResponse(outcome.body, status_code=outcome.status_code)
