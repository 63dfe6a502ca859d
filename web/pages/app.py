"""The web UI's app pages: Overview, Activity (with redeploy, cancel and
rollback), a release's log (streamed live while it runs) and runtime logs.
The Settings tab is web/pages/app_settings.py.

Every action calls the same services as the REST API. Forms post back,
show their errors next to the field with what was typed kept (never a value
marked Encrypt), and redirect with a one-time message on success.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlmodel import Session, select

from paas import domains, services
from paas.errors import InvalidInput, NotFound, PaasError, Unavailable
from paas.models import App, WebhookDelivery
from paas.notify_targets import github_told
from paas.procfile import formation
from paas.schemas import PROCESS_TYPE
from paas.settings import Settings
from web import agent_client
from web.deps import RowId, SessionDep, SettingsDep
from web.pages.apps import app_row
from web.pages.common import PostedDep, flash, render, signed_in
from web.release_logs import follow_file

__all__ = ["act", "back_to", "page_context", "router"]

router = APIRouter(prefix="/apps/{name}", include_in_schema=False)


def page_context(session: Session, settings: Settings, name: str) -> tuple[App, dict[str, Any]]:
    app = services.get_app(session, name)
    return app, app_row(session, app, settings)


def _releases(session: Session, app: App, limit: int) -> list[Any]:
    return [services.deployment_public(d) for d in services.list_releases(session, app=app, limit=limit)]


def _github_told(session: Session, releases: list[Any]) -> dict[int, str]:
    """Per release's job: whether GitHub was told (Activity shows it)."""
    return github_told(session, [r.job_id for r in releases if r.job_id is not None])


def back_to(name: str, tab: str = "") -> RedirectResponse:
    return RedirectResponse(f"/apps/{quote(name)}{tab}", status_code=303)


# overview and activity ------------------------------------------------------------------


@router.get("/hook-status", response_class=HTMLResponse)
def hook_status(request: Request, name: str, session: SessionDep) -> HTMLResponse:
    """Whether GitHub has reached this app's webhook yet (polled by the webhook page)."""
    signed_in(request)
    app = services.get_app(session, name)
    seen = session.exec(select(WebhookDelivery).where(WebhookDelivery.app_id == app.id)).first()
    event = seen.event if seen else ""
    return render(request, "_hook_status.html", app=app.name, received=seen is not None, event=event)


