"""Rollback and cancel for real: three releases with different code and env,
`paas rollback` brings back code *and* env with zero failed requests and no
build, pushes wait while pinned, a long build is cancelled within seconds,
and rollback still works after the agent restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import GitRemote, LoadClient, Stack, restart_docker_engine
from testkit.sample_app import DOCKERFILE, REQUIREMENTS

pytestmark = pytest.mark.integration

APP = f"roll{os.getpid() % 100000}"

SLOW_DOCKERFILE = DOCKERFILE.replace("COPY . .", "RUN echo building slowly && sleep 300\nCOPY . .")

MAIN = """\
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {{"version": "{code}/" + os.environ.get("GREETING", "")}}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}
"""


def files(code: str, dockerfile: str = DOCKERFILE) -> dict[str, str]:
    return {
        "Dockerfile": dockerfile,
        "requirements.txt": REQUIREMENTS,
        "main.py": MAIN.format(code=code),
    }


def served(stack: Stack) -> str:
    return str(stack.get_app(APP).json()["version"])


def latest(stack: Stack) -> dict[str, Any]:
    return dict(stack.api("GET", f"/apps/{APP}/releases").json()[0])


@pytest.fixture(scope="module")
def three(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1, v2, v3: each with its own code and its own GREETING."""
    repo = GitRemote(tmp_path_factory.mktemp("git-roll"))
    created = json.loads(
        stack.paas(
            "apps", "create", APP, "--repo", str(repo.bare), "--health-path", "/healthz", "--json"
        ).stdout
    )
    for n in (1, 2, 3):
        stack.paas("env", "set", APP, f"GREETING=g{n}", "--no-restart")
        payload = repo.commit(files(f"c{n}"), f"release {n}")
        assert stack.webhook(APP, created["webhook_secret"], payload).status_code == 202
        assert stack.wait_release(APP, n)["status"] == "succeeded", stack.release_log(APP, n)
    assert served(stack) == "c3/g3"
    return {"repo": repo, "secret": created["webhook_secret"]}


def rollback_timed(stack: Stack, *args: str, expect: str) -> dict[str, Any]:
    """Run `paas rollback`, time command → new version served, wait for the CLI."""
    started = time.monotonic()
    proc = stack.spawn("rollback", APP, *args)
    live = None
    deadline = started + 120
    while live is None and time.monotonic() < deadline:
        if served(stack) == expect:
            live = time.monotonic() - started
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert live is not None, f"{expect} never served"
    return {"live_s": live, "stdout": out, "stderr": err, "release": latest(stack)}


def test_rollback_brings_back_code_and_env_with_zero_failed_requests(
    stack: Stack, three: dict[str, Any]
) -> None:
    results = []
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        time.sleep(0.5)
        first = rollback_timed(stack, expect="c2/g2")  # the previous release, v2
        results.append(first)
        second = rollback_timed(stack, "--to", "v1", expect="c1/g1")
        results.append(second)
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    assert load.report.versions.get("c2/g2", 0) > 0

    assert "migrations are not undone" in first["stderr"] and "pinned" in first["stdout"]
    for result, target in ((first, 2), (second, 1)):
        rel = result["release"]
        assert rel["trigger"] == f"rollback of v{target}" and rel["rollback_of"] == target
        assert rel["image"] == f"paas/{APP}:v{target}" and rel["status"] == "succeeded"
        assert "build" not in rel["timings"] and "fetch" not in rel["timings"]
        log = stack.release_log(APP, rel["version"])
        assert f"reusing image paas/{APP}:v{target}" in log and "release command not run" in log
    env = {v["key"]: v["value"] for v in stack.api("GET", f"/apps/{APP}/env").json()}
    assert env["GREETING"] == "g1"  # the app's env is v1's again

    lines = []
    for r in results:
        timings = r["release"]["timings"]
        health = timings.get("health", 0.0)
        lines.append(
            f"rollback to v{r['release']['rollback_of']} → served: {r['live_s']:.2f}s "
            f"(health {health:.2f}s, overhead {r['live_s'] - health:.2f}s); steps {timings}"
        )
    _report(
        lines + [f"{load.report.total} requests during two rollbacks, {len(load.report.failures)} failed"]
    )


