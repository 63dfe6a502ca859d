"""A release's build and release log, followed as it is written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from paas.db import session_scope
from paas.models import Deployment, DeploymentStatus

__all__ = ["follow_file"]


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
