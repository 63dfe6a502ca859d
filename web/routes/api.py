"""The REST API under /api/v1: thin routes over paas.services."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from paas import domains, envvars, services, tokens
from paas.db import session_scope
from paas.errors import InvalidInput
from paas.schemas import (
    AppCreate,
    AppCreated,
    AppPublic,
    AppUpdate,
    DeploymentPublic,
    DeployRequest,
    DomainAdd,
    DomainPublic,
    EnvChange,
    EnvChangeResult,
    EnvImport,
    EnvVarPublic,
    JobPublic,
    RollbackRequest,
    RollbackResult,
    ScaleRequest,
    ScaleResult,
    TokenPublic,
    check_env_key,
)
from web.deps import CurrentToken, KeyringDep, RowId, SessionDep, SettingsDep, actor

ERRORS = {
    400: {"description": "The request body is not UTF-8 JSON"},
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
    responses={
        400: ERRORS[400],
        409: {"description": "The name is taken"},
        422: {"description": "Invalid field"},
    },
)
def post_app(
    spec: AppCreate, session: SessionDep, settings: SettingsDep, keyring: KeyringDep, token: CurrentToken
) -> AppCreated:
    app, secret = services.create_app(
        session, spec=spec, actor=actor(token), keyring=keyring, settings=settings
    )
    public = services.app_public(session, app=app, settings=settings)
    return AppCreated(**public.model_dump(), webhook_secret=secret)


@router.post(
    "/apps/{name}/webhook-secret",
    response_model=AppCreated,
    summary="Replace the app's webhook secret",
    description=(
        "Returns the new secret, shown only here. Deliveries signed with the old one are refused from now "
        "on: paste the new one into GitHub (Settings → Webhooks → Edit → Secret)."
    ),
    responses={404: ERRORS[404]},
)
def rotate_webhook_secret(
    name: str, session: SessionDep, settings: SettingsDep, keyring: KeyringDep, token: CurrentToken
) -> AppCreated:
    app = services.get_app(session, name)
    secret = services.rotate_webhook_secret(session, app=app, actor=actor(token), keyring=keyring)
    public = services.app_public(session, app=app, settings=settings)
    return AppCreated(**public.model_dump(), webhook_secret=secret)


@router.get("/apps/{name}", response_model=AppPublic, summary="Show an app", responses={404: ERRORS[404]})
def get_app(name: str, session: SessionDep, settings: SettingsDep, _token: CurrentToken) -> AppPublic:
    return services.app_public(session, app=services.get_app(session, name), settings=settings)


@router.patch(
    "/apps/{name}",
    response_model=AppPublic,
    summary="Change an app's settings (they apply from the next deploy)",
    responses={400: ERRORS[400], 404: ERRORS[404], 422: {"description": "Invalid field"}},
)
def update_app(
    name: str, changes: AppUpdate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> AppPublic:
    app = services.update_app(session, name=name, changes=changes, actor=actor(token), settings=settings)
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
    responses={400: ERRORS[400], 404: ERRORS[404], 409: {"description": "The app is being deleted"}},
)
def deploy(name: str, body: DeployRequest, session: SessionDep, token: CurrentToken) -> JobPublic:
    app = services.get_app(session, name)
    ref = f"refs/heads/{body.ref}" if body.ref else None
    job = services.request_deploy(
        session, app=app, actor=actor(token), trigger="manual", ref=ref, commit=body.commit or ""
    )
    return services.job_public(session, job)


@router.post(
    "/apps/{name}/rollback",
    response_model=RollbackResult,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Bring back an earlier release: its image and its env, no build",
    description=(
        "Creates a new release (trigger `rollback of vK`) from release vK's image and env snapshot, "
        "with the same health check and zero-downtime switch as a deploy. The app's env vars are "
        "set back to vK's and the app is pinned: pushes are recorded but not deployed until "
        "`POST /apps/{name}/unpin` or a manual deploy. Database migrations are not undone."
    ),
    responses={
        400: ERRORS[400],
        404: {"description": "No such app or version"},
        409: {"description": "Nothing live, the version never went live or is live, or its image was pruned"},
    },
)
def rollback(name: str, body: RollbackRequest, session: SessionDep, token: CurrentToken) -> RollbackResult:
    app = services.get_app(session, name)
    plan = services.request_rollback(
        session, app=app, actor=actor(token), to=body.to, run_release=body.run_release
    )
    return RollbackResult(
        job=services.job_public(session, plan.job), target_version=plan.target.version, warnings=plan.warnings
    )


@router.post(
    "/apps/{name}/unpin",
    response_model=AppPublic,
    summary="Let pushes deploy again after a rollback",
    responses={404: ERRORS[404], 409: {"description": "The app is not pinned"}},
)
def unpin(name: str, session: SessionDep, settings: SettingsDep, token: CurrentToken) -> AppPublic:
    app = services.unpin(session, app=services.get_app(session, name), actor=actor(token))
    return services.app_public(session, app=app, settings=settings)


DOMAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: ERRORS[400],
    404: ERRORS[404],
    409: {"description": "Served for another app or the control plane, a default hostname, or being deleted"},
    422: {
        "description": "Not a valid hostname (wildcards and IP addresses are refused), or under PAAS_DOMAIN"
    },
}


@router.get(
    "/domains",
    response_model=list[DomainPublic],
    summary="Every hostname paas serves (the control plane's too) with its certificate state",
)
def every_domain(session: SessionDep, settings: SettingsDep, _token: CurrentToken) -> list[DomainPublic]:
    return domains.all_domains(session, settings=settings)


@router.get(
    "/apps/{name}/domains",
    response_model=list[DomainPublic],
    summary="The app's hostnames with their certificate state",
    responses={404: ERRORS[404]},
)
def list_domains(
    name: str, session: SessionDep, settings: SettingsDep, _token: CurrentToken
) -> list[DomainPublic]:
    return domains.list_domains(session, app=services.get_app(session, name), settings=settings)


@router.post(
    "/apps/{name}/domains",
    response_model=DomainPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Serve the app at another hostname too",
    description=(
        "nginx serves it over HTTP at the agent's next certificate check; then, once a preflight "
        "finds its DNS pointing here and port 80 reaching our nginx, a certificate is requested "
        "and HTTPS switched on (HTTP then redirects)."
    ),
    responses=DOMAIN_ERRORS,
)
def add_domain(
    name: str, body: DomainAdd, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> DomainPublic:
    app = services.get_app(session, name)
    domain = domains.add_domain(
        session, app=app, hostname=body.hostname, settings=settings, actor=actor(token)
    )
    return domains.domain_public(domain, settings).model_copy(update={"app": app.name})


@router.delete(
    "/apps/{name}/domains/{hostname}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop serving the app at a custom hostname",
    responses=DOMAIN_ERRORS,
)
def remove_domain(
    name: str, hostname: str, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> None:
    app = services.get_app(session, name)
    domains.remove_domain(session, app=app, hostname=hostname, settings=settings, actor=actor(token))


@router.get(
    "/apps/{name}/scale",
    response_model=dict[str, int],
    summary="Containers per process type of the live release",
    responses={404: ERRORS[404]},
)
def get_scale(name: str, session: SessionDep, _token: CurrentToken) -> dict[str, int]:
    return services.current_formation(session, app=services.get_app(session, name))


@router.put(
    "/apps/{name}/scale",
    response_model=ScaleResult,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Set containers per process type; a live release rolls them out at once",
    description=(
        "Counts are kept across deploys. With a live release, a new release of the same image and "
        "env starts the containers in those numbers and switches over with no downtime (the "
        "release command does not run). Only `web` gets traffic; types removed from the Procfile "
        "stop at the next deploy."
    ),
    responses={
        400: ERRORS[400],
        404: ERRORS[404],
        409: {"description": "The app is being deleted"},
        422: {"description": "Unknown process type, web=0, release, or over the limit"},
    },
)
def scale(
    name: str, body: ScaleRequest, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> ScaleResult:
    outcome = services.request_scale(
        session,
        app=services.get_app(session, name),
        counts=body.processes,
        actor=actor(token),
        settings=settings,
    )
    job = services.job_public(session, outcome.job) if outcome.job else None
    return ScaleResult(formation=outcome.formation, job=job)


@router.post(
    "/apps/{name}/restart",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Replace the live release's containers with new ones, with no downtime",
    responses={404: ERRORS[404], 409: {"description": "Nothing live, or the app is being deleted"}},
)
def restart(name: str, session: SessionDep, token: CurrentToken) -> JobPublic:
    job = services.request_restart(session, app=services.get_app(session, name), actor=actor(token))
    return services.job_public(session, job)


@router.post(
    "/apps/{name}/cancel",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel the app's running or queued deploy, release or rollback",
    description="A running one stops within seconds and the live release keeps serving.",
    responses={404: ERRORS[404], 409: {"description": "Nothing to cancel"}},
)
def cancel(name: str, session: SessionDep, token: CurrentToken) -> JobPublic:
    job = services.request_cancel(session, app=services.get_app(session, name), actor=actor(token))
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


JOB_WAIT_MAX = 30.0
JOB_WAIT_POLL = 0.05  # a read of one row: cheap, and well under a release's own steps
JOB_ACTIVE = ("queued", "running")


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    summary="Show a job; with wait, once it has moved on",
    description=(
        "With `wait`, the answer comes as soon as the job's state differs from `seen`, its release "
        "is live or the job has ended, or after `wait` seconds: a client follows a job with one "
        "request per change rather than polling."
    ),
    responses={404: ERRORS[404]},
)
async def get_job(
    job_id: RowId,
    request: Request,
    _token: CurrentToken,
    wait: float = Query(default=0, ge=0, le=JOB_WAIT_MAX, description="Seconds to wait for a change"),
    seen: str | None = Query(default=None, max_length=20, description="The state the client last saw"),
) -> JobPublic:
    engine = request.app.state.engine
    deadline = time.monotonic() + wait
    while True:
        job = await run_in_threadpool(_job, engine, job_id)
        moved = (seen is not None and job.state != seen) or job.live or job.state not in JOB_ACTIVE
        if moved or time.monotonic() >= deadline:
            return job
        await asyncio.sleep(JOB_WAIT_POLL)


def _job(engine: Engine, job_id: int) -> JobPublic:
    with session_scope(engine) as session:
        return services.job_public(session, services.get_job(session, job_id))


# API tokens ---------------------------------------------------------------------------


@router.get("/tokens", response_model=list[TokenPublic], summary="List API tokens (never the tokens)")
def list_tokens(session: SessionDep, _token: CurrentToken) -> list[TokenPublic]:
    return [TokenPublic.model_validate(t) for t in tokens.list_tokens(session)]


@router.delete(
    "/tokens/{name}",
    status_code=204,
    summary="Revoke the API tokens of that name (or that prefix); they fail from the next request",
    responses={404: {"description": "No token of that name"}},
)
def revoke_token(
    name: Annotated[str, Path(max_length=100)], session: SessionDep, token: CurrentToken
) -> None:
    tokens.revoke_tokens(session, name=name, actor=actor(token))


# env vars ----------------------------------------------------------------------------

ENV_CHANGE_DOC = (
    "Sets and unsets apply together. With `restart` (the default) and a live release, a new "
    "release of the same image rolls out with the zero-downtime switch of a deploy (no build); "
    "with `restart: false` the change is staged for the next deploy. Secret values are sealed "
    "to the agent's key and can never be read back. Build-scope values become build args, "
    "which are visible in the image's history: the answer's `warnings` say so."
)
ENV_ERRORS: dict[int | str, dict[str, Any]] = {
    400: ERRORS[400],
    404: ERRORS[404],
    409: {"description": "The app is being deleted"},
    422: {
        "description": "Invalid or reserved name, oversized value, malformed .env, secret with build scope"
    },
}


@router.get(
    "/apps/{name}/env",
    response_model=list[EnvVarPublic],
    summary="List the app's env vars (secret values are write-only: null)",
    responses={404: ERRORS[404]},
)
def list_env(name: str, session: SessionDep, keyring: KeyringDep, _token: CurrentToken) -> list[EnvVarPublic]:
    return envvars.list_env(session, name=name, keyring=keyring)


@router.patch(
    "/apps/{name}/env",
    response_model=EnvChangeResult,
    summary="Set and unset env vars in one change",
    description=ENV_CHANGE_DOC,
    responses=ENV_ERRORS,
)
def change_env(
    name: str, change: EnvChange, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> EnvChangeResult:
    return envvars.change_env(session, name=name, change=change, actor=actor(token), keyring=keyring)


@router.delete(
    "/apps/{name}/env/{key}",
    response_model=EnvChangeResult,
    summary="Unset one env var",
    description=ENV_CHANGE_DOC,
    responses=ENV_ERRORS,
)
def unset_env(
    name: str,
    key: str,
    session: SessionDep,
    keyring: KeyringDep,
    token: CurrentToken,
    restart: bool = Query(default=True, description="Roll out a new release now (else stage it)."),
) -> EnvChangeResult:
    try:
        check_env_key(key)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    change = EnvChange(unset=[key], restart=restart)
    return envvars.change_env(session, name=name, change=change, actor=actor(token), keyring=keyring)


@router.post(
    "/apps/{name}/env/import",
    response_model=EnvChangeResult,
    summary="Set env vars from the text of a .env file, as one change",
    description=ENV_CHANGE_DOC + " Every line is checked before anything is saved.",
    responses=ENV_ERRORS,
)
def import_env(
    name: str, body: EnvImport, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> EnvChangeResult:
    return envvars.import_env(session, name=name, body=body, actor=actor(token), keyring=keyring)


@router.get(
    "/apps/{name}/env/export",
    response_class=PlainTextResponse,
    summary="The app's env as a .env file (secrets only as masked comments)",
    responses={404: ERRORS[404]},
)
def export_env(
    name: str, session: SessionDep, keyring: KeyringDep, _token: CurrentToken
) -> PlainTextResponse:
    return PlainTextResponse(envvars.export_env(session, name=name, keyring=keyring))