def test_a_pinned_app_records_pushes_until_unpinned(stack: Stack, three: dict[str, Any]) -> None:
    before = latest(stack)["version"]
    payload = three["repo"].commit(files("c4"), "while pinned")
    r = stack.webhook(APP, three["secret"], payload)
    assert r.status_code == 200 and r.json()["pinned"] is True
    time.sleep(2)
    assert latest(stack)["version"] == before and served(stack) == "c1/g1"
    info = stack.api("GET", f"/apps/{APP}").json()
    assert info["pinned"] and info["pending_pushes"] == 1 and info["pending_commit"] == payload["after"]
    out = stack.paas("unpin", APP).stdout
    assert "1 push(es) were waiting" in out
    assert stack.api("GET", f"/apps/{APP}").json()["pinned"] is False


def test_cancel_stops_a_long_build_and_the_old_release_serves(stack: Stack, three: dict[str, Any]) -> None:
    before = served(stack)
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        payload = three["repo"].commit(files("slow", SLOW_DOCKERFILE), "a slow build")
        assert stack.webhook(APP, three["secret"], payload).status_code == 202
        deadline = time.monotonic() + 120
        version = None
        while time.monotonic() < deadline:
            rel = latest(stack)
            if rel["status"] == "running" and "building slowly" in stack.release_log(APP, rel["version"]):
                version = rel["version"]
                break
            time.sleep(0.2)
        assert version is not None, "the slow build never started"
        started = time.monotonic()
        out = stack.paas("cancel", APP).stdout
        assert "cancelling job" in out
        release = stack.wait_release(APP, version, timeout=60)
        took = time.monotonic() - started
        time.sleep(0.5)
    assert release["status"] == "cancelled" and release["step"] == "build", release
    assert took < 30, f"cancel took {took:.1f}s"
    assert load.report.failures == [] and served(stack) == before
    log = stack.release_log(APP, version)
    assert "cancelled" in log and "the previous release keeps serving" in log
    client = docker.from_env()
    instance = (stack.root / "data" / "instance-id").read_text().strip()
    leftovers = client.containers.list(
        ignore_removed=True, all=True, filters={"label": f"paas.version={version}"}
    )
    images = [
        i
        for i in client.images.list(filters={"label": f"paas.instance={instance}"})
        if f"paas/{APP}:v{version}" in i.tags
    ]
    assert leftovers == [] and images == []
    assert not [
        c
        for c in client.containers.list(ignore_removed=True)
        if "sleep 300" in " ".join(c.attrs["Config"].get("Cmd") or [])
    ]
    assert stack.api("GET", f"/jobs/{release['job_id']}").json()["state"] == "cancelled"
    _report([f"cancel during a build step that prints nothing → deployment cancelled: {took:.2f}s"])


def test_rollback_and_restart_after_the_agent_restarts(stack: Stack, three: dict[str, Any]) -> None:
    """Restarted with PAAS_KEEP_RELEASES=2: the clean-up at start keeps the images
    that v5 and v4 (the last two successful) name, v1's and v2's, and removes v3's."""
    stack.stop()
    stack.env["PAAS_KEEP_RELEASES"] = "2"
    stack.start()
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        result = rollback_timed(stack, "--to", "v4", expect="c2/g2")
        out = stack.paas("restart", APP).stdout
        assert "is live" in out
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    assert result["release"]["rollback_of"] == 4 and result["release"]["image"] == f"paas/{APP}:v2"
    restarted = latest(stack)
    assert restarted["trigger"] == "restart" and restarted["image"] == f"paas/{APP}:v2"
    assert served(stack) == "c2/g2"
    stack.wait_release(APP, restarted["version"])  # `paas restart` returns once live; retire runs after


