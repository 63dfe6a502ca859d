"""Catching the agent at a step of a deploy: watch the deployment's row in
the database, then hold the agent still (SIGSTOP, outside any write) while
the test does what it came for: an env change (test_env_race.py) or a
SIGKILL (test_faults.py)."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from agent.steps import steps_for
from paas import queue
from testkit.harness import Stack
from tests.integration.installs import workers

STEPS = steps_for(queue.DEPLOY)  # fetch, build, release, start, health, switch, retire

# An app whose every step can be caught: a Dockerfile (cached after the first build) and a
# release phase that takes a moment. Its main.py is the test's own.
STEP_DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir "fastapi>=0.110,<1" "uvicorn>=0.29,<1"
COPY main.py .
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""
STEP_PROCFILE = """\
web: uvicorn main:app --host 0.0.0.0 --port $PORT
release: sleep 1
"""


def slow_fetch_files() -> dict[str, str]:
    """16 MB that do not compress: fetching and exporting them takes long
    enough for the fetch step to be caught (a local repository is fast)."""
    return {"padding.txt": base64.b64encode(os.urandom(12 * 2**20)).decode()}


def _step_of(db: sqlite3.Connection, app: str, version: int) -> tuple[str, bool] | None:
    """The release's step, and whether it has finished (it is live from the
    switch on, and finishes after retire)."""
    row = db.execute(
        "SELECT d.step, d.finished_at IS NOT NULL FROM deployment d JOIN app a ON a.id = d.app_id "
        "WHERE a.name = ? AND d.version = ?",
        (app, version),
    ).fetchone()
    return (row[0] or "", bool(row[1])) if row else None


def _after(seen: str, step: str) -> bool:
    return bool(seen) and STEPS.index(seen) > STEPS.index(step)


def _at(seen: str, step: str) -> bool:
    """At ``step``; for fetch, also the moment before it (the release made,
    its log opened): a local fetch can take less time than one poll."""
    return seen == step or (step == STEPS[0] and seen == "")


def wait_for_step(stack: Stack, app: str, version: int, step: str) -> None:
    """Until release v``version`` of ``app`` begins ``step`` (failing if it
    goes past unseen)."""
    db = sqlite3.connect(stack.root / "data" / "db" / "paas.db", timeout=10)
    try:
        deadline = time.monotonic() + 300
        seen = None
        while time.monotonic() < deadline:
            seen = _step_of(db, app, version)
            if seen is not None and _at(seen[0], step):
                return
            if seen is not None and (seen[1] or _after(seen[0], step)):
                raise AssertionError(f"{app} v{version} went past {step} unseen: {seen}")
            time.sleep(0.0005)
        raise AssertionError(f"{app} v{version} never reached {step}: {seen}")
    finally:
        db.close()


@contextmanager
def agent_frozen_at(stack: Stack, app: str, version: int, step: str) -> Iterator[int]:
    """Wait for release v``version`` of ``app`` to begin ``step``, then hold
    the agent still (every thread of it) until the block ends; yields its pid."""
    wait_for_step(stack, app, version, step)
    assert stack.proc is not None
    agent = workers(stack.proc.pid)["paas-agent"]
    freeze_outside_a_write(stack, agent, app, version, step)
    try:
        yield agent
    finally:
        with contextlib.suppress(ProcessLookupError):  # the test may have killed it
            os.kill(agent, signal.SIGCONT)


def freeze_outside_a_write(stack: Stack, agent: int, app: str, version: int, step: str) -> None:
    """SIGSTOP the agent at a moment it holds no write transaction: frozen
    inside one, it would hold SQLite's lock, and web's env change would wait
    for it (a real agent is never frozen). Still at ``step``, checked."""
    probe = sqlite3.connect(stack.root / "data" / "db" / "paas.db", timeout=0, isolation_level=None)
    try:
        for _ in range(200):
            os.kill(agent, signal.SIGSTOP)
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # the agent is writing: let it finish
                os.kill(agent, signal.SIGCONT)
                time.sleep(0.002)
                continue
            probe.execute("ROLLBACK")
            seen = _step_of(probe, app, version)
            if seen is None or not _at(seen[0], step):
                os.kill(agent, signal.SIGCONT)
                raise AssertionError(f"{app} v{version} moved past {step} while the agent wrote: {seen}")
            return
        os.kill(agent, signal.SIGCONT)
        raise AssertionError(f"the agent kept writing to the database at {app} v{version} {step}")
    finally:
        probe.close()
