"""The Databases pages, modelled on App Platform's: the list with a create
form, and each database's page (how apps reach it, who binds it, its size
and connections, its last backup) with attach, detach, expose, upgrade and
destroy. Each form calls one function of paas/databases.py; the password is
never on a page (web never holds it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from paas import databases, services
from paas.errors import PaasError
from paas.schemas import DatabaseAttach, DatabaseCreate, DatabaseDetach
from web.agent_client import database_stats
from web.deps import KeyringDep, SessionDep, SettingsDep
from web.pages.common import PostedDep, field_errors, flash, render, signed_in

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _back(name: str = "") -> RedirectResponse:
    return RedirectResponse(f"/databases/{name}" if name else "/databases", status_code=303)


@router.get("/databases")
def databases_page(request: Request, session: SessionDep) -> HTMLResponse:
    signed_in(request)
    rows = [databases.database_public(session, d) for d in databases.list_databases(session)]
    return render(request, "databases.html", databases=rows, values={"engine": "postgres"}, errors={})


@router.post("/databases", response_model=None)
def create(request: Request, session: SessionDep, settings: SettingsDep, form: PostedDep) -> Response:
    values = {k: form.get(k) for k in ("name", "engine", "version", "memory")}
    try:
        spec = DatabaseCreate(
            name=values["name"].strip(),
            engine=values["engine"],  # type: ignore[arg-type]
            version=values["version"].strip() or None,
            memory=values["memory"].strip(),
        )
        db, _job = databases.create_database(session, spec=spec, actor=form.actor, settings=settings)
    except ValidationError as exc:
        rows = [databases.database_public(session, d) for d in databases.list_databases(session)]
        return render(request, "databases.html", 422, databases=rows, values=values, errors=field_errors(exc))
    except PaasError as exc:
        session.rollback()
        rows = [databases.database_public(session, d) for d in databases.list_databases(session)]
        return render(
            request,
            "databases.html",
            exc.status_code,
            databases=rows,
            values=values,
            errors={"name": str(exc)},
        )
    flash(request, f"Creating {db.name}: the agent starts it now.")
    return _back(db.name)


@router.get("/databases/{name}")
def database_page(request: Request, name: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    signed_in(request)
    public = databases.database_public(session, databases.get_database(session, name))
    apps = [a.name for a in services.list_apps(session) if a.state == "active"]
    session.commit()  # the agent reads the database too: hold no lock while it answers
    if public.state in ("ready", "upgrading"):
        public.stats = database_stats(settings, name)
    return render(request, "database.html", db=public, apps=apps)


def _done(request: Request, name: str, what: str, action: object) -> Response:
    """Run ``action``; say how it went on the database's page."""
    try:
        action()  # type: ignore[operator]
    except (ValidationError, PaasError) as exc:
        said = "; ".join(field_errors(exc).values()) if isinstance(exc, ValidationError) else str(exc)
        flash(request, f"{what}: {said}", bad=True)
        return _back(name)
    flash(request, f"{what}: done; the agent carries it out." if "attach" not in what else f"{what}: done.")
    return _back(name)


@router.post("/databases/{name}/attach", response_model=None)
def attach(
    request: Request, name: str, session: SessionDep, keyring: KeyringDep, form: PostedDep
) -> Response:
    def go() -> None:
        body = DatabaseAttach(app=form.get("app"), key=form.get("key").strip() or None)
        databases.attach(session, name=name, body=body, actor=form.actor, keyring=keyring)

    return _done(request, name, f"attach {name} to {form.get('app')}", go)


@router.post("/databases/{name}/detach", response_model=None)
def detach(
    request: Request, name: str, session: SessionDep, keyring: KeyringDep, form: PostedDep
) -> Response:
    def go() -> None:
        databases.detach(
            session, name=name, body=DatabaseDetach(app=form.get("app")), actor=form.actor, keyring=keyring
        )

    return _done(request, name, f"detach {name} from {form.get('app')}", go)


@router.post("/databases/{name}/expose", response_model=None)
def expose(
    request: Request, name: str, session: SessionDep, settings: SettingsDep, form: PostedDep
) -> Response:
    def go() -> None:
        raw = form.get("port").strip()
        if raw and not raw.isdigit():
            raise PaasError("the port is a number, 1024 to 65535")
        port = int(raw) if raw else None
        if port is not None and not 1024 <= port <= 65535:
            raise PaasError("the port is a number, 1024 to 65535")
        databases.expose_database(session, name=name, port=port, actor=form.actor, settings=settings)

    return _done(request, name, f"expose {name}", go)


@router.post("/databases/{name}/upgrade", response_model=None)
def upgrade(
    request: Request, name: str, session: SessionDep, settings: SettingsDep, form: PostedDep
) -> Response:
    def go() -> None:
        from paas.schemas import DatabaseUpgrade

        body = DatabaseUpgrade(version=form.get("version").strip())
        databases.upgrade_database(
            session, name=name, version=body.version, actor=form.actor, settings=settings
        )

    return _done(request, name, f"upgrade {name}", go)


@router.post("/databases/{name}/destroy", response_model=None)
def destroy(request: Request, name: str, session: SessionDep, form: PostedDep) -> Response:
    if form.get("confirm").strip() != name:
        flash(request, f"destroy {name}: type its name to confirm", bad=True)
        return _back(name)
    try:
        databases.destroy_database(session, name=name, purge=form.get("purge") == "1", actor=form.actor)
    except PaasError as exc:
        flash(request, f"destroy {name}: {exc}", bad=True)
        return _back(name)
    flash(request, f"Destroying {name}.")
    return _back()
