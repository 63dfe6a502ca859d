"""The REST API under /api/v1: thin routes over paas.services."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from fastapi.responses import PlainTextResponse

from paas import services
from paas.errors import NotFound
from paas.schemas import (
    AppCreate,
    AppCreated,
    AppPublic,
    AppUpdate,
    DeploymentPublic,
    DeployRequest,
    JobPublic,
)
from web.deps import CurrentToken, SessionDep, SettingsDep, actor

ERRORS = {
    401: {"description": "Missing or invalid API token"},
    404: {"description": "No such app, release or job"},
}

router = APIRouter(prefix="/api/v1", responses={401: ERRORS[401]})


@router.get("/apps", response_model=list[AppPublic], summary="List apps")
def list_apps(session: SessionDep, settings: SettingsDep, _token: CurrentToken) -> list[AppPublic]:
    return [services.app_public(session, app=a, settings=settings) for a in services.list_apps(session)]


@router.post(
    "/apps",
    response_model=AppCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an app",
    description="Returns the webhook URL and secret to paste into GitHub. The secret is shown only here.",
    responses={409: {"description": "The name is taken"}, 422: {"description": "Invalid field"}},
)
def create_app(
    spec: AppCreate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> AppCreated:
    app = services.create_app(session, spec=spec, actor=actor(token))
    public = services.app_public(session, app=app, settings=settings)
    return AppCreated(**public.model_dump(), webhook_secret=app.webhook_secret)


@router.get("/apps/{name}", response_model=AppPublic, summary="Show an app", responses={404: ERRORS[404]})
def get_app(name: str, session: SessionDep, settings: SettingsDep, _token: CurrentToken) -> AppPublic:
    return services.app_public(session, app=services.get_app(session, name), settings=settings)


@router.patch(
    "/apps/{name}",
    response_model=AppPublic,
    summary="Change an app's settings (they apply from the next deploy)",
    responses={404: ERRORS[404], 422: {"description": "Invalid field"}},
)
def update_app(
    name: str, changes: AppUpdate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> AppPublic:
    app = services.update_app(session, name=name, changes=changes, actor=actor(token))
    return services.app_public(session, app=app, settings=settings)


@router.delete(
    "/apps/{name}",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Delete an app",
    description="Stops its containers, removes its nginx site and images, then its records.",
    responses={404: ERRORS[404], 409: {"description": "Already being deleted"}},
)
def delete_app(name: str, session: SessionDep, token: CurrentToken) -> JobPublic:
    job = services.request_delete(session, name=name, actor=actor(token))
    return services.job_public(session, job)


@router.post(
    "/apps/{name}/deploy",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Deploy the head of the app's branch (or another ref)",
    responses={404: ERRORS[404], 409: {"description": "The app is being deleted"}},
)
def deploy(name: str, body: DeployRequest, session: SessionDep, token: CurrentToken) -> JobPublic:
    app = services.get_app(session, name)
    ref = f"refs/heads/{body.ref}" if body.ref else None
    job = services.request_deploy(session, app=app, actor=actor(token), trigger="manual", ref=ref)
    return services.job_public(session, job)


@router.get(
    "/apps/{name}/releases",
    response_model=list[DeploymentPublic],
    summary="List the app's releases, newest first",
    responses={404: ERRORS[404]},
)
def releases(
    name: str,
    session: SessionDep,
    _token: CurrentToken,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[DeploymentPublic]:
    app = services.get_app(session, name)
    return [services.deployment_public(d) for d in services.list_releases(session, app=app, limit=limit)]


@router.get(
    "/apps/{name}/releases/{version}/log",
    response_class=PlainTextResponse,
    summary="The build and release log of one release",
    responses={404: ERRORS[404]},
)
def release_log(
    name: str, version: int, session: SessionDep, settings: SettingsDep, _token: CurrentToken
) -> PlainTextResponse:
    app = services.get_app(session, name)
    path = settings.logs_dir / app.name / f"v{version}.log"
    if not path.is_file():
        raise NotFound(f"no log for {name} v{version}")
    return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace"))


@router.get("/jobs/{job_id}", response_model=JobPublic, summary="Show a job", responses={404: ERRORS[404]})
def get_job(job_id: int, session: SessionDep, _token: CurrentToken) -> JobPublic:
    return services.job_public(session, services.get_job(session, job_id))
