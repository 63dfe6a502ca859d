"""Deploy on push, for real: a local bare repository stands in for GitHub, a
signed push webhook goes through nginx to `paas up`, the agent builds with the
real Docker engine and switches nginx, and a client sends requests through
nginx the whole time. Zero of them may fail.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import GitRemote, LoadClient, Stack
from testkit.sample_app import DOCKERFILE, PRESTART, REQUIREMENTS

pytestmark = pytest.mark.integration

APP = f"shop{os.getpid() % 100000}"

MAIN = """\
import os
import socket

from fastapi import FastAPI

app = FastAPI()
VERSION = "{version}"


@app.get("/")
def root():
    mark = None
    if os.path.exists("/data/mark"):
        with open("/data/mark") as handle:
            mark = handle.read().strip()
    return {{
        "version": VERSION,
        "mark": mark,
        "container": socket.gethostname(),
        "notes_in_image": os.path.exists("NOTES.md"),
    }}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""


def app_files(version: str) -> dict[str, str]:
    return {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": REQUIREMENTS,
        "main.py": MAIN.format(version=version),
        "prestart.sh": PRESTART.format(version=version),
        ".dockerignore": "*.md\n",
        "NOTES.md": "kept out of the image by .dockerignore\n",
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> GitRemote:
    return GitRemote(tmp_path_factory.mktemp("git"))


@pytest.fixture(scope="module")
def created(stack: Stack, repo: GitRemote) -> dict[str, Any]:
    result = stack.paas(
        "apps",
        "create",
        APP,
        "--repo",
        str(repo.bare),
        "--branch",
        "main",
        "--health-path",
        "/healthz",
        "--data-path",
        "/data",
        "--json",
    )
    data = json.loads(result.stdout)
    assert data["name"] == APP
    assert data["webhook_url"].endswith(f"/hooks/github/{APP}")
    return data


def deploy_and_time(
    stack: Stack, repo: GitRemote, secret: str, version: int, files: dict[str, str]
) -> dict[str, Any]:
    """Commit, push, send the webhook; return the release and webhook→live time."""
    payload = repo.commit(files, f"release {version}")
    sent = time.monotonic()
    response = stack.webhook(APP, secret, payload)
    accepted = time.monotonic() - sent
    assert response.status_code == 202, response.text
    release = stack.wait_release(APP, version)
    live = None
    if release["status"] == "succeeded":
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if stack.get_app(APP).json().get("version") == f"v{version}":
                live = time.monotonic() - sent
                break
            time.sleep(0.05)
    return {"release": release, "accepted_s": accepted, "live_s": live, "commit": payload["after"]}


def test_push_deploys_and_switches_with_zero_failed_requests(
    stack: Stack, repo: GitRemote, created: dict[str, Any]
) -> None:
    secret = created["webhook_secret"]
    ping = stack.webhook(APP, secret, {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert ping.status_code == 200 and ping.json()["detail"] == "pong"

    first = deploy_and_time(stack, repo, secret, 1, app_files("v1"))
    assert first["release"]["status"] == "succeeded", stack.release_log(APP, 1)
    served = stack.get_app(APP).json()
    assert served["version"] == "v1"
    assert served["mark"] == "prestart ran for v1"  # the release phase ran, once, before start
    assert served["notes_in_image"] is False  # .dockerignore was honoured
    log = stack.release_log(APP, 1)
    for step in (
        "==> fetch",
        "==> build",
        "==> release",
        "==> start",
        "==> health",
        "==> switch",
        "==> retire",
        "prestart: wrote the mark for v1",
    ):
        assert step in log
    assert first["release"]["commit"] == first["commit"]

    results = [first]
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        time.sleep(1)
        for n in range(2, 7):  # five consecutive deploys under load
            result = deploy_and_time(stack, repo, secret, n, app_files(f"v{n}"))
            assert result["release"]["status"] == "succeeded", stack.release_log(APP, n)
            assert result["live_s"] is not None, f"v{n} never served"
            results.append(result)
        time.sleep(1)
    report = load.report
    assert report.total > 100, "the load client barely ran"
    assert report.failures == [], f"{len(report.failures)} failed requests: {report.failures[:5]}"
    assert set(report.versions) >= {"v1", "v6"}
    served = stack.get_app(APP).json()
    assert (served["version"], served["mark"]) == ("v6", "prestart ran for v6")

    # Only the live release's container runs; older images are kept for rollback.
    releases = json.loads(stack.paas("releases", APP, "--json").stdout)
    assert [r["version"] for r in releases] == [6, 5, 4, 3, 2, 1]
    assert all(r["status"] == "succeeded" and len(r["commit"]) == 40 for r in releases)
    _write_report(stack, results, report.total, len(report.failures))


@pytest.mark.parametrize(
    ("case", "step"),
    [("build fails", "build"), ("prestart exits 1", "release"), ("never healthy", "health")],
)
def test_failed_deploys_leave_the_live_release_serving(
    stack: Stack, repo: GitRemote, created: dict[str, Any], case: str, step: str
) -> None:
    secret = created["webhook_secret"]
    live = stack.get_app(APP).json()["version"]
    before = stack.api("GET", f"/apps/{APP}/releases").json()[0]["version"]
    files = app_files("broken")
    if case == "build fails":
        files["Dockerfile"] = DOCKERFILE.replace("COPY . .", "COPY . .\nRUN exit 3")
    elif case == "prestart exits 1":
        files["prestart.sh"] = "#!/bin/sh\necho 'migration failed' >&2\nexit 1\n"
    else:  # listens on the wrong port: the container runs, but never answers
        files["Dockerfile"] = DOCKERFILE.replace("--port $PORT", "--port 9")
        # fail fast: a 6-attempt health check
        stack.api("PATCH", f"/apps/{APP}", json={"health_retries": 6, "health_interval": 0.5})
    version = before + 1
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        payload = repo.commit(files, f"broken: {case}")
        assert stack.webhook(APP, secret, payload).status_code == 202
        release = stack.wait_release(APP, version)
        time.sleep(1)
    assert release["status"] == "failed"
    assert release["step"] == step, release["error"]
    assert release["error"].startswith(f"{step}:")
    assert load.report.failures == [], load.report.failures[:5]
    assert set(load.report.versions) == {live}
    assert stack.get_app(APP).json()["version"] == live
    # what the attempt created is gone: no container or image of the failed version
    import docker

    client = docker.from_env()
    assert not client.containers.list(
        all=True, filters={"label": [f"paas.app={APP}", f"paas.version={version}"]}
    )
    assert not client.images.list(filters={"label": [f"paas.app={APP}", f"paas.version={version}"]})
    if step == "health":
        stack.api("PATCH", f"/apps/{APP}", json={"health_retries": 60, "health_interval": 1.0})


def _write_report(stack: Stack, results: list[dict[str, Any]], total: int, failed: int) -> None:
    lines = [f"end-to-end deploys of {APP}: {total} requests through nginx during 5 deploys, {failed} failed"]
    for r in results:
        rel = r["release"]
        steps = " ".join(f"{k}={v:.2f}s" for k, v in rel["timings"].items())
        live = f"{r['live_s']:.2f}s" if r["live_s"] is not None else "never"
        lines.append(
            f"v{rel['version']}: webhook answered in {r['accepted_s'] * 1000:.0f}ms, "
            f"live after {live}; {steps}"
        )
    text = "\n".join(lines)
    out = Path(os.environ.get("PAAS_TEST_REPORTS", "test-reports"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e-deploy.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
