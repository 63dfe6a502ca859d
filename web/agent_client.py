"""Web's one door to the agent: a unix socket that answers questions about
live containers (status, runtime logs) and build plans. Web never touches
Docker; the agent's errors come back as ours (NotFound, InvalidInput,
Unavailable)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from paas import services
from paas.db import session_scope
from paas.errors import InvalidInput, NotFound, PaasError, Unavailable
from paas.settings import Settings

__all__ = ["AGENT_DOWN", "agent_waker", "ask_agent", "open_runtime_logs"]

log = logging.getLogger(__name__)

AGENT_DOWN = "the agent does not answer on its socket: is `paas agent` (or `paas up`) running?"


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


def ask_agent(
    settings: Settings,
    path: str,
    *,
    timeout: float,
    params: dict[str, str] | None = None,
    method: str = "GET",
) -> Any:
    """A JSON answer from the agent's socket, its errors turned into ours."""
    transport = httpx.HTTPTransport(uds=str(settings.agent_socket))
    try:
        with httpx.Client(transport=transport, base_url="http://agent", timeout=timeout) as agent:
            response = agent.request(method, path, params=params)
    except httpx.HTTPError:
        raise Unavailable(AGENT_DOWN) from None
    _raise_for_agent(response.status_code, response.content)
    return response.json()


def database_stats(settings: Settings, name: str) -> dict[str, int] | None:
    """A database's size and connections, as the agent reads them (web never
    reaches a database); None when the agent does not answer. The caller
    holds no database lock: the agent reads the database too."""
    try:
        answer: dict[str, int] = ask_agent(settings, f"/databases/{quote(name)}/stats", timeout=10)
    except PaasError:
        return None
    return answer


def agent_waker(settings: Settings) -> Callable[[], None]:
    """A function that tells the agent a job was queued, so that it claims
    it now rather than at its next poll (PAAS_POLL_SECONDS). Best effort: an
    agent that does not answer within 0.5 s still polls."""
    client: httpx.Client | None = None
    lock = threading.Lock()

    def wake() -> None:
        nonlocal client
        with lock:
            if client is None:
                transport = httpx.HTTPTransport(uds=str(settings.agent_socket))
                client = httpx.Client(transport=transport, base_url="http://agent", timeout=0.5)
        try:
            client.post("/wake")
        except httpx.HTTPError as exc:
            log.debug("could not wake the agent: %s", exc)

    return wake


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
