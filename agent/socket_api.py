"""The agent's answers about live containers: process status and runtime logs.

The web process never touches Docker; it asks the agent over a unix socket
that only root and the web user's group can open (ARCHITECTURE.md, "Processes and
trust"). The socket is bound here, with its permissions set before anyone
can connect, and served by uvicorn in a thread of the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import queue
import socket
import threading
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Engine
from sqlmodel import select

from agent.docker_engine import ContainerInfo, DockerEngine, EngineError
from agent.plan import in_release, owned
from agent.source import SourceError
from paas.db import session_scope
from paas.errors import InvalidInput
from paas.models import App
from paas.schemas import APP_NAME, COMMIT_ID
from paas.services import live_release

__all__ = ["LiveServer", "create_live_app"]

log = logging.getLogger("paas.agent.live")


def _uptime(started_at: str, now: datetime) -> float | None:
    if not started_at or started_at.startswith("0001-"):
        return None
    try:  # the engine gives nanoseconds; Python parses microseconds
        head, _, frac = started_at.rstrip("Z").partition(".")
        started = datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, (now - started).total_seconds())


def _health(
    c: ContainerInfo, *, live: bool, pids: tuple[int, int] | None, drain_left: float | None = None
) -> str:
    """The box first (the kernel killed it, or it runs nearly as many
    processes as it may), then the image's own HEALTHCHECK, then what paas knows."""
    if c.oom_killed:
        return "killed: out of memory"
    if pids is not None and pids[0] * 10 >= pids[1] * 9:  # within 10%: new processes are about to fail
        return f"limited: near its process limit ({pids[0]}/{pids[1]})"
    running = c.status == "running"
    if running and not live and drain_left is not None:
        return f"draining: stopped in {drain_left:.0f}s"
    return c.health or ("serving" if live and running else ("stopped" if not running else ""))


def describe(
    containers: list[ContainerInfo],
    current_deployment: int | None,
    processes: dict[str, tuple[int, int]] | None = None,
    live_names: Collection[str] = (),
    draining: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """What `paas ps` shows, per container: pure, so it is tested by
    equality. ``processes``: (running, limit) by container name;
    ``live_names``: the live release's containers (agent/plan.py in_release);
    ``draining``: seconds before the drainer stops each of those it holds."""
    now = datetime.now(UTC)
    rows = []
    for c in sorted(containers, key=lambda c: (c.labels.get("paas.process", ""), c.name)):
        live = in_release(c.name, c.labels, current_deployment, live_names)
        running = c.status == "running"
        pids = (processes or {}).get(c.name)
        rows.append(
            {
                "name": c.name,
                "process": c.labels.get("paas.process", ""),
                "version": int(c.labels.get("paas.version", "0") or 0),
                "live": live,
                "state": c.status,
                "started_at": c.started_at,
                "uptime_seconds": _uptime(c.started_at, now) if running else None,
                "restarts": c.restarts,
                "oom_killed": c.oom_killed,
                "processes": pids[0] if pids else None,
                "process_limit": pids[1] if pids else None,
                "health": _health(c, live=live, pids=pids, drain_left=(draining or {}).get(c.name)),
            }
        )
    return rows


BuildPlanner = Callable[..., dict[str, object]]


def _label(c: ContainerInfo) -> bytes:
    """``web.2`` for paas-shop-web-v7-2."""
    return f"{c.labels.get('paas.process', '')}.{c.name.rsplit('-', 1)[-1]} ".encode()


def merge_lines(streams: list[tuple[bytes, Iterator[bytes]]]) -> Iterator[bytes]:
    """Whole lines from several streams as they come, each prefixed with its
    stream's label. A reader thread per stream; they stop at the end of their
    stream or, once the reader of the merge has gone, at their next line."""
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=10000)
    gone = threading.Event()

    def pump(label: bytes, stream: Iterator[bytes]) -> None:
        pending = b""
        try:
            for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if gone.is_set():
                        return
                    lines.put(label + line + b"\n")
            if pending and not gone.is_set():
                lines.put(label + pending + b"\n")
        except EngineError as exc:
            lines.put(label + f"(log stream ended: {exc})\n".encode())
        finally:
            lines.put(None)

    for label, stream in streams:
        threading.Thread(target=pump, args=(label, stream), daemon=True, name="log-merge").start()
    open_streams = len(streams)
    try:
        while open_streams:
            item = lines.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
    finally:
        gone.set()
        while not lines.empty():  # unblock pumps waiting on a full queue
            lines.get_nowait()


