"""deploy/install.sh, run for real (as root, no systemd here): it installs
paas into a virtual environment, brings it up behind nginx, prints a token
once, and a second run changes nothing.

Paths are redirected into a scratch directory and nginx is the tests' own on
a loopback port; the system user `paas` is created on this machine."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import LOOPBACK, Nginx, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch() -> Iterator[Path]:
    # world-traversable, so the unprivileged web user can reach its data dir
    root = Path(tempfile.mkdtemp(prefix="paas-install-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    pidfile = root / "run" / "paas-up.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            pass
    shutil.rmtree(root, ignore_errors=True)


def _install(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "install.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    log = Path(env["PAAS_LOG_FILE"])
    if result.returncode != 0 and log.exists():
        result.stderr += "\n--- paas.log ---\n" + log.read_text(errors="replace")[-5000:]
    return result


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid for {pid}")


def test_install_brings_paas_up_and_a_second_run_changes_nothing(scratch: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("install.sh needs root; scripts/test.sh runs as root")
    nginx = Nginx(scratch / "nginx")
    nginx.start()
    try:
        web_port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(scratch),
            "PAAS_PREFIX": str(scratch / "opt"),
            "PAAS_ETC_DIR": str(scratch / "etc"),
            "PAAS_RUN_DIR": str(scratch / "run"),
            "PAAS_LOG_FILE": str(scratch / "paas.log"),
            "PAAS_DATA_DIR": str(scratch / "data"),
            "PAAS_ACME_WEBROOT_DIR": str(scratch / "acme"),
            "PAAS_DOMAIN": "apps.test",
            "PAAS_WEB_PORT": str(web_port),
            "PAAS_HTTP_PORT": str(nginx.port),
            "PAAS_LISTEN_ADDRESS": LOOPBACK,
            "PAAS_NGINX_CONF_DIR": str(nginx.conf_dir),
            "PAAS_NGINX_MAIN_CONF": str(nginx.main_conf),
            "PAAS_PUBLIC_URL": f"http://paas.apps.test:{nginx.port}",
        }
        first = _install(env)
        assert first.returncode == 0, first.stdout + first.stderr
        tokens = [line for line in first.stdout.splitlines() if line.startswith("paas_")]
        assert len(tokens) == 1, first.stdout
        token = tokens[0]
        assert f"Control plane: http://paas.apps.test:{nginx.port}" in first.stdout
        lines = first.stdout.splitlines()
        assert "paas-install: web UI: sign in at" in first.stdout and "as admin" in first.stdout
        password = lines[lines.index("paas-install: web UI password (shown once; keep it safe):") + 1]
        assert len(password) >= 20

        # the first user signs in to the web UI through nginx with the printed password
        with httpx.Client(
            base_url=f"http://{LOOPBACK}:{nginx.port}", headers={"Host": "paas.apps.test"}
        ) as browser:
            form = browser.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf is not None, form
            signed = browser.post(
                "/login", data={"username": "admin", "password": password, "csrf": csrf.group(1), "next": "/"}
            )
            assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text
            assert "Create app" in browser.get("/").text

        # the control plane answers through nginx, with the printed token
        r = httpx.get(
            f"http://{LOOPBACK}:{nginx.port}/api/v1/apps",
            headers={"Host": "paas.apps.test", "Authorization": f"Bearer {token}"},
        )
        assert (r.status_code, r.json()) == (200, [])

        env_file = scratch / "etc" / "paas.env"
        assert env_file.stat().st_mode & 0o777 == 0o640
        settings_text = env_file.read_text()
        assert "PAAS_SECRET_KEY=" in settings_text and "PAAS_DOMAIN=apps.test" in settings_text
        assert token not in settings_text and password not in settings_text

        # the keys: the web user reads the Fernet and public keys, never the private one
        keys = scratch / "etc" / "keys"
        assert f"PAAS_KEYS_DIR={keys}" in settings_text
        paas_uid = pwd.getpwnam("paas").pw_uid
        owners = {p.name: (p.stat().st_uid, p.stat().st_mode & 0o777) for p in keys.iterdir()}
        assert owners == {
            "env.fernet": (paas_uid, 0o600),
            "secrets.pub": (paas_uid, 0o600),
            "secrets.key": (0, 0o600),
        }
        as_web = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "paas", "--", "cat"]
        assert subprocess.run([*as_web, str(keys / "env.fernet")], capture_output=True).returncode == 0
        denied = subprocess.run([*as_web, str(keys / "secrets.key")], capture_output=True, text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        r = httpx.post(
            f"http://{LOOPBACK}:{nginx.port}/api/v1/apps",
            json={"name": "keyed", "repo_url": "https://github.com/o/keyed.git"},
            headers={"Host": "paas.apps.test", "Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        r = httpx.patch(
            f"http://{LOOPBACK}:{nginx.port}/api/v1/apps/keyed/env",
            json={"set": [{"key": "TOKEN", "value": "sealed-by-web", "secret": True}]},
            headers={"Host": "paas.apps.test", "Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.json()["env"][0]["value"] is None, r.text

        # web runs as the unprivileged user, the agent as root
        pid = int((scratch / "run" / "paas-up.pid").read_text())
        workers = [
            c for c in _children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]  # not the resource tracker
        uids = sorted(_uid(child) for child in workers)
        assert uids == [0, paas_uid], uids

        before = {
            p: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (
                env_file,
                scratch / "opt" / "installed-from",
                scratch / "run" / "paas-up.pid",
                *sorted(keys.iterdir()),
            )
        }
        second = _install(env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert not any(line.startswith("paas_") for line in second.stdout.splitlines())
        assert "web UI password" not in second.stdout and password not in second.stdout
        assert "already running" in second.stdout
        assert "installing paas" not in second.stdout
        after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before}
        assert after == before
        with sqlite3.connect(scratch / "data" / "paas.db") as db:
            assert db.execute("select count(*) from apitoken").fetchone() == (1,)
            assert db.execute("select username from user").fetchall() == [("admin",)]
    finally:
        nginx.stop()