@router.get("")
def overview(request: Request, name: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Live URLs, the live release, processes and their health, hostnames, recent activity."""
    signed_in(request)
    app, row = page_context(session, settings, name)
    current = services.live_release(session, app)
    hostnames = domains.list_domains(session, app=app, settings=settings)
    releases = _releases(session, app, 5)
    session.commit()  # the agent reads the database too: hold no lock while it answers
    processes: list[Any] = []
    problem = ""
    try:
        processes = agent_client.ask_agent(settings, f"/apps/{quote(name)}/ps", timeout=5)
    except (Unavailable, NotFound, InvalidInput) as exc:
        problem = f"Containers are not shown: {exc}"
    return render(
        request,
        "app.html",
        tab="overview",
        app=row,
        current=services.deployment_public(current) if current else None,
        processes=processes,
        processes_error=problem,
        domains=hostnames,
        releases=releases,
    )


@router.get("/activity")
def activity(request: Request, name: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    signed_in(request)
    app, row = page_context(session, settings, name)
    releases = _releases(session, app, 100)
    return render(
        request,
        "activity.html",
        tab="activity",
        app=row,
        releases=releases,
        show_actions=True,
        github=_github_told(session, releases),
    )


@router.get("/activity/table")
def activity_table(
    request: Request,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    all: bool = False,  # noqa: A002
) -> HTMLResponse:
    """The releases table alone, for htmx to refresh while a deploy runs."""
    signed_in(request)
    app, row = page_context(session, settings, name)
    releases = _releases(session, app, 100 if all else 5)
    return render(
        request,
        "_activity_table.html",
        app=row,
        releases=releases,
        show_actions=all,
        github=_github_told(session, releases),
    )


def act(
    name: str, session: SessionDep, tab: str, request: Request, action: Callable[[App], str]
) -> RedirectResponse:
    """Run one action on the app; its outcome (or refusal) is the next page's message."""
    app = services.get_app(session, name)
    try:
        flash(request, action(app))
    except PaasError as exc:
        session.rollback()
        flash(request, str(exc), bad=True)
    return back_to(name, tab)


@router.post("/deploy")
def deploy(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        services.request_deploy(session, app=app, actor=form.actor, trigger="manual")
        return f"Deploying the head of {app.branch}: the new release appears below."

    return act(name, session, "/activity", request, go)


@router.post("/restart")
def restart(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        services.request_restart(session, app=app, actor=form.actor)
        return "Restarting: new containers of the live release replace the old ones."

    return act(name, session, "/activity", request, go)


@router.post("/cancel")
def cancel(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        job = services.request_cancel(session, app=app, actor=form.actor)
        if job.cancel_requested:
            return "Cancelling: the running deploy stops within seconds; what is live stays live."
        return "Cancelled the queued deploy."

    return act(name, session, "/activity", request, go)


@router.get("/rollback/{version}")
def rollback_page(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Says what a rollback to this release will do, with the button that does it."""
    signed_in(request)
    app, row = page_context(session, settings, name)
    target = services.get_release(session, app, version)
    return render(request, "rollback.html", tab="activity", app=row, target=target, error="")


@router.post("/rollback/{version}", response_model=None)
def rollback(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep, form: PostedDep
) -> Response:
    app = services.get_app(session, name)
    try:
        plan = services.request_rollback(session, app=app, actor=form.actor, to=version)
    except PaasError as exc:
        session.rollback()
        app, row = page_context(session, settings, name)
        target = services.get_release(session, app, version)
        return render(
            request, "rollback.html", exc.status_code, tab="activity", app=row, target=target, error=str(exc)
        )
    pinned = "The app is pinned: pushes wait until you deploy."
    flash(request, f"Rolling back to v{plan.target.version}. {pinned}")
    return back_to(name, "/activity")


# logs ---------------------------------------------------------------------------------------


@router.get("/releases/{version}")
def release_page(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """One release: its steps and timings, and its build and release log
    (streamed in while the release runs)."""
    signed_in(request)
    app, row = page_context(session, settings, name)
    release = services.deployment_public(services.get_release(session, app, version))
    path = settings.release_log(app.name, version)
    log_text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return render(request, "release.html", tab="activity", app=row, release=release, log=log_text)


def _event(data: str, *, event: str = "", event_id: str = "") -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {json.dumps(data)}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@router.get("/releases/{version}/stream")
def release_stream(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep
) -> StreamingResponse:
    """Server-Sent Events: the release's log as it is written (an event per
    chunk, its id the byte offset so a reconnect resumes), then "end"."""
    signed_in(request)
    app = services.get_app(session, name)
    dep_id = services.get_release(session, app, version).id
    assert dep_id is not None  # a stored row has its id
    session.commit()  # hold no transaction open while streaming
    path = settings.release_log(app.name, version)
    try:
        start = max(0, int(request.headers.get("last-event-id", "0")))
    except ValueError:
        start = 0
    chunks = follow_file(path, request.app.state.engine, dep_id, offset=start)
    return StreamingResponse(_sse_chunks(chunks, start), media_type="text/event-stream", headers=SSE_HEADERS)


async def _sse_chunks(chunks: AsyncIterator[bytes], offset: int) -> AsyncIterator[bytes]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for chunk in chunks:
        offset += len(chunk)
        text = decoder.decode(chunk)
        if text:
            yield _event(text, event_id=str(offset))
    yield _event("finished", event="end")


@router.get("/logs")
def logs_page(request: Request, name: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Runtime logs: live tail with a choice of process type, pause and resume."""
    signed_in(request)
    app, row = page_context(session, settings, name)
    current = services.live_release(session, app)
    types = sorted(formation(current.procfile if current else {}, app.scale)) or ["web"]
    return render(request, "logs.html", tab="logs", app=row, process_types=types)


@router.get("/logs/stream")
async def logs_stream(
    request: Request,
    name: str,
    settings: SettingsDep,
    process: str = Query(default="web", pattern=PROCESS_TYPE),
    tail: int = Query(default=200, ge=0, le=5000),
) -> StreamingResponse:
    """Server-Sent Events: the agent's runtime log lines (an event each), or
    one "problem" event saying why there are none, then "end"."""
    signed_in(request)

    async def events() -> AsyncIterator[bytes]:
        try:
            lines, close = await agent_client.open_runtime_logs(
                settings, request.app.state.engine, name, process=process, tail=tail, follow=True
            )
        except PaasError as exc:
            yield _event(str(exc), event="problem")
            return
        pending = b""
        try:
            async for chunk in lines:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield _event(line.decode("utf-8", errors="replace") + "\n")
        finally:
            await close()
        yield _event("the containers stopped", event="end")

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
