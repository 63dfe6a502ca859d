"""Faults survived, with a load client on the live app counting failures:
the agent killed at each step of a deploy, nginx killed, dockerd restarted,
the data directory's disk full (a reboot is in test_install.py, through
install.sh's boot path).

The agent is SIGKILLed as each step of a deploy begins (caught as in
test_env_race.py: frozen outside a write, at that step, then killed).
`paas up`'s supervisor then stops web and exits, as it does when a child
dies, and is started again, as systemd or install.sh would. Within 60 s:
one live release, nginx routing to it, nothing of the dead attempt left
running, no job left running; the next push deploys. The app never fails a
request throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from testkit.harness import (
    LOOPBACK,
    GitRemote,
    JsonReceiver,
    LoadClient,
    Nginx,
    Stack,
    remove_installation,
    restart_docker_engine,
    wait_until,
)
from tests.integration.agent_steps import (
    STEP_DOCKERFILE,
    STEP_PROCFILE,
    STEPS,
    agent_frozen_at,
    slow_fetch_files,
)
from tests.integration.installs import children

pytestmark = pytest.mark.integration

RECOVERY_BOUND = 60  # seconds from the restart to a settled app

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
    files = {
        "Dockerfile": STEP_DOCKERFILE,
        "Procfile": STEP_PROCFILE,
        "main.py": MAIN.format(version=f"k{version}"),
    }
    if slow_fetch:
        files.update(slow_fetch_files())
    return files


def _live_app(stack: Stack, app: str, tmp_path: Path) -> GitRemote:
    """The app created and v1 (k1) deployed; its repository."""
    (tmp_path / "git").mkdir()
    repo = GitRemote(tmp_path / "git")
    repo.commit(_files(1), "v1")
    stack.paas("apps", "create", app, "--repo", str(repo.bare), "--health-path", "/")
    assert "is live" in stack.paas("deploy", app, "--wait").stdout
    return repo


def _running_jobs(stack: Stack) -> int:
    with sqlite3.connect(stack.root / "data" / "db" / "paas.db", timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM job WHERE state = 'running'").fetchone()[0])


def _settled(stack: Stack, app: str, since: float) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Wait (at most RECOVERY_BOUND from ``since``) until no job runs, no
    release is running, every container of the app is the live release's
    (nothing of a dead attempt) and nginx serves the live release."""
    engine = docker.from_env()
    last: object = None
    while time.monotonic() - since < RECOVERY_BOUND:
        info = stack.api("GET", f"/apps/{app}").json()
        releases = stack.api("GET", f"/apps/{app}/releases").json()
        live = info["current_version"]
        found = engine.containers.list(ignore_removed=True, all=True, filters={"label": f"paas.app={app}"})
        versions = {c.labels["paas.version"] for c in found}
        if _running_jobs(stack) or any(r["status"] == "running" for r in releases):
            last = [(r["version"], r["status"], r["step"]) for r in releases[:3]]
        elif versions != {str(live)}:
            last = f"containers of {sorted(versions)}, live v{live}"
        else:
            served = {stack.get_app(app).json().get("version") for _ in range(6)}
            if served == {f"k{live}"}:
                return info, releases, time.monotonic() - since
            last = f"served {served}, live v{live}"
        time.sleep(0.2)
    raise AssertionError(f"{app} did not settle within {RECOVERY_BOUND} s of the restart: {last}")


def test_the_agent_killed_at_each_step_recovers_and_the_app_never_fails(
    fault_stack: Stack, tmp_path: Path
) -> None:
    stack, app = fault_stack, "killed"
    repo = _live_app(stack, app, tmp_path)
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
            info, releases, took[step] = _settled(stack, app, restarted)
            live = info["current_version"]
            killed = next(r for r in releases if r["version"] == version)
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


def test_nginx_killed_is_started_again_by_the_agent_with_every_site(
    fault_stack: Stack, tmp_path: Path
) -> None:
    stack, app = fault_stack, "nginxdies"
    _live_app(stack, app, tmp_path)
    master = int((stack.nginx.root / "nginx.pid").read_text())
    with LoadClient(stack.nginx.port, f"{app}.{stack.domain}", max_seconds=120) as load:
        time.sleep(0.5)
        doomed = [master, *children(master)]
        for pid in doomed:  # master and workers at once, as the OOM killer or a crash would
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while _version(stack, app) != "k1":
            assert time.monotonic() - killed < 30, "the agent did not start nginx within 30 s"
            time.sleep(0.05)
        back = time.monotonic() - killed
        served_before = load.report.versions.get("k1", 0)
        time.sleep(1)
    assert load.report.versions.get("k1", 0) > served_before  # the load client is served again too
    assert _nginx_pid(stack) not in (None, master)
    failed = len(load.report.failures)
    print(
        f"\nnginx killed: served again after {back:.1f} s; "
        f"{failed} of {load.report.total} requests failed meanwhile"
    )
    assert back < 2 + 10  # PAAS_NGINX_CHECK_SECONDS (2) and the start
    assert "nginx started again" in stack.log_path.read_text()


