"""An env change made while a deploy runs is never lost: for a first deploy
and for a redeploy, the agent is frozen (SIGSTOP) as each step begins, env
is set through the API meanwhile, and once the agent goes on the app serves
the new value from the release that goes live or the one right after it.
"Staged" is only what --no-restart asks for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from testkit.harness import GitRemote, Stack
from tests.integration.agent_steps import (
    STEP_DOCKERFILE,
    STEP_PROCFILE,
    STEPS,
    agent_frozen_at,
    slow_fetch_files,
)

pytestmark = pytest.mark.integration

MAIN = """\
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {"value": os.environ.get("VALUE", "")}
"""


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
    repo.commit(
        {
            "Dockerfile": STEP_DOCKERFILE,
            "main.py": MAIN,
            "Procfile": STEP_PROCFILE,
            **(slow_fetch_files() if step == "fetch" else {}),
        },
        "an app that shows VALUE",
    )
    stack.paas("apps", "create", app, "--repo", str(repo.bare), "--health-path", "/")

    for phase in ("first deploy", "redeploy"):
        value = f"{step}-during-the-{phase.replace(' ', '-')}"
        version = max((r["version"] for r in stack.api("GET", f"/apps/{app}/releases").json()), default=0) + 1
        stack.paas("deploy", app)
        with agent_frozen_at(stack, app, version, step):
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
