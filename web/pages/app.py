"""The web UI's app pages: Overview, Activity (with redeploy, cancel and
rollback), a release's log (streamed live while it runs), runtime logs, and
Settings (env vars, domains, build and run settings, process counts, delete).

Every action calls the same services as the REST API. Forms post back,
show their errors next to the field with what was typed kept (never a value
marked Encrypt), and redirect with a one-time message on success.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlmodel import Session, select

from paas import domains, envvars, services
from paas.crypto import Keyring
from paas.errors import Conflict, InvalidInput, NotFound, PaasError, Unavailable
from paas.models import App, Deployment, WebhookDelivery
from paas.procfile import formation
from paas.schemas import PROCESS_TYPE, AppUpdate, EnvChange, EnvChangeResult, EnvImport, EnvSet
from paas.scopes import EnvScope
from paas.settings import Settings
from web import agent_client
from web.deps import KeyringDep, RowId, SessionDep, SettingsDep
from web.pages.apps import app_row
from web.pages.common import Posted, PostedDep, field_errors, flash, render, signed_in
from web.release_logs import follow_file

__all__ = ["router"]

router = APIRouter(prefix="/apps/{name}", include_in_schema=False)


def _page(session: Session, settings: Settings, name: str) -> tuple[App, dict[str, Any]]:
    app = services.get_app(session, name)
    return app, app_row(session, app, settings)


def _releases(session: Session, app: App, limit: int) -> list[Any]:
    return [services.deployment_public(d) for d in services.list_releases(session, app=app, limit=limit)]


def _back(name: str, tab: str = "") -> RedirectResponse:
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
    app, row = _page(session, settings, name)
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
    app, row = _page(session, settings, name)
    releases = _releases(session, app, 100)
    return render(request, "activity.html", tab="activity", app=row, releases=releases, show_actions=True)


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
    app, row = _page(session, settings, name)
    releases = _releases(session, app, 100 if all else 5)
    return render(request, "_activity_table.html", app=row, releases=releases, show_actions=all)


def _act(
    name: str, session: SessionDep, tab: str, request: Request, action: Callable[[App], str]
) -> RedirectResponse:
    """Run one action on the app; its outcome (or refusal) is the next page's message."""
    app = services.get_app(session, name)
    try:
        flash(request, action(app))
    except PaasError as exc:
        session.rollback()
        flash(request, str(exc), bad=True)
    return _back(name, tab)


