"""A server with databases lost and brought back: `paas backup` while the
apps write, everything wiped (containers, volumes, networks, files), a fresh
installation, `paas restore`: every database comes back with its data
before the apps start, and the apps serve the same rows and count.
"""

from __future__ import annotations

import json
import os
from typing import Any

import docker
import httpx
import pytest

from testkit import db_app
from testkit.harness import GitRemote, Nginx, Stack, wait_until

pytestmark = pytest.mark.integration

TAG = os.getpid() % 100000
APP, COUNTER = f"rshop{TAG}", f"rcount{TAG}"
DB, CACHE = f"rdb{TAG}", f"rcache{TAG}"


def _post(stack: Stack, app: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        f"http://{stack.address}:{stack.nginx.port}{path}",
        headers={"Host": f"{app}.{stack.domain}"},
        json=body or {},
        timeout=10,
    )


def _create(stack: Stack, app: str, repo: GitRemote, *extra: str) -> str:
    """The app, made; its webhook secret."""
    made = json.loads(stack.paas("apps", "create", app, "--repo", str(repo.bare), *extra, "--json").stdout)
    return str(made["webhook_secret"])


def _push(stack: Stack, app: str, secret: str, repo: GitRemote, files: dict[str, str]) -> None:
    assert stack.webhook(app, secret, repo.commit(files, f"{app} v1")).status_code == 202
    assert stack.wait_release(app, 1)["status"] == "succeeded", stack.release_log(app, 1)


def test_backup_wipe_fresh_install_restore_brings_every_row_back(
    nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> None:
    old = Stack(tmp_path_factory.mktemp("paas-old"), nginx)
    new = Stack(tmp_path_factory.mktemp("paas-new"), nginx)
    try:
        old.start()
        old.paas("databases", "create", DB, "--engine", "postgres", "--version", "15")
        old.paas("databases", "create", CACHE, "--engine", "redis", "--version", "7.0")
        general, secret = db_app.postgres_bindings(DB)
        shop_repo = GitRemote(tmp_path_factory.mktemp("git-rshop"))
        hook = _create(
            old, APP, shop_repo, "--health-path", "/healthz", "--release-command", db_app.RELEASE_COMMAND
        )
        old.paas("env", "set", APP, *[f"{k}={v}" for k, v in general.items()])
        old.paas("env", "set", APP, "--secret", *[f"{k}={v}" for k, v in secret.items()])
        _push(old, APP, hook, shop_repo, db_app.files("v1"))
        counter_repo = GitRemote(tmp_path_factory.mktemp("git-rcount"))
        hook = _create(old, COUNTER, counter_repo)
        old.paas("databases", "attach", CACHE, COUNTER, "--no-restart")
        _push(old, COUNTER, hook, counter_repo, db_app.counter_files())

        ids = {_post(old, APP, "/items", {"text": f"kept {i}"}).json()["id"] for i in range(25)}
        for _ in range(7):
            assert _post(old, COUNTER, "/count").status_code == 200
        archive = tmp_path_factory.mktemp("saved") / "paas.tar.gz"
        made = old.paas("backup", "--output", str(archive), token=False)
        assert "2 database(s) dumped and checked" in made.stdout

        # the server is lost: every container, volume and network it made, and its files
        token = old.token
        old.stop()
        old.remove_everything()
        client = docker.from_env()
        assert not [
            v for v in client.volumes.list() if v.name.startswith((f"paasdb-{DB}", f"paasdb-{CACHE}"))
        ]

        # a fresh installation, restored before it starts
        restored = new.paas("restore", str(archive), token=False)
        assert f"databases, with their data: {CACHE}, {DB}" in restored.stdout, restored.stdout
        new.token = token  # the backup's tokens came back
        new.start()
        for app in (APP, COUNTER):
            wait_until(lambda app=app: _released(new, app), f"{app} live again", 600)
        served = new.get_app(APP, "/items").json()
        assert set(served["ids"]) == ids
        assert new.get_app(COUNTER, "/count").json() == {"count": 7}
    finally:
        old.stop()
        new.stop()
        old.remove_everything()
        new.remove_everything()


def _released(stack: Stack, app: str) -> bool:
    rows = stack.api("GET", f"/apps/{app}/releases").json()
    return any(r["status"] == "succeeded" and r["trigger"] == "restore" for r in rows if isinstance(r, dict))
