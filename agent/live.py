"""The agent's answers about live containers: process status and runtime logs.

The web process never touches Docker; it asks the agent over a unix socket
that only root and the web user's group can open (DESIGN.md, "Processes and
trust"). The socket is bound here, with its permissions set before anyone
can connect, and served by uvicorn in a thread of the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlmodel import select

from agent.docker_engine import ContainerInfo, DockerEngine, EngineError
from agent.plan import owned
from paas.db import session_scope
from paas.models import App

__all__ = ["LiveServer", "create_live_app"]

log = logging.getLogger("paas.agent.live")

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def _uptime(started_at: str, now: datetime) -> float | None:
    if not started_at or started_at.startswith("0001-"):
        return None
    try:  # the engine gives nanoseconds; Python parses microseconds
        head, _, frac = started_at.rstrip("Z").partition(".")
        started = datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, (now - started).total_seconds())


def describe(containers: list[ContainerInfo], current_deployment: int | None) -> list[dict[str, Any]]:
    """What `paas ps` shows, per container: pure, so it is tested by equality."""
    now = datetime.now(UTC)
    rows = []
    for c in sorted(containers, key=lambda c: (c.labels.get("paas.process", ""), c.name)):
        live = c.labels.get("paas.deployment") == str(current_deployment)
        running = c.status == "running"
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
                # the image's own HEALTHCHECK if it has one; else what paas knows
                "health": c.health or ("serving" if live and running else ("stopped" if not running else "")),
            }
        )
    return rows


def create_live_app(docker: DockerEngine, db: Engine, instance: str) -> FastAPI:
    app = FastAPI(title="paas agent (live data)", openapi_url=None, docs_url=None, redoc_url=None)

    def current(name: str) -> int | None:
        if not _NAME.match(name):
            raise HTTPException(404, f"no app named {name!r}")
        with session_scope(db) as session:
            row = session.exec(select(App).where(App.name == name)).first()
            if row is None:
                raise HTTPException(404, f"no app named {name!r}")
            return row.current_deployment_id

    @app.get("/apps/{name}/ps")
    def ps(name: str) -> list[dict[str, Any]]:
        live = current(name)
        try:
            return describe(docker.containers(owned(instance, name)), live)
        except EngineError as exc:
            raise HTTPException(503, f"the Docker engine: {exc}") from None

    @app.get("/apps/{name}/logs")
    def logs(
        name: str,
        process: str = Query("web", pattern=r"^[a-z][a-z0-9_-]{0,29}$"),
        tail: int = Query(100, ge=0, le=10000),
        follow: bool = False,
    ) -> StreamingResponse:
        live = current(name)
        try:
            found = [
                c
                for c in docker.containers({**owned(instance, name), "paas.process": process})
                if c.labels.get("paas.deployment") == str(live) and c.status == "running"
            ]
        except EngineError as exc:
            raise HTTPException(503, f"the Docker engine: {exc}") from None
        if not found:
            raise HTTPException(404, f"{name} has no running {process} container")
        streams = [docker.log_stream(c.name, tail=tail, follow=follow) for c in found]

        def body() -> Iterator[bytes]:
            # one container per process type today; several are read in turn
            for stream in streams:
                yield from stream

        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

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
