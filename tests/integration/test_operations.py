"""Queue and agent behaviour with the real engine: bursts of pushes, apps built
in parallel, an agent killed mid-deploy, and deleting an app."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import GitRemote, LoadClient, Stack, wait_until

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000

SERVER = """\
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "{version}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"version": VERSION}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def files(version: str, *, build_seconds: int = 0) -> dict[str, str]:
    slow = f"RUN sleep {build_seconds}\n" if build_seconds else ""
    return {
        "Dockerfile": f"FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\n{slow}"
        'CMD ["python3", "-u", "server.py"]\n',
        "server.py": SERVER.format(version=version),
    }


def create(stack: Stack, name: str, repo: GitRemote) -> str:
    r = stack.api("POST", "/apps", json={"name": name, "repo_url": str(repo.bare), "health_interval": 0.3})
    assert r.status_code == 201, r.text
    return str(r.json()["webhook_secret"])


def push(stack: Stack, name: str, secret: str, repo: GitRemote, version: str, **kw: Any) -> int:
    r = stack.webhook(name, secret, repo.commit(files(version, **kw), version))
    assert r.status_code == 202, r.text
    return int(r.json()["job_id"])


def wait_job(stack: Stack, job_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = stack.api("GET", f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")


def wait_step(stack: Stack, name: str, version: int, step: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in stack.api("GET", f"/apps/{name}/releases").json():
            if row["version"] == version and row["step"] == step and row["status"] == "running":
                return
        time.sleep(0.1)
    raise AssertionError(f"{name} v{version} never reached {step}")


def test_a_burst_of_pushes_deploys_only_the_newest_commit(stack: Stack, tmp_path_factory: Any) -> None:
    name = f"burst{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("burst"))
    secret = create(stack, name, repo)
    first = push(stack, name, secret, repo, "c1", build_seconds=3)
    wait_step(stack, name, 1, "build")
    burst = [push(stack, name, secret, repo, f"c{n}", build_seconds=3) for n in (2, 3, 4)]
    newest_commit = repo.head
    assert wait_job(stack, first)["state"] == "done"
    assert [wait_job(stack, j)["state"] for j in burst] == ["superseded", "superseded", "done"]
    releases = stack.api("GET", f"/apps/{name}/releases").json()
    assert [(r["version"], r["status"]) for r in releases] == [(2, "succeeded"), (1, "succeeded")]
    assert releases[0]["commit"] == newest_commit
    assert stack.get_app(name).json() == {"version": "c4"}


def test_two_apps_build_in_parallel(stack: Stack, tmp_path_factory: Any) -> None:
    apps = [f"para{TAG}a", f"para{TAG}b"]
    jobs = []
    for name in apps:
        repo = GitRemote(tmp_path_factory.mktemp(name))
        jobs.append(push(stack, name, create(stack, name, repo), repo, "p1", build_seconds=4))
    finished = [wait_job(stack, j) for j in jobs]
    assert [j["state"] for j in finished] == ["done", "done"], [j["error"] for j in finished]
    spans = []
    for name in apps:
        [release] = stack.api("GET", f"/apps/{name}/releases").json()
        spans.append(
            (datetime.fromisoformat(release["created_at"]), datetime.fromisoformat(release["finished_at"]))
        )
        assert stack.get_app(name).json() == {"version": "p1"}
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end, f"the builds did not overlap: {spans}"


def test_an_agent_killed_mid_deploy_is_recovered(stack: Stack, tmp_path_factory: Any) -> None:
    name = f"crash{TAG}"
    repo = GitRemote(tmp_path_factory.mktemp("crash"))
    secret = create(stack, name, repo)
    assert wait_job(stack, push(stack, name, secret, repo, "v1"))["state"] == "done"
    job = push(stack, name, secret, repo, "v2", build_seconds=60)
    wait_step(stack, name, 2, "build")
    with LoadClient(stack.nginx.port, f"{name}.{stack.domain}") as load:
        assert stack.proc is not None
        os.killpg(stack.proc.pid, signal.SIGKILL)  # web and agent die mid-build
        stack.proc.wait()
        time.sleep(2)
        stack.start()  # same data dir: the new agent finds the dead one's job
        failed = wait_job(stack, job, timeout=120)
    assert failed["state"] == "failed" and "lease expired" in failed["error"]
    releases = stack.api("GET", f"/apps/{name}/releases").json()
    assert releases[0]["version"] == 2 and releases[0]["status"] == "failed"
    assert "lease expired" in releases[0]["error"]
    assert load.report.failures == [] and set(load.report.versions) == {"v1"}
    # nothing of v2 is left running (drained first: nginx may have seen it), and the app deploys again
    client = docker.from_env()
    of_v2 = {"label": [f"paas.app={name}", "paas.version=2"]}
    wait_until(
        lambda: not client.containers.list(ignore_removed=True, all=True, filters=of_v2),
        "v2's containers removed",
    )
    assert wait_job(stack, push(stack, name, secret, repo, "v3"))["state"] == "done"
    assert stack.get_app(name).json() == {"version": "v3"}


def test_deleting_an_app_removes_its_parts_and_spares_the_others(stack: Stack, tmp_path_factory: Any) -> None:
    doomed, kept = f"gone{TAG}", f"kept{TAG}"
    for name in (doomed, kept):
        repo = GitRemote(tmp_path_factory.mktemp(name))
        secret = create(stack, name, repo)
        assert wait_job(stack, push(stack, name, secret, repo, "d1"))["state"] == "done"
    site = stack.nginx.conf_dir / f"paas-app-{doomed}.conf"
    assert site.exists()
    with LoadClient(stack.nginx.port, f"{kept}.{stack.domain}") as load:
        out = stack.paas("apps", "delete", doomed, "--yes").stdout
        assert "deleting" in out
        deadline = time.monotonic() + 60
        while stack.api("GET", f"/apps/{doomed}").status_code != 404:
            assert time.monotonic() < deadline, "the app was never deleted"
            time.sleep(0.2)
    assert load.report.failures == [] and load.report.total > 0
    assert not site.exists()
    # nginx's default server: no answer at all, once the reload has reached every worker
    # (workers of the old configuration finish what they hold; a reload is a signal)
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = stack.get_app(doomed)
        except httpx.RemoteProtocolError:
            break
        assert time.monotonic() < deadline, f"nginx still answers for {doomed}: {answer.status_code}"
        time.sleep(0.1)
    assert stack.get_app(kept).json() == {"version": "d1"}
    client = docker.from_env()
    label = f"paas.app={doomed}"
    assert client.containers.list(ignore_removed=True, all=True, filters={"label": label}) == []
    assert client.images.list(filters={"label": label}) == []
    assert not (stack.root / "data" / "repos" / f"{doomed}.git").exists()
