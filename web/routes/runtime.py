"""/api/v1 routes for what runs: a release's log as it is written, and the
containers' status, runtime logs and build plans, which web asks the agent
for (web/agent_client.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.background import BackgroundTask

from paas import services
from paas.errors import InvalidInput, NotFound
from paas.schemas import COMMIT_ID, PROCESS_TYPE, BuildPlanPublic, ProcessPublic, check_branch
from web.agent_client import ask_agent, open_runtime_logs
from web.deps import CurrentToken, RowId, SessionDep, SettingsDep
from web.release_logs import follow_file

router = APIRouter(prefix="/api/v1", responses={401: {"description": "Missing or invalid API token"}})
ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "No such app or release"}}


@router.get(
    "/apps/{name}/releases/{version}/log",
    response_class=PlainTextResponse,
    summary="The build and release log of one release (live with follow=true)",
    responses=ERRORS,
)
def release_log(
    name: str,
    version: RowId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _token: CurrentToken,
    follow: bool = Query(default=False, description="Keep streaming until the release finishes."),
) -> Response:
    app = services.get_app(session, name)
    path = settings.release_log(app.name, version)
    dep = services.find_release(session, app, version)
    session.commit()  # end the transaction (SQLite: the write lock) before a long answer
    if not follow or dep is None or dep.id is None:
        if not path.is_file():
            if dep is not None and dep.finished_at is not None:
                raise NotFound(
                    f"the log of {name} v{version} was removed: the newest {settings.keep_release_logs} "
                    "are kept (PAAS_KEEP_RELEASE_LOGS)"
                )
            raise NotFound(f"no log for {name} v{version}")
        return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace"))
    return StreamingResponse(
        follow_file(path, request.app.state.engine, dep.id), media_type="text/plain; charset=utf-8"
    )


@router.get(
    "/apps/{name}/ps",
    response_model=list[ProcessPublic],
    summary="The app's containers: process type, state, uptime, restarts, health",
    responses={**ERRORS, 503: {"description": "The agent or the Docker engine does not answer"}},
)
def ps(name: str, session: SessionDep, settings: SettingsDep, _token: CurrentToken) -> Any:
    services.get_app(session, name)
    session.commit()  # the agent reads the database too: hold no lock while it answers
    return ask_agent(settings, f"/apps/{quote(name)}/ps", timeout=15)


@router.get(
    "/apps/{name}/logs",
    response_class=StreamingResponse,
    summary="Runtime logs of the live release's containers (timestamped; follow=true streams)",
    responses={
        200: {"content": {"text/plain": {}}},
        404: {"description": "No such app, or no running container of that process type"},
        503: {"description": "The agent or the Docker engine does not answer"},
    },
)
async def runtime_logs(
    name: str,
    request: Request,
    settings: SettingsDep,
    _token: CurrentToken,
    process: str = Query(default="web", pattern=PROCESS_TYPE),
    tail: int = Query(default=100, ge=0, le=10000),
    follow: bool = False,
) -> StreamingResponse:
    lines, close = await open_runtime_logs(
        settings, request.app.state.engine, name, process=process, tail=tail, follow=follow
    )
    return StreamingResponse(lines, media_type="text/plain; charset=utf-8", background=BackgroundTask(close))


@router.get(
    "/apps/{name}/build-plan",
    response_model=BuildPlanPublic,
    summary="The Dockerfile a deploy would build: the repository's, or the one paas generates",
    description="The agent fetches the ref (default: the app's branch) and detects; nothing is built.",
    responses={
        **ERRORS,
        422: {"description": "Bad ref, a fetch that failed, or nothing paas knows how to build"},
        503: {"description": "The agent does not answer"},
    },
)
def build_plan(
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    _token: CurrentToken,
    ref: str | None = Query(default=None, max_length=255, description="A branch, tag or commit id"),
) -> Any:
    services.get_app(session, name)
    session.commit()  # the agent reads the database too: hold no lock while it fetches
    params = {}
    if ref and COMMIT_ID.fullmatch(ref):
        params["commit"] = ref
    elif ref:
        try:
            params["ref"] = check_branch(ref)
        except ValueError as exc:
            raise InvalidInput(f"ref {exc}") from None
    return ask_agent(settings, f"/apps/{quote(name)}/build-plan", params=params, timeout=300)
