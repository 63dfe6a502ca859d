"""Faults survived, with a load client on the live app counting failures.

The agent is SIGKILLed as each step of a deploy begins (caught as in
test_env_race.py: frozen outside a write, at that step, then killed).
`paas up`'s supervisor then stops web and exits, as it does when a child
dies, and is started again, as systemd or install.sh would. Within 60 s:
one live release, nginx routing to it, nothing of the dead attempt left
running, no job left running; the next push deploys. The app never fails a
request throughout.
"""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.agent_steps import STEPS, agent_frozen_at
from tests.integration.harness import GitRemote, LoadClient, Nginx, Stack

pytestmark = pytest.mark.integration

RECOVERY_BOUND = 60  # seconds from the restart to a settled app

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
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {{"version": "{version}"}}
"""


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    # the shortest lease: a dead agent's job is failed within seconds
    paas = Stack(tmp_path_factory.mktemp("faults"), nginx, PAAS_JOB_LEASE_SECONDS="5")
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def _files(version: int, *, slow_fetch: bool = False) -> dict[str, str]:
    files = {"Dockerfile": DOCKERFILE, "Procfile": PROCFILE, "main.py": MAIN.format(version=f"k{version}")}
    if slow_fetch:  # 16 MB that do not compress: a fetch from a local repository that can be caught
        files["padding.txt"] = base64.b64encode(os.urandom(12 * 2**20)).decode()
    return files


def _running_jobs(stack: Stack) -> int:
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db", timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM job WHERE state = 'running'").fetchone()[0])


def _settled(stack: Stack, app: str, since: float) -> dict[str, object]:
    """Wait (at most RECOVERY_BOUND from ``since``) until no job runs, no
    release is running, every container of the app is the live release's
    (nothing of a dead attempt) and nginx serves the live release."""
    engine = docker.from_env()
    last: object = None
    while time.monotonic() - since < RECOVERY_BOUND:
        info = stack.api("GET", f"/apps/{app}").json()
        releases = stack.api("GET", f"/apps/{app}/releases").json()
        live = info["current_version"]
        found = engine.containers.list(all=True, filters={"label": f"paas.app={app}"})
        versions = {c.labels["paas.version"] for c in found}
        if _running_jobs(stack) or any(r["status"] == "running" for r in releases):
            last = [(r["version"], r["status"], r["step"]) for r in releases[:3]]
        elif versions != {str(live)}:
            last = f"containers of {sorted(versions)}, live v{live}"
        else:
            served = {stack.get_app(app).json().get("version") for _ in range(6)}
            if served == {f"k{live}"}:
                return {"info": info, "releases": releases, "seconds": time.monotonic() - since}
            last = f"served {served}, live v{live}"
        time.sleep(0.2)
    raise AssertionError(f"{app} did not settle within {RECOVERY_BOUND} s of the restart: {last}")


def test_the_agent_killed_at_each_step_recovers_and_the_app_never_fails(
    fault_stack: Stack, tmp_path: Path
) -> None:
    stack, app = fault_stack, "killed"
    (tmp_path / "git").mkdir()
    repo = GitRemote(tmp_path / "git")
    repo.commit(_files(1), "v1")
    stack.paas("apps", "create", app, "--repo", str(repo.bare), "--health-path", "/")
    assert "is live" in stack.paas("deploy", app, "--wait").stdout
    version, took = 1, {}
    with LoadClient(stack.nginx.port, f"{app}.{stack.domain}", max_seconds=900) as load:
        for step in STEPS:
            version += 1
            repo.commit(_files(version, slow_fetch=step == "fetch"), f"v{version}, killed at {step}")
            stack.paas("deploy", app)
            with agent_frozen_at(stack, app, version, step) as agent:
                os.kill(agent, signal.SIGKILL)
            assert stack.proc is not None
            assert stack.proc.wait(timeout=90) != 0  # the supervisor stopped web and said why
            restarted = time.monotonic()
            stack.start()
            settled = _settled(stack, app, restarted)
            took[step] = settled["seconds"]
            live = settled["info"]["current_version"]  # type: ignore[index]
            killed = next(r for r in settled["releases"] if r["version"] == version)  # type: ignore[union-attr]
            if step == "retire":  # live since the switch
                assert live == version and killed["status"] == "succeeded", (step, killed)
            elif step != "switch":  # nginx never saw it
                assert live == version - 1 and killed["status"] == "failed", (step, killed)
                assert "lease expired" in killed["error"], killed

            # the next push deploys
            version += 1
            repo.commit(_files(version), f"v{version}, after the kill at {step}")
            assert f"v{version} is live" in stack.paas("deploy", app, "--wait").stdout, step
    print(
        "\nagent killed at each step: settled after the restart in "
        + ", ".join(f"{s} {t:.1f}s" for s, t in took.items())
        + f"; app: {load.report.total} requests, {len(load.report.failures)} failed"
    )
    assert load.report.failures == [], load.report.failures[:5]
