"""An app's Settings tab: env vars, domains, build and run settings,
process counts, GitHub reporting, notifications, delete. Every form calls the same services as the REST API,
shows its errors next to the field with what was typed kept (never a value
marked Encrypt), and redirects with a one-time message on success."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from paas import domains, envvars, notify_targets, services
from paas.crypto import Keyring
from paas.errors import Conflict, PaasError
from paas.models import App
from paas.notify_rules import EVENTS
from paas.schemas import (
    AppUpdate,
    EnvChange,
    EnvChangeResult,
    EnvImport,
    EnvSet,
    GitHubUpdate,
    NotifyTargetCreate,
    NotifyTestResult,
)
from paas.scopes import EnvScope
from paas.settings import Settings
from web.agent_client import ask_agent
from web.deps import KeyringDep, SessionDep, SettingsDep
from web.pages.app import act, back_to, page_context
from web.pages.common import Posted, PostedDep, field_errors, flash, render, signed_in

__all__ = ["router"]

router = APIRouter(prefix="/apps/{name}", include_in_schema=False)


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
    app, row = page_context(session, settings, name)
    shown = {
        "build.branch": app.branch,
        "build.source_dir": app.source_dir,
        "build.dockerfile": app.dockerfile,
        "build.build_target": app.build_target,
        "run.run_command": app.run_command,
        "run.release_command": app.release_command,
        "run.port": str(app.port or ""),
        "run.health_path": app.health_path or "",
        "run.health_interval": f"{app.health_interval:g}",
        "run.health_timeout": f"{app.health_timeout:g}",
        "run.health_retries": str(app.health_retries),
        "run.memory": app.memory,
        "run.cpus": f"{app.cpus:g}" if app.cpus else "",
        "run.pids": str(app.pids or ""),
        "github.repo": app.github_repo,
        "github.environment": app.github_environment,
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
        github=notify_targets.github_public(session, app),
        targets=notify_targets.list_targets(session, app=app),
        events=EVENTS,
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
        return back_to(self.name, f"/settings#{anchor}")


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
        return back_to(ed.name, "/settings#env")
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

    return act(ed.name, ed.session, "/settings#domains", ed.request, go)


BUILD_FIELDS = ("branch", "source_dir", "dockerfile", "build_target")
RUN_FIELDS = (
    "run_command",
    "release_command",
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
        return back_to(ed.name, "/settings")
    flash(ed.request, f"Deleting {ed.name}: its containers, site, images and env vars are being removed.")
    return RedirectResponse("/", status_code=303)


# telling people -------------------------------------------------------------------------


@router.post("/github", response_model=None)
def github(ed: EditingDep) -> Response:
    """Set or replace the token (write-only), the repository, the environment; or remove the token."""
    form = ed.form
    kept = {"github.repo": form.get("repo"), "github.environment": form.get("environment")}
    try:
        if form.get("action") == "remove":
            change = GitHubUpdate(token="")
        else:
            change = GitHubUpdate(
                token=form.get("token").strip() or None,
                repo=form.get("repo").strip(),
                environment=form.get("environment").strip() or "production",
            )
        app = services.get_app(ed.session, ed.name)
        notify_targets.set_github(ed.session, app=app, change=change, actor=form.actor, keyring=ed.keyring)
    except ValidationError as exc:
        return ed.refuse(field_errors(exc, "github"), kept, secret_dropped=bool(form.get("token")))
    except PaasError as exc:
        return ed.refuse({"github.form": str(exc)}, kept, secret_dropped=bool(form.get("token")))
    if form.get("action") == "remove":
        return ed.saved("Removed the GitHub token: deploys are no longer reported to GitHub.", "github")
    return ed.saved("Saved. The next deploy is reported to GitHub.", "github")


@router.post("/notifications", response_model=None)
def notify_add(ed: EditingDep) -> Response:
    form = ed.form
    chosen = [e for e in EVENTS if form.get(f"ev-{e}") == "1"]
    try:
        spec = NotifyTargetCreate(url=form.get("url"), events=chosen)
        app = None if form.get("scope") == "all" else services.get_app(ed.session, ed.name)
        added = notify_targets.add_target(
            ed.session, spec=spec, app=app, actor=form.actor, keyring=ed.keyring
        )
    except ValidationError as exc:  # the URL is never put back in the page: it holds tokens
        return ed.refuse(field_errors(exc, "notify"), {}, secret_dropped=bool(form.get("url")))
    return ed.saved(f"Added {added.url}. Send it a test to check it arrives.", "notifications")


@router.post("/notifications/test", response_model=None)
def notify_test(ed: EditingDep) -> Response:
    try:
        target_id = int(ed.form.get("id"))
        notify_targets.get_target(ed.session, target_id)
        ed.session.commit()  # the agent records the outcome on the target
        answer = ask_agent(
            ed.settings,
            f"/notifications/{target_id}/test",
            method="POST",
            timeout=ed.settings.notify_timeout + 10,
        )
        result = NotifyTestResult.model_validate(answer)
    except (ValueError, PaasError) as exc:
        flash(ed.request, f"Could not test it: {exc}", bad=True)
        return back_to(ed.name, "/settings#notifications")
    if result.ok:
        return ed.saved("Sent a test notification: check that it arrived.", "notifications")
    flash(ed.request, f"The test was not delivered: {result.error}", bad=True)
    return back_to(ed.name, "/settings#notifications")


@router.post("/notifications/remove", response_model=None)
def notify_remove(ed: EditingDep) -> Response:
    try:
        notify_targets.remove_target(ed.session, target_id=int(ed.form.get("id")), actor=ed.form.actor)
    except (ValueError, PaasError) as exc:
        ed.session.rollback()
        flash(ed.request, f"Could not remove it: {exc}", bad=True)
        return back_to(ed.name, "/settings#notifications")
    return ed.saved("Removed the notification target.", "notifications")
