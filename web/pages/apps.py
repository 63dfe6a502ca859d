"""The apps list and the new-app form (which shows the webhook URL and
secret, this once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from paas import services
from paas.errors import Conflict, InvalidInput
from paas.models import App, Deployment, DeploymentStatus, Job, JobState
from paas.schemas import AppCreate
from web.deps import KeyringDep, SessionDep, SettingsDep
from web.pages.common import STALE_FORM, check_csrf, field_errors, render, signed_in

__all__ = ["app_row", "router"]

router = APIRouter(include_in_schema=False)


@router.get("/")
def apps_page(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    signed_in(request)
    rows = [app_row(session, app, settings) for app in services.list_apps(session)]
    return render(request, "apps.html", apps=rows)


@router.get("/new")
def new_app_page(request: Request) -> HTMLResponse:
    signed_in(request)
    return render(request, "new_app.html", values={"branch": "main"}, errors={})


@router.post("/new", response_model=None)
def new_app(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    name: str = Form(default="", max_length=200),
    repo_url: str = Form(default="", max_length=2000),
    branch: str = Form(default="main", max_length=300),
    source_dir: str = Form(default="", max_length=600),
    csrf: str = Form(default="", max_length=200),
) -> Response:
    """Create the app, then show its webhook URL and secret (this once) with
    the steps in GitHub's settings; the page turns green at the first ping."""
    user = signed_in(request)
    values = {"name": name, "repo_url": repo_url, "branch": branch, "source_dir": source_dir}
    if not check_csrf(request, csrf):
        return render(request, "new_app.html", 403, values=values, errors={"form": STALE_FORM})
    try:
        spec = AppCreate(name=name.strip(), repo_url=repo_url, branch=branch, source_dir=source_dir)
        app, secret = services.create_app(
            session, spec=spec, actor=f"user:{user}", keyring=keyring, settings=settings
        )
    except ValidationError as exc:
        errors = field_errors(exc)
        return render(request, "new_app.html", 422, values=values, errors=errors)
    except Conflict as exc:
        return render(request, "new_app.html", 409, values=values, errors={"name": str(exc)})
    except InvalidInput as exc:
        message = str(exc).removeprefix("repo_url: ")
        return render(request, "new_app.html", 422, values=values, errors={"repo_url": message})
    return render(
        request,
        "webhook.html",
        201,
        app=app.name,
        webhook_url=services.webhook_url(session, settings, app),
        secret=secret,
        received=False,
    )


def app_row(session: Session, app: App, settings: Any) -> dict[str, Any]:
    public = services.app_public(session, app=app, settings=settings)
    latest = session.exec(
        select(Deployment).where(Deployment.app_id == app.id).order_by(col(Deployment.version).desc())
    ).first()
    busy = session.exec(
        select(Job.id).where(
            col(Job.app_id) == app.id, col(Job.state).in_([JobState.queued, JobState.running])
        )
    ).first()
    if app.state != "active":
        status = "deleting"
    elif busy is not None:
        status = "deploying"
    elif app.pinned:
        status = "pinned"
    elif latest is not None and latest.status == DeploymentStatus.failed:
        status = "failed"
    elif public.current_version:
        status = "live"
    else:
        status = "new"
    return {
        "name": app.name,
        "branch": app.branch,
        "status": status,
        "url": public.url,
        "version": public.current_version,
        "commit": (public.current_commit or "")[:12],
        "deployed_at": latest.finished_at if latest is not None else None,
        "pending_pushes": app.pending_pushes,
    }
