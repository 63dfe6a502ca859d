"""Upgrading in place: the previous release of paas, installed with its own
install.sh and serving an app under load, is upgraded by running this
checkout's install.sh. The app never fails a request (its containers and
nginx are left alone), the control plane is away for a few seconds (printed),
new web and agent processes run the new code against a migrated database,
and the next push deploys.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time

import httpx
import pytest

from paas import __version__ as paas_version
from paas.db import head_revision
from testkit.harness import (
    LOOPBACK,
    GitRemote,
    LoadClient,
    Nginx,
    deliver_webhook,
    remove_installation,
    traversable_dir,
)
from tests.integration.installs import (
    PREVIOUS_RELEASE,
    UPGRADED,
    checkout,
    demo_app,
    install_env,
    printed_token,
    run_install,
    started_at,
    stop_paas_up,
    uptime,
    workers,
)

pytestmark = pytest.mark.integration


def test_the_previous_release_upgrades_in_place_while_its_app_serves() -> None:
    if os.geteuid() != 0:
        pytest.fail("install.sh needs root; scripts/test.sh runs as root")
    root = traversable_dir("paas-upgrade-")
    nginx = Nginx(root / "nginx")
    nginx.start()
    env = install_env(root, nginx)
    pidfile = root / "run" / "paas-up.pid"
    try:
        old_source = checkout(PREVIOUS_RELEASE, root / "previous")
        first = run_install(env, source=old_source)
        assert first.returncode == 0, first.stdout + first.stderr
        token = printed_token(first.stdout)
        old_paas = root / "opt" / "venv" / "bin" / "paas"

        # a user's app, deployed by the previous release
        client_env = {"PATH": os.environ["PATH"], "HOME": str(root / "home")}

        def paas(*args: str) -> str:
            done = subprocess.run(
                [str(old_paas), *args], env=client_env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"paas {' '.join(args)}:\n{done.stdout}{done.stderr}"
            return done.stdout

        paas("login", f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}", "--token", token)
        (root / "git").mkdir()
        remote = GitRemote(root / "git")
        remote.commit(demo_app("1"), "the app")
        created = json.loads(
            paas("apps", "create", "demo", "--repo", str(remote.bare), "--health-path", "/healthz", "--json")
        )
        assert "demo v1 is live" in paas("deploy", "demo", "--wait")
        old_workers = workers(int(pidfile.read_text()))
        assert set(old_workers) == {"paas-web", "paas-agent"}, old_workers

        # the upgrade, with the app under load
        before = uptime()
        with LoadClient(nginx.port, "demo.apps.test", max_seconds=900) as load:
            upgraded = run_install(env)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        said = UPGRADED.search(upgraded.stdout)
        assert said is not None, upgraded.stdout
        print(
            f"\nupgrade {said['old']} -> {said['new']}: control plane unavailable {said['down']} s; "
            f"app: {load.report.total} requests, {len(load.report.failures)} failed"
        )
        assert said["old"] == "0.1.0" and said["new"].startswith(f"{paas_version}+"), said[0]
        assert float(said["down"]) < 30, said["down"]
        assert load.report.failures == [], load.report.failures[:5]
        assert load.report.total > 20 and set(load.report.versions) == {"1"}, load.report

        # new processes, running the new code, on a database at head
        new_workers = workers(int(pidfile.read_text()))
        assert set(new_workers) == {"paas-web", "paas-agent"}, new_workers
        assert not set(new_workers.values()) & set(old_workers.values())
        assert all(started_at(pid) >= before for pid in new_workers.values())
        ready = httpx.get(f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}/readyz").json()
        assert ready == {"status": "ok", "version": said["new"]}
        with sqlite3.connect(root / "data" / "db" / "paas.db") as db:
            assert db.execute("select version_num from alembic_version").fetchall() == [(head_revision(),)]
        venv = root / "opt" / "venv"
        assert venv.is_symlink() and (venv / "paas-source").exists()

        # the next push deploys, through the new code
        push = remote.commit(demo_app("2"), "after the upgrade")
        hook = deliver_webhook(
            f"http://{LOOPBACK}:{nginx.port}", "paas.apps.test", "demo", created["webhook_secret"], push
        )
        assert hook.status_code == 202, hook.text
        api = httpx.Client(
            base_url=f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            releases = {r["version"]: r["status"] for r in api.get("/apps/demo/releases").json()}
            if releases.get(2) not in (None, "running"):
                break
            time.sleep(0.5)
        assert releases.get(2) == "succeeded", api.get("/apps/demo/releases/2/log").text
        served = httpx.get(f"http://{LOOPBACK}:{nginx.port}/", headers={"Host": "demo.apps.test"})
        assert served.json()["version"] == "2", served.text
    finally:
        stop_paas_up(pidfile)
        remove_installation(root / "data")
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)