def _finished_release(stack: Stack, app: str, version: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [r for r in stack.api("GET", f"/apps/{app}/releases").json() if r["version"] == version]
        if found and found[0]["finished_at"] is not None:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"v{version} of {app} did not finish within {timeout} s: {found}")


def _version(stack: Stack, app: str) -> str | None:
    try:
        answer = stack.get_app(app)
    except httpx.HTTPError:
        return None
    return str(answer.json().get("version")) if answer.status_code == 200 else None


def _nginx_pid(stack: Stack) -> int | None:
    try:
        pid = int((stack.nginx.root / "nginx.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def test_dockerd_restarted_the_apps_come_back_by_themselves(fault_stack: Stack, tmp_path: Path) -> None:
    """dockerd stopped and started again (an upgrade of docker.io, say):
    the live containers come back by their restart policy on the ports
    nginx routes to, and the agent deploys as before."""
    stack, app = fault_stack, "enginegone"
    repo = _live_app(stack, app, tmp_path)
    with LoadClient(stack.nginx.port, f"{app}.{stack.domain}", max_seconds=300) as load:
        stopped = time.monotonic()
        away = restart_docker_engine()
        while _version(stack, app) != "k1":
            assert time.monotonic() - stopped < 90, "the app did not come back within 90 s"
            time.sleep(0.1)
        back = time.monotonic() - stopped
        time.sleep(0.5)
    print(
        f"\ndockerd restarted: the engine was away {away:.1f} s, the app served again after {back:.1f} s; "
        f"{len(load.report.failures)} of {load.report.total} requests failed meanwhile"
    )
    # nginx routes to where the containers are published, as before
    site = (stack.nginx.conf_dir / f"paas-app-{app}.conf").read_text()
    engine = docker.from_env()
    for container in engine.containers.list(ignore_removed=True, filters={"label": f"paas.app={app}"}):
        for binding in (container.ports or {}).values():
            assert f"{binding[0]['HostIp']}:{binding[0]['HostPort']}" in site, (binding, site)
    repo.commit(_files(2), "v2, after the engine came back")
    assert "v2 is live" in stack.paas("deploy", app, "--wait").stdout
    assert _version(stack, app) == "k2"


def test_a_full_disk_fails_the_deploy_and_the_live_release_serves_on(tmp_path: Path) -> None:
    """The data directory on a 64 MB filesystem of its own (loop-mounted
    ext4), filled but for 4 MB; a push whose repository needs more. The
    deploy fails naming the full disk, the live release serves every
    request, the database stays whole, and once space is freed the next
    deploy goes live."""
    (tmp_path / "stack").mkdir()
    nginx = Nginx(tmp_path / "nginx")  # its own: two installations must not share one's sites
    nginx.start()
    stack = Stack(tmp_path / "stack", nginx, PAAS_JOB_LEASE_SECONDS="5", PAAS_DISK_CHECK_SECONDS="1")
    data = Path(stack.env["PAAS_DATA_DIR"])
    receiver = JsonReceiver()  # the operator's notifications
    image = tmp_path / "data.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    data.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(data)], check=True)
    try:
        stack.start()
        stack.paas(
            "notify", "add", f"json://{LOOPBACK}:{receiver.port}/ops", "--events", "disk.low,deploy.failed"
        )
        app = "full"
        repo = _live_app(stack, app, tmp_path)

        filler = data / "filler"
        with filler.open("wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 2**20)
                fh.flush()
        os.truncate(filler, filler.stat().st_size - 4 * 2**20)  # 4 MB left: paas writes, a 12 MB fetch cannot
        with LoadClient(stack.nginx.port, f"{app}.{stack.domain}", max_seconds=300) as load:
            repo.commit(_files(2, slow_fetch=True), "v2, more than the disk holds")
            stack.paas("deploy", app)
            v2 = _finished_release(stack, app, 2)
            time.sleep(0.5)
        assert v2["status"] == "failed" and v2["error"].startswith("fetch: disk full"), v2
        assert "disk full" in stack.api("GET", f"/apps/{app}/releases/2/log").text
        # the operator heard of the failure, and once that the disk is low (64 MB: under 3 GiB from the start)
        wait_until(lambda: f"{app}: v2 failed at fetch" in receiver.titles(), "the failure notification")
        low = [p for p in receiver.posts if p["title"].endswith("disk space is low")]
        assert len(low) == 1 and f"{data}: " in low[0]["message"] and "GiB free" in low[0]["message"], low
        assert load.report.failures == [] and set(load.report.versions) == {"k1"}, load.report
        with sqlite3.connect(data / "db" / "paas.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        filler.unlink()
        assert "v3 is live" in stack.paas("deploy", app, "--wait").stdout
        assert _version(stack, app) == "k2"  # v3 deploys the same commit, now that it fits
        print(f"\ndisk full: v2 failed with {v2['error'][:120]!r}; {load.report.total} requests, 0 failed")
    finally:
        stack.stop()
        receiver.stop()
        remove_installation(data)
        subprocess.run(["umount", "--lazy", str(data)], check=False)
        stack.remove_everything()
        nginx.stop()
