"""install.sh under systemd, for real: a Debian 12 container that boots
systemd as PID 1 (scripts/systemd-image.sh builds it as base-image.sh builds
the base image), sharing this machine's network and Docker engine. install.sh
runs inside, with ports of the test's own so that nothing collides with this
machine's nginx. Then: both units active, web running as the `paas` user, a
push deploys, `systemctl restart paas-agent` during a deploy, `systemctl
restart paas-web paas-agent` under load, and a reboot of the container with
the apps' containers down: everything comes back by itself. And an upgrade
in place under systemd, from the previous release installed by its own
install.sh (test_upgrade.py does it without systemd).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from paas import __version__ as paas_version
from testkit.harness import LOOPBACK, GitRemote, LoadClient, free_port, traversable_dir
from tests.integration.installs import PREVIOUS_RELEASE, REPO, UPGRADED, checkout, demo_app, printed_token

pytestmark = pytest.mark.integration

IMAGE = "paas-test/debian-systemd:12"


@dataclass
class Machine:
    name: str
    shared: Path  # the same path inside and out: the app's repository lives here
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", "exec", self.name, *args], capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def install(self, source: Path | None = None) -> subprocess.CompletedProcess[str]:
        """install.sh of this checkout (mounted at /src), or of ``source`` (under ``shared``)."""
        script = f"{source}/deploy/install.sh" if source else "/src/deploy/install.sh"
        flags = [x for k, v in self.env.items() for x in ("-e", f"{k}={v}")]
        return subprocess.run(
            ["docker", "exec", *flags, self.name, "bash", script],
            capture_output=True,
            text=True,
            timeout=900,
        )

    @property
    def web(self) -> str:
        return f"http://{LOOPBACK}:{self.env['PAAS_WEB_PORT']}"

    @property
    def http_port(self) -> int:
        return int(self.env["PAAS_HTTP_PORT"])


def _booted(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
        )
        state = done.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise AssertionError(f"systemd in {name} did not finish booting: {state!r}")


@contextlib.contextmanager
def booted_machine() -> Iterator[Machine]:
    """A new container, systemd booted in it; removed with what its paas made."""
    if os.geteuid() != 0:
        pytest.fail("this test runs containers privileged; scripts/test.sh runs as root")
    built = subprocess.run(
        [str(REPO / "scripts" / "systemd-image.sh"), IMAGE], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    name = f"paas-systemd-{os.getpid()}"
    shared = traversable_dir("paas-systemd-")
    env = {
        "PAAS_DOMAIN": "apps.test",
        "PAAS_WEB_PORT": str(free_port()),
        "PAAS_HTTP_PORT": str(free_port()),
        "PAAS_HTTPS_PORT": str(free_port()),
        "PAAS_LISTEN_ADDRESS": LOOPBACK,
        "PAAS_ACME": "off",  # apps.test has no DNS
        "PAAS_ALLOW_LOCAL_REPOS": "true",
        "PAAS_ADMIN_PASSWORD": "not-a-real-password-1",
    }
    env["PAAS_PUBLIC_URL"] = f"http://paas.apps.test:{env['PAAS_HTTP_PORT']}"
    subprocess.run(
        [
            # not --privileged, which these machines refuse: what systemd needs (mounts, its
            # sandboxing of the units), the host's cgroups, and its shutdown signal
            "docker", "run", "-d", "--name", name, "--cap-add", "SYS_ADMIN",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--stop-signal", "SIGRTMIN+3",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--network", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", f"{REPO}:/src:ro", "-v", f"{shared}:{shared}", IMAGE,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    box = Machine(name, shared, env)
    try:
        _booted(name)
        yield box
    finally:
        instance = box.run("cat", "/var/lib/paas/instance-id", check=False).stdout.strip()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if instance:
            client = docker.from_env()
            for c in client.containers.list(
                ignore_removed=True, all=True, filters={"label": f"paas.instance={instance}"}
            ):
                c.remove(force=True)
            for image in client.images.list(filters={"label": f"paas.instance={instance}"}):
                for tag in image.tags or [image.id]:
                    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)


def _served(box: Machine, app: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            got = httpx.get(
                f"http://{LOOPBACK}:{box.http_port}/", headers={"Host": f"{app}.apps.test"}, timeout=5
            )
            if got.status_code == 200:
                return str(got.json()["version"])
            last = f"{got.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(f"{app} was not served within {timeout} s: {last}")


def _ready(box: Machine, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{box.web}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the control plane at {box.web} was not ready within {timeout} s")


@pytest.fixture
def machine() -> Iterator[Machine]:
    with booted_machine() as box:
        yield box


def _paas(box: Machine) -> Callable[..., str]:
    """This checkout's CLI, logged in to the box's control plane by the caller."""
    client_env = {"PATH": os.environ["PATH"], "HOME": str(box.shared / "home")}

    def paas(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "paas", *args], env=client_env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"paas {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    return paas


def _demo_live(box: Machine, token: str) -> tuple[Callable[..., str], GitRemote]:
    """What a new user does first, through the box's control plane: log in,
    create an app from a repository, deploy v1. The CLI and the repository."""
    paas = _paas(box)
    paas("login", box.web, "--token", token)
    (box.shared / "git").mkdir()
    repo = GitRemote(box.shared / "git")
    repo.commit(demo_app("1"), "v1")
    paas("apps", "create", "demo", "--repo", str(repo.bare), "--health-path", "/healthz")
    assert "demo v1 is live" in paas("deploy", "demo", "--wait")
    return paas, repo


def _main_pids(box: Machine) -> dict[str, str]:
    return {u: box.run("systemctl", "show", "-p", "MainPID", "--value", u).stdout.strip() for u in UNITS}


UNITS = ("paas-web", "paas-agent")


def test_install_sh_under_systemd_survives_restarts_and_a_reboot(machine: Machine) -> None:
    box = machine
    installed = box.install()
    assert installed.returncode == 0, installed.stdout + installed.stderr
    token = printed_token(installed.stdout)
    assert box.run("systemctl", "is-active", "paas-web", "paas-agent").stdout.split() == ["active", "active"]
    web_pid = _main_pids(box)["paas-web"]
    assert box.run("stat", "-c", "%U", f"/proc/{web_pid}").stdout.strip() == "paas"

    # a push deploys (the CLI here, the control plane in the box)
    paas, repo = _demo_live(box, token)
    assert _served(box, "demo") == "1"

    # systemctl restart paas-agent while a deploy builds: the deploy finishes first, then the
    # new agent takes over
    repo.commit(demo_app("2"), "v2")
    paas("deploy", "demo")
    api = httpx.Client(base_url=f"{box.web}/api/v1", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 120
    while not any(
        r["version"] == 2 and r["step"] in ("build", "release", "start")
        for r in api.get("/apps/demo/releases").json()
    ):
        assert time.monotonic() < deadline, api.get("/apps/demo/releases").json()
        time.sleep(0.05)
    with LoadClient(box.http_port, "demo.apps.test", max_seconds=300) as load:
        box.run("systemctl", "restart", "paas-agent", timeout=900)
        v2 = next(r for r in api.get("/apps/demo/releases").json() if r["version"] == 2)
        assert v2["status"] == "succeeded", v2
        assert _served(box, "demo") == "2"

        # both services restarted: apps do not notice
        box.run("systemctl", "restart", "paas-web", "paas-agent")
        assert box.run("systemctl", "is-active", "paas-web", "paas-agent").stdout.split() == [
            "active",
            "active",
        ]
        time.sleep(1)
    assert load.report.failures == [], load.report.failures[:5]

    # a reboot, the apps' containers down as after a power cut
    instance = box.run("cat", "/var/lib/paas/instance-id").stdout.strip()
    engine = docker.from_env()
    for c in engine.containers.list(ignore_removed=True, filters={"label": f"paas.instance={instance}"}):
        c.kill()
    rebooted = time.monotonic()
    subprocess.run(["docker", "restart", box.name], check=True, capture_output=True, timeout=120)
    _booted(box.name)
    assert (
        box.run("systemctl", "is-active", "paas-web", "paas-agent", "nginx").stdout.split() == ["active"] * 3
    )
    assert _served(box, "demo") == "2"
    print(f"\nsystemd: after the reboot the app served again in {time.monotonic() - rebooted:.1f} s")
    _ready(box)  # web starts beside the apps, a moment after them
    assert [r["version"] for r in api.get("/apps/demo/releases").json()] == [2, 1]  # no deploy needed


def test_an_upgrade_under_systemd_stops_migrates_and_starts_the_new_code(machine: Machine) -> None:
    """The previous release installed by its own install.sh under systemd,
    an app live; this checkout's install.sh upgrades it in place: new
    processes of both units run the new version, the app never fails a
    request, and the next deploy works."""
    box = machine
    old = checkout(PREVIOUS_RELEASE, box.shared / "previous")
    first = box.install(source=old)
    assert first.returncode == 0, first.stdout + first.stderr
    paas, repo = _demo_live(box, printed_token(first.stdout))
    before = _main_pids(box)

    with LoadClient(box.http_port, "demo.apps.test", max_seconds=900) as load:
        upgraded = box.install()
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    said = UPGRADED.search(upgraded.stdout)
    assert said is not None, upgraded.stdout
    print(f"\nsystemd upgrade {said['old']} -> {said['new']}: control plane away {said['down']} s")
    assert said["old"] == "0.1.0" and said["new"].startswith(f"{paas_version}+"), said[0]
    after = _main_pids(box)
    assert box.run("systemctl", "is-active", *UNITS).stdout.split() == ["active", "active"]
    assert all(after[u] not in ("0", before[u]) for u in UNITS), (before, after)
    assert box.run("stat", "-c", "%U", f"/proc/{after['paas-web']}").stdout.strip() == "paas"
    assert httpx.get(f"{box.web}/readyz").json()["version"] == said["new"]
    assert load.report.failures == [] and load.report.total > 20, load.report

    repo.commit(demo_app("2"), "after the upgrade")
    assert "demo v2 is live" in paas("deploy", "demo", "--wait")
    assert _served(box, "demo") == "2"
