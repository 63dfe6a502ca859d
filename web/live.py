"""Live data: a release's log as it is written, and the containers' status
and runtime logs, which web asks the agent for over its unix socket (web
never touches Docker)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import Engine
from starlette.background import BackgroundTask

from paas import services
from paas.db import session_scope
from paas.errors import InvalidInput, NotFound, Unavailable
from paas.models import Deployment, DeploymentStatus
from paas.schemas import COMMIT_ID, PROCESS_TYPE, BuildPlanPublic, ProcessPublic, check_branch
from paas.settings import Settings
from web.deps import CurrentToken, RowId, SessionDep, SettingsDep

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
            raise NotFound(f"no log for {name} v{version}")
        return PlainTextResponse(path.read_text(encoding="utf-8", errors="replace"))
    return StreamingResponse(
        follow_file(path, request.app.state.engine, dep.id), media_type="text/plain; charset=utf-8"
    )


async def follow_file(path: Path, engine: Engine, dep_id: int, *, offset: int = 0) -> AsyncIterator[bytes]:
    """The file (from byte ``offset``) as it grows, until its deployment has
    finished (at most 3 h)."""
    deadline = time.monotonic() + 3 * 3600
    while time.monotonic() < deadline:
        finished = await run_in_threadpool(_finished, engine, dep_id)
        data = await run_in_threadpool(_read_from, path, offset)
        if data:
            offset += len(data)
            yield data
        elif finished:
            return
        else:
            await asyncio.sleep(0.25)


def _finished(engine: Engine, dep_id: int) -> bool:
    with session_scope(engine) as session:
        dep = session.get(Deployment, dep_id)
        return dep is None or dep.finished_at is not None or dep.status != DeploymentStatus.running


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(1 << 20)
    except FileNotFoundError:
        return b""


# live data, from the agent ------------------------------------------------------------

AGENT_DOWN = "the agent does not answer on its socket: is `paas agent` (or `paas up`) running?"


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


async def open_runtime_logs(
    settings: Settings, engine: Engine, name: str, *, process: str, tail: int, follow: bool
) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
    """The agent's log stream for the app's live containers of one process
    type, and the function that closes it (the API's route and the UI's
    Server-Sent Events both read it)."""
    await run_in_threadpool(_known_app, engine, name)
    agent = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(settings.agent_socket)),
        base_url="http://agent",
        timeout=httpx.Timeout(15, read=None),
    )
    params: dict[str, str | int] = {"process": process, "tail": tail, "follow": str(follow).lower()}
    try:
        response = await agent.send(
            agent.build_request("GET", f"/apps/{quote(name)}/logs", params=params), stream=True
        )
    except httpx.HTTPError:
        await agent.aclose()
        raise Unavailable(AGENT_DOWN) from None
    if response.status_code != 200:
        body = await response.aread()
        await response.aclose()
        await agent.aclose()
        _raise_for_agent(response.status_code, body)

    async def close() -> None:
        await response.aclose()
        await agent.aclose()

    return response.aiter_raw(), close


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


def ask_agent(settings: Settings, path: str, *, timeout: float, params: dict[str, str] | None = None) -> Any:
    """GET a JSON answer from the agent's socket, its errors turned into ours."""
    transport = httpx.HTTPTransport(uds=str(settings.agent_socket))
    try:
        with httpx.Client(transport=transport, base_url="http://agent", timeout=timeout) as agent:
            response = agent.get(path, params=params)
    except httpx.HTTPError:
        raise Unavailable(AGENT_DOWN) from None
    _raise_for_agent(response.status_code, response.content)
    return response.json()


def _known_app(engine: Engine, name: str) -> None:
    """Raise NotFound unless the app exists (before anything asks the agent)."""
    with session_scope(engine) as session:
        services.get_app(session, name)


def _raise_for_agent(status_code: int, body: bytes) -> None:
    if status_code == 200:
        return
    try:
        detail = str(json.loads(body).get("detail"))
    except (ValueError, AttributeError):
        detail = f"the agent answered HTTP {status_code}"
    if status_code == 404:
        raise NotFound(detail)
    if status_code == 422:
        raise InvalidInput(detail)
    raise Unavailable(detail)