def test_retention_keeps_what_kept_releases_name_and_says_when_an_image_is_gone(
    stack: Stack, three: dict[str, Any]
) -> None:
    """v1-v3 deployed, v4 = rollback to v2, v5 = rollback to v1, v6 cancelled, then with
    2 kept: v7 = rollback to v4 (v2's image), v8 = restart. v8 and v7 name v2's image
    only: v3's went in the clean-up at start, v1's when v8 retired v7."""
    rows = {r["version"]: r for r in stack.api("GET", f"/apps/{APP}/releases").json()}
    pruned = {v: rows[v]["image_pruned"] for v in (1, 2, 3, 4, 5, 7, 8)}
    assert pruned == {1: True, 2: False, 3: True, 4: False, 5: True, 7: False, 8: False}
    tags = {t for i in docker.from_env().images.list(name=f"paas/{APP}") for t in i.tags}
    assert tags == {f"paas/{APP}:v2"}
    assert "clean-up done" in stack.log_path.read_text()
    proc = stack.paas("rollback", APP, "--to", "v3", check=False)
    assert proc.returncode == 1 and "the image of v3 was removed by retention" in proc.stderr
    assert f"paas deploy {APP} --commit {rows[3]['commit'][:12]}" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    # v2 itself is no longer among the last two, but its image is named by them: it comes back
    out = stack.paas("rollback", APP, "--to", "v2").stdout
    assert "is live" in out and latest(stack)["rollback_of"] == 2 and served(stack) == "c2/g2"


def test_ps_logs_and_a_deploy_that_shows_its_progress(stack: Stack, three: dict[str, Any]) -> None:
    rows = json.loads(stack.paas("ps", APP, "--json").stdout)
    web = [r for r in rows if r["live"]]
    assert len(web) == 1 and web[0]["process"] == "web" and web[0]["state"] == "running"
    assert web[0]["restarts"] == 0 and web[0]["health"] == "serving" and web[0]["uptime_seconds"] >= 0
    assert "(live)" in stack.paas("ps", APP).stdout

    for _ in range(3):
        served(stack)
    assert "GET / HTTP/1.1" in stack.paas("logs", APP, "--tail", "20").stdout

    follower = stack.spawn("logs", APP, "-f", "--tail", "0")
    try:
        lines: list[str] = []
        stdout = follower.stdout
        assert stdout is not None

        def read() -> None:
            for line in iter(stdout.readline, ""):
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("GET /healthz" in line for line in lines):
            stack.get_app(APP, "/healthz")  # a request the follower has not seen yet
            time.sleep(0.3)
        assert any("GET /healthz" in line for line in lines), lines[-5:]
    finally:
        follower.kill()
        follower.wait()

    assert "==> build" in stack.paas("logs", APP, "--build", "v1").stdout
    # a deploy by hand (it also unpins) streams its steps and build output while it runs
    three["repo"].commit(files("c9"), "fast again")
    proc = stack.paas("deploy", APP, "--wait")
    assert "==> fetch" in proc.stderr and "==> build" in proc.stderr
    assert "load build definition" in proc.stderr  # BuildKit's own lines, streamed as it prints them
    assert "is live" in proc.stdout and served(stack) == "c9/g2"


def test_rollback_after_the_docker_engine_restarts(stack: Stack, three: dict[str, Any]) -> None:
    """dockerd stopped and started again under a running agent: the live release
    comes back by its restart policy and a rollback works as before."""
    assert served(stack) == "c9/g2"
    live_version = latest(stack)["version"]  # the deploy of c9; the one before is a rollback to v2
    away = restart_docker_engine()
    deadline = time.monotonic() + 60
    back = None
    while back is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            if served(stack) == "c9/g2":
                back = time.monotonic()
        time.sleep(0.2)
    assert back is not None, "the live release did not come back after dockerd restarted"
    rows = json.loads(stack.paas("ps", APP, "--json").stdout)
    assert [r["state"] for r in rows if r["live"]] == ["running"], rows
    with LoadClient(stack.nginx.port, f"{APP}.{stack.domain}") as load:
        result = rollback_timed(stack, expect="c2/g2")
        time.sleep(0.5)
    assert load.report.failures == [], load.report.failures[:5]
    rel = result["release"]
    assert (
        rel["rollback_of"] == live_version - 1
        and rel["image"] == f"paas/{APP}:v2"
        and rel["status"] == "succeeded"
    )
    _report(
        [
            f"dockerd restart: engine answered again after {away:.1f}s; rollback after it → served "
            f"{result['live_s']:.2f}s, {load.report.total} requests, 0 failed"
        ]
    )


def _report(lines: list[str]) -> None:
    path = Path("test-reports") / "rollback.txt"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
