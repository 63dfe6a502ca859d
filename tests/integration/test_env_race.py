"""An env change made while a deploy runs is never lost: for a first deploy
and for a redeploy, the agent is frozen (SIGSTOP) as each step begins, env
is set through the API meanwhile, and once the agent goes on the app serves
the new value from the release that goes live or the one right after it.
"Staged" is only what --no-restart asks for.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.steps import steps_for
from paas import queue
from tests.integration.harness import GitRemote, Stack
from tests.integration.installs import workers

pytestmark = pytest.mark.integration

STEPS = steps_for(queue.DEPLOY)  # fetch, build, release, start, health, switch, retire

DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir "fastapi>=0.110,<1" "uvicorn>=0.29,<1"
COPY main.py .
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""

# a release phase that takes a moment, so that the release step can be caught
PROCFILE = """\
web: uvicorn main:app --host 0.0.0.0 --port $PORT
release: sleep 1
"""

MAIN = """\
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {"value": os.environ.get("VALUE", "")}
"""


def _step_of(db: sqlite3.Connection, app: str, version: int) -> tuple[str, str] | None:
    row = db.execute(
        "SELECT d.step, d.status FROM deployment d JOIN app a ON a.id = d.app_id "
        "WHERE a.name = ? AND d.version = ?",
        (app, version),
    ).fetchone()
    return (row[0] or "", row[1]) if row else None


def _after(seen: str, step: str) -> bool:
    return bool(seen) and STEPS.index(seen) > STEPS.index(step)


@contextmanager
def _agent_frozen_at(stack: Stack, app: str, version: int, step: str) -> Iterator[None]:
    """Wait for release v``version`` of ``app`` to begin ``step``, then hold
    the agent still (every thread of it) until the block ends."""
    db = sqlite3.connect(stack.root / "data" / "db" / "paas.db", timeout=10)
    try:
        deadline = time.monotonic() + 300
        seen = None
        while time.monotonic() < deadline:
            seen = _step_of(db, app, version)
            if seen is not None and seen[0] == step:
                break
            if seen is not None and (seen[1] != "running" or _after(seen[0], step)):
                raise AssertionError(f"{app} v{version} went past {step} unseen: {seen}")
            time.sleep(0.0005)
        else:
            raise AssertionError(f"{app} v{version} never reached {step}: {seen}")
    finally:
        db.close()
    assert stack.proc is not None
    agent = workers(stack.proc.pid)["paas-agent"]
    _freeze_outside_a_write(stack, agent, app, version, step)
    try:
        yield
    finally:
        os.kill(agent, signal.SIGCONT)


def _freeze_outside_a_write(stack: Stack, agent: int, app: str, version: int, step: str) -> None:
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
            if seen is None or seen[0] != step:
                os.kill(agent, signal.SIGCONT)
                raise AssertionError(f"{app} v{version} moved past {step} while the agent wrote: {seen}")
            return
        os.kill(agent, signal.SIGCONT)
        raise AssertionError(f"the agent kept writing to the database at {app} v{version} {step}")
    finally:
        probe.close()


def _settled(stack: Stack, app: str, want: str, timeout: float = 180) -> dict[str, object]:
    """Wait until no job of the app is queued or running and the app serves
    ``want``; the app's info then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        releases = stack.api("GET", f"/apps/{app}/releases").json()
        if not any(r["status"] == "running" for r in releases):
            served = stack.get_app(app)
            if served.status_code == 200 and served.json().get("value") == want:
                return dict(stack.api("GET", f"/apps/{app}").json())  # read after it serves
        time.sleep(0.2)
    info = stack.api("GET", f"/apps/{app}").json()
    raise AssertionError(f"{app} did not come to serve VALUE={want}: {info}, {stack.get_app(app).text}")


@pytest.mark.parametrize("step", [s for s in STEPS if s != "retire"])
def test_an_env_change_during_each_step_goes_live(stack: Stack, tmp_path: Path, step: str) -> None:
    app = f"race-{step}"
    (tmp_path / "git").mkdir()
    repo = GitRemote(tmp_path / "git")
    repo.commit({"Dockerfile": DOCKERFILE, "main.py": MAIN, "Procfile": PROCFILE}, "an app that shows VALUE")
    stack.paas("apps", "create", app, "--repo", str(repo.bare), "--health-path", "/")

    for phase in ("first deploy", "redeploy"):
        value = f"{step}-during-the-{phase.replace(' ', '-')}"
        version = max((r["version"] for r in stack.api("GET", f"/apps/{app}/releases").json()), default=0) + 1
        stack.paas("deploy", app)
        with _agent_frozen_at(stack, app, version, step):
            changed = json.loads(stack.paas("env", "set", app, f"VALUE={value}", "--json").stdout)
        assert changed["staged"] is False, (phase, changed)
        info = _settled(stack, app, value)
        # the change is in the release that went live, or the one right after it
        assert info["current_version"] in (version, version + 1), (phase, info)
        assert info["env_staged"] is False, (phase, info)
        releases = stack.api("GET", f"/apps/{app}/releases").json()
        assert [r["status"] for r in releases if r["version"] >= version] == ["succeeded"] * (
            int(str(info["current_version"])) - version + 1
        ), (phase, releases)