@router.post("/deploy")
def deploy(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        services.request_deploy(session, app=app, actor=form.actor, trigger="manual")
        return f"Deploying the head of {app.branch}: the new release appears below."

    return _act(name, session, "/activity", request, go)


@router.post("/restart")
def restart(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        services.request_restart(session, app=app, actor=form.actor)
        return "Restarting: new containers of the live release replace the old ones."

    return _act(name, session, "/activity", request, go)


@router.post("/cancel")
def cancel(request: Request, name: str, session: SessionDep, form: PostedDep) -> RedirectResponse:
    def go(app: App) -> str:
        job = services.request_cancel(session, app=app, actor=form.actor)
        if job.cancel_requested:
            return "Cancelling: the running deploy stops within seconds; what is live stays live."
        return "Cancelled the queued deploy."

    return _act(name, session, "/activity", request, go)


@router.get("/rollback/{version}")
def rollback_page(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Says what a rollback to this release will do, with the button that does it."""
    signed_in(request)
    app, row = _page(session, settings, name)
    target = _release(session, app, version)
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
        app, row = _page(session, settings, name)
        target = _release(session, app, version)
        return render(
            request, "rollback.html", exc.status_code, tab="activity", app=row, target=target, error=str(exc)
        )
    pinned = "The app is pinned: pushes wait until you deploy."
    flash(request, f"Rolling back to v{plan.target.version}. {pinned}")
    return _back(name, "/activity")


def _release(session: Session, app: App, version: int) -> Deployment:
    dep = services.find_release(session, app, version)
    if dep is None or dep.id is None:
        raise NotFound(f"{app.name} has no release v{version}")
    return dep


# logs ---------------------------------------------------------------------------------------


@router.get("/releases/{version}")
def release_page(
    request: Request, name: str, version: RowId, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """One release: its steps and timings, and its build and release log
    (streamed in while the release runs)."""
    signed_in(request)
    app, row = _page(session, settings, name)
    release = services.deployment_public(_release(session, app, version))
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
    dep_id = _release(session, app, version).id
    assert dep_id is not None  # _release refuses a row without one
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
    app, row = _page(session, settings, name)
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


# settings -------------------------------------------------------------------------------------


def _settings_page(
    request: Request,
    session: Session,
    settings: Settings,
    keyring: Keyring,
    name: str,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    app, row = _page(session, settings, name)
    shown = {
        "build.branch": app.branch,
        "build.source_dir": app.source_dir,
        "build.dockerfile": app.dockerfile,
        "run.run_command": app.run_command,
        "run.port": str(app.port or ""),
        "run.health_path": app.health_path or "",
        "run.health_interval": f"{app.health_interval:g}",
        "run.health_timeout": f"{app.health_timeout:g}",
        "run.health_retries": str(app.health_retries),
        "run.memory": app.memory,
        "run.cpus": f"{app.cpus:g}" if app.cpus else "",
        "run.pids": str(app.pids or ""),
    }
    counts = services.current_formation(session, app=app) if app.current_deployment_id else {}
    shown |= {f"scale.{k}": str(v) for k, v in counts.items()}
    return render(
        request,
        "settings.html",
        status_code,
        tab="settings",
        app=row,
        env=envvars.list_env(session, name=name, keyring=keyring),
        dotenv=envvars.export_env(session, name=name, keyring=keyring),
        domains=domains.list_domains(session, app=app, settings=settings),
        formation=counts,
        defaults={"memory": settings.app_memory, "cpus": f"{settings.app_cpus:g}", "pids": settings.app_pids},
        errors=errors or {},
        values=shown | (values or {}),
    )


@router.get("/settings")
def settings_page(
    request: Request, name: str, session: SessionDep, settings: SettingsDep, keyring: KeyringDep
) -> HTMLResponse:
    signed_in(request)
    return _settings_page(request, session, settings, keyring, name)


@dataclass(frozen=True)
class Editing:
    """A Settings form being handled, with what it takes to show the page
    again when it is refused."""

    request: Request
    session: Session
    settings: Settings
    keyring: Keyring
    form: Posted
    name: str

    def refuse(
        self, errors: dict[str, str], kept: dict[str, str], *, secret_dropped: bool = False
    ) -> Response:
        """The Settings page again (422): nothing saved, each error by its
        field, what was typed kept (never a value marked Encrypt)."""
        self.session.rollback()
        if secret_dropped:
            first = next(iter(errors))
            errors[first] += (
                " Nothing was saved; enter the value again (encrypted values are never sent back)."
            )
        return _settings_page(
            self.request,
            self.session,
            self.settings,
            self.keyring,
            self.name,
            status_code=422,
            errors=errors,
            values=kept,
        )

    def saved(self, message: str, anchor: str) -> Response:
        flash(self.request, message)
        return _back(self.name, f"/settings#{anchor}")


def editing(
    request: Request,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    form: PostedDep,
) -> Editing:
    return Editing(request, session, settings, keyring, form, name)


EditingDep = Annotated[Editing, Depends(editing)]


def _env_saved(result: EnvChangeResult) -> str:
    if result.job is not None:
        text = "Saved. A new release with these values is rolling out (see Activity)."
    else:
        text = "Saved. Nothing is live yet: the values apply from the first deploy."
    return " ".join([text, *result.warnings])


@router.post("/env", response_model=None)
def env_set(ed: EditingDep) -> Response:
    """Add a variable, or give one a new value (form=edit). "Encrypt" makes it
    write-only; an edit without it makes a secret general again."""
    form = ed.form
    which = "edit" if form.get("form") == "edit" else "add"
    key, value, encrypt = form.get("key").strip(), form.get("value"), form.get("encrypt") == "1"
    kept = {f"{which}.key": key, f"{which}.encrypt": "1" if encrypt else ""}
    if not encrypt:  # a value to be encrypted is never sent back, even in its own form
        kept[f"{which}.value"] = value
    if which == "add":
        kept["add.scope"] = form.get("scope", "run")
    try:
        scope = EnvScope(form.get("scope", "run")) if which == "add" else None
    except ValueError:
        return ed.refuse({"add.form": "unknown scope"}, kept, secret_dropped=encrypt)
    try:
        item = EnvSet(key=key, value=value, secret=encrypt, scope=scope)
        change = EnvChange(set=[item])
        result = envvars.change_env(
            ed.session, name=ed.name, change=change, actor=form.actor, keyring=ed.keyring
        )
    except ValidationError as exc:
        errors = {k.replace(".form", ".value"): v for k, v in field_errors(exc, which).items()}
        return ed.refuse(errors, kept, secret_dropped=encrypt)
    except PaasError as exc:
        field = "value" if which == "edit" else "form"
        return ed.refuse({f"{which}.{field}": str(exc)}, kept, secret_dropped=encrypt)
    return ed.saved(_env_saved(result), "env")


@router.post("/env/delete")
def env_delete(ed: EditingDep) -> Response:
    key = ed.form.get("key")
    try:
        change = EnvChange(unset=[key])
        result = envvars.change_env(
            ed.session, name=ed.name, change=change, actor=ed.form.actor, keyring=ed.keyring
        )
    except (ValueError, PaasError) as exc:
        ed.session.rollback()
        flash(ed.request, f"{key} was not deleted: {exc}", bad=True)
        return _back(ed.name, "/settings#env")
    return ed.saved(_env_saved(result), "env")


@router.post("/env/bulk", response_model=None)
def env_bulk(ed: EditingDep) -> Response:
    text, encrypt = ed.form.get("dotenv"), ed.form.get("encrypt") == "1"
    kept = {} if encrypt else {"bulk.dotenv": text}
    try:
        body = EnvImport(dotenv=text, secret=encrypt)
        result = envvars.import_env(
            ed.session, name=ed.name, body=body, actor=ed.form.actor, keyring=ed.keyring
        )
    except ValidationError as exc:
        message = "; ".join(field_errors(exc, "bulk").values())
        return ed.refuse({"bulk.dotenv": message}, kept, secret_dropped=encrypt)
    except PaasError as exc:
        return ed.refuse({"bulk.dotenv": str(exc)}, kept, secret_dropped=encrypt)
    return ed.saved(_env_saved(result), "env")


@router.post("/domains", response_model=None)
def domain_add(ed: EditingDep) -> Response:
    hostname = ed.form.get("hostname").strip()
    app = services.get_app(ed.session, ed.name)
    try:
        domain = domains.add_domain(
            ed.session, app=app, hostname=hostname, settings=ed.settings, actor=ed.form.actor
        )
    except PaasError as exc:
        return ed.refuse({"domain.hostname": str(exc)}, {"domain.hostname": hostname})
    return ed.saved(
        f"Added {domain.hostname}. Its certificate is requested once its DNS points here.", "domains"
    )


@router.post("/domains/remove")
def domain_remove(ed: EditingDep) -> RedirectResponse:
    hostname = ed.form.get("hostname")

    def go(app: App) -> str:
        domains.remove_domain(
            ed.session, app=app, hostname=hostname, settings=ed.settings, actor=ed.form.actor
        )
        return f"Removed {hostname}."

    return _act(ed.name, ed.session, "/settings#domains", ed.request, go)


BUILD_FIELDS = ("branch", "source_dir", "dockerfile")
RUN_FIELDS = (
    "run_command",
    "port",
    "health_path",
    "health_interval",
    "health_timeout",
    "health_retries",
    "memory",
    "cpus",
    "pids",
)


def _update(ed: Editing, section: str, fields: tuple[str, ...]) -> Response:
    given: dict[str, Any] = {f: ed.form.get(f).strip() for f in fields}
    if section == "run":
        given["port"] = given["port"] or None  # empty: the image's EXPOSE, else the default
        given["cpus"] = given["cpus"] or None  # empty: the server's default
        given["pids"] = given["pids"] or None
        for optional in ("health_interval", "health_timeout", "health_retries"):
            if not given[optional]:
                del given[optional]  # empty: keep
    kept = {f"{section}.{f}": ed.form.get(f) for f in fields}
    try:
        services.update_app(
            ed.session, name=ed.name, changes=AppUpdate(**given), actor=ed.form.actor, settings=ed.settings
        )
    except ValidationError as exc:
        return ed.refuse(field_errors(exc, section), kept)
    except PaasError as exc:
        return ed.refuse({f"{section}.form": str(exc)}, kept)
    return ed.saved(f"Saved the {section} settings. They apply from the next deploy.", section)


@router.post("/settings/build", response_model=None)
def build_settings(ed: EditingDep) -> Response:
    return _update(ed, "build", BUILD_FIELDS)


@router.post("/settings/run", response_model=None)
def run_settings(ed: EditingDep) -> Response:
    return _update(ed, "run", RUN_FIELDS)


@router.post("/scale", response_model=None)
def scale(ed: EditingDep) -> Response:
    app = services.get_app(ed.session, ed.name)
    known = services.current_formation(ed.session, app=app)
    kept = {f"scale.{k}": ed.form.get(k) for k in known}
    try:
        counts = {k: int(ed.form.get(k)) for k in known if ed.form.get(k).strip()}
    except ValueError:
        return ed.refuse({"scale.form": "counts are whole numbers"}, kept)
    changed = {k: v for k, v in counts.items() if v != known[k]}
    if not changed:
        return ed.saved("No process count changed.", "run")
    try:
        services.request_scale(ed.session, app=app, counts=changed, actor=ed.form.actor, settings=ed.settings)
    except PaasError as exc:
        return ed.refuse({"scale.form": str(exc)}, kept)
    return ed.saved(
        "Scaling: " + ", ".join(f"{k}={v}" for k, v in changed.items()) + " rolls out now.", "run"
    )


@router.post("/delete", response_model=None)
def delete(ed: EditingDep) -> Response:
    typed = ed.form.get("confirm").strip()
    if typed != ed.name:
        return ed.refuse(
            {"delete.confirm": f"Type {ed.name} exactly to delete it."}, {"delete.confirm": typed}
        )
    try:
        services.request_delete(ed.session, name=ed.name, actor=ed.form.actor)
    except Conflict as exc:
        ed.session.rollback()
        flash(ed.request, str(exc), bad=True)
        return _back(ed.name, "/settings")
    flash(ed.request, f"Deleting {ed.name}: its containers, site, images and env vars are being removed.")
    return RedirectResponse("/", status_code=303)