def _log_body(
    docker: DockerEngine,
    instance: str,
    name: str,
    live: tuple[int | None, Collection[str]],
    *,
    process: str,
    tail: int,
    follow: bool,
) -> Iterator[bytes]:
    """The runtime log of the live release's running containers of one process type."""
    try:
        found = [
            c
            for c in docker.containers({**owned(instance, name), "paas.process": process})
            if in_release(c.name, c.labels, *live) and c.status == "running"
        ]
    except EngineError as exc:
        raise HTTPException(503, f"the Docker engine: {exc}") from None
    if not found:
        raise HTTPException(404, f"{name} has no running {process} container")
    if len(found) == 1:
        return docker.log_stream(found[0].name, tail=tail, follow=follow)
    # several containers of the type (paas scale): lines interleaved, each labelled
    return merge_lines(
        [
            (_label(c), docker.log_stream(c.name, tail=tail, follow=follow))
            for c in sorted(found, key=lambda c: c.name)
        ]
    )


def create_live_app(
    docker: DockerEngine,
    db: Engine,
    instance: str,
    *,
    build_plan: BuildPlanner | None = None,
    on_wake: Callable[[], None] | None = None,
    test_notification: Callable[[int], str] | None = None,
    database_stats: Callable[[str], dict[str, int]] | None = None,
    draining: Callable[[str], dict[str, float]] | None = None,
) -> FastAPI:
    app = FastAPI(title="paas agent (live data)", openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/wake", status_code=204)
    async def wake() -> Response:
        """Web queued a job: look for it now (polling goes on regardless)."""
        if on_wake is not None:
            on_wake()
        return Response(status_code=204)

    @app.post("/notifications/{target_id}/test")
    def test(target_id: int) -> dict[str, object]:
        """Send a test message to one notification target now (up to PAAS_NOTIFY_TIMEOUT)."""
        if test_notification is None:
            raise HTTPException(503, "this agent cannot send notifications")
        error = test_notification(target_id)
        return {"ok": not error, "error": error}

    @app.get("/databases/{name}/stats")
    def stats(name: str) -> dict[str, int]:
        """A database's size and connections in use against its limit ({}: not running)."""
        if database_stats is None or not APP_NAME.fullmatch(name):
            raise HTTPException(404, f"no database named {name!r}")
        try:
            return database_stats(name)
        except InvalidInput as exc:
            raise HTTPException(404, str(exc)) from None

    def current(name: str) -> tuple[int | None, list[str]]:
        """The app's live release: its id and its containers."""
        if not APP_NAME.fullmatch(name):
            raise HTTPException(404, f"no app named {name!r}")
        with session_scope(db) as session:
            row = session.exec(select(App).where(App.name == name)).first()
            if row is None:
                raise HTTPException(404, f"no app named {name!r}")
            release = live_release(session, row)
            return row.current_deployment_id, list(release.containers) if release is not None else []

    @app.get("/apps/{name}/ps")
    def ps(name: str) -> list[dict[str, Any]]:
        live, names = current(name)
        try:
            found = docker.containers(owned(instance, name))
            counts = {c.name: docker.processes(c.name) for c in found if c.status == "running"}
            held = draining(name) if draining is not None else {}
            return describe(found, live, {k: v for k, v in counts.items() if v is not None}, names, held)
        except EngineError as exc:
            raise HTTPException(503, f"the Docker engine: {exc}") from None

    @app.get("/apps/{name}/logs")
    def logs(
        name: str,
        process: str = Query("web", pattern=r"^[a-z][a-z0-9_-]{0,29}$"),
        tail: int = Query(100, ge=0, le=10000),
        follow: bool = False,
    ) -> StreamingResponse:
        body = _log_body(docker, instance, name, current(name), process=process, tail=tail, follow=follow)
        return StreamingResponse(body, media_type="text/plain; charset=utf-8")

    @app.get("/apps/{name}/build-plan")
    def plan(
        name: str,
        ref: str = Query("", max_length=255),
        commit: str = Query("", max_length=40),
    ) -> dict[str, object]:
        current(name)
        if commit and not COMMIT_ID.fullmatch(commit):
            raise HTTPException(422, f"{commit!r} is not a commit id")
        if build_plan is None:
            raise HTTPException(503, "this agent cannot plan builds")
        try:
            return build_plan(name, ref=ref, commit=commit)
        except (InvalidInput, SourceError) as exc:
            raise HTTPException(422, str(exc)) from None

    return app


def _bind(path: Path, web_user: str) -> socket.socket:
    """Bind the socket 0660 (root and the web user's group only) before it listens."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if web_user and os.geteuid() == 0:
        os.chown(path, 0, pwd.getpwnam(web_user).pw_gid)
    sock.listen(64)
    return sock


class LiveServer:
    """uvicorn on the agent's unix socket, in a daemon thread."""

    def __init__(self, app: FastAPI, path: Path, *, web_user: str = "") -> None:
        self.path = path
        self._sock = _bind(path, web_user)
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-socket")

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:  # noqa: BLE001  (live data is a convenience; deploys go on)
            log.exception("the agent's live socket stopped")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
