"""The REST API for telling people: an app's GitHub reporting (token
write-only) and notification targets (URLs write-only, listed masked).

Web stores what it is given, sealed to the agent's key pair; only the agent
opens it, to send. A test is the agent's to send too: web asks it over its
socket and passes on the answer.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from paas import notify_targets, services
from paas.schemas import GitHubPublic, GitHubUpdate, NotifyTargetCreate, NotifyTargetPublic, NotifyTestResult
from web.agent_client import ask_agent
from web.deps import CurrentToken, KeyringDep, RowId, SessionDep, SettingsDep, actor
from web.routes.api import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", responses={401: ERRORS[401]})


@router.get(
    "/apps/{name}/github",
    response_model=GitHubPublic,
    summary="How the app reports to GitHub (never the token)",
    responses={404: ERRORS[404]},
)
def get_github(name: str, session: SessionDep, _token: CurrentToken) -> GitHubPublic:
    return notify_targets.github_public(session, services.get_app(session, name))


@router.put(
    "/apps/{name}/github",
    response_model=GitHubPublic,
    summary="Set, replace or remove the GitHub token; set the repository or environment",
    description=(
        "With a token, the agent reports each deploy to GitHub: a commit status `paas/<app>` and a "
        "GitHub deployment with its statuses. The token is sealed to the agent's key: nobody reads it back."
    ),
    responses={
        400: ERRORS[400],
        404: ERRORS[404],
        422: {"description": "Not a token, repository or environment"},
    },
)
def put_github(
    name: str, change: GitHubUpdate, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> GitHubPublic:
    app = services.get_app(session, name)
    notify_targets.set_github(session, app=app, change=change, actor=actor(token), keyring=keyring)
    return notify_targets.github_public(session, app)


@router.get(
    "/notifications",
    response_model=list[NotifyTargetPublic],
    summary="List notification targets (URLs masked)",
    responses={400: {"description": "An unknown query parameter"}, 404: ERRORS[404]},
)
def list_targets(
    request: Request,
    session: SessionDep,
    _token: CurrentToken,
    app: str | None = Query(
        None,
        max_length=40,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Only the targets this app's events go to",
    ),
) -> list[NotifyTargetPublic]:
    unknown = sorted(set(request.query_params) - {"app"})
    if unknown:  # a typo (?ap=shop) must not list every target as if no filter were asked for
        raise HTTPException(400, f"unknown query parameter {unknown[0][:40]!r}: only 'app' is known")
    return notify_targets.list_targets(session, app=services.get_app(session, app) if app else None)


@router.post(
    "/notifications",
    response_model=NotifyTargetPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a notification target (an Apprise URL, stored sealed)",
    responses={
        400: ERRORS[400],
        404: ERRORS[404],
        422: {"description": "Not an Apprise URL, or an unknown event"},
    },
)
def add_target(
    spec: NotifyTargetCreate, session: SessionDep, keyring: KeyringDep, token: CurrentToken
) -> NotifyTargetPublic:
    app = services.get_app(session, spec.app) if spec.app else None
    return notify_targets.add_target(session, spec=spec, app=app, actor=actor(token), keyring=keyring)


@router.delete(
    "/notifications/{target_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a notification target",
    responses={404: {"description": "No such target"}},
)
def remove_target(target_id: RowId, session: SessionDep, token: CurrentToken) -> Response:
    notify_targets.remove_target(session, target_id=target_id, actor=actor(token))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/notifications/{target_id}/test",
    response_model=NotifyTestResult,
    summary="Send a test notification now, and say whether it went",
    responses={404: {"description": "No such target"}, 503: {"description": "The agent does not answer"}},
)
def test_target(
    target_id: RowId, session: SessionDep, settings: SettingsDep, _token: CurrentToken
) -> NotifyTestResult:
    notify_targets.get_target(session, target_id)
    session.commit()  # the agent writes the outcome on the target: hold no lock while it sends
    answer = ask_agent(
        settings,
        f"/notifications/{target_id}/test",
        method="POST",
        timeout=settings.notify_timeout + 10,
    )
    return NotifyTestResult.model_validate(answer)
