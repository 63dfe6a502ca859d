"""Backup and restore, as an operator moving to a new server does it.

An installation made by deploy/install.sh serves two apps: one with a secret
env var and a data volume holding a file the app wrote, one without. `paas
backup` writes the archive; then the installation is destroyed (its data
directory, settings, keys, containers, images and volumes), installed fresh,
stopped, `paas restore` run, and started again by install.sh. Both apps
serve their commits again, with the secret and the file, and the old API
token and webhook secret still work.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from testkit.harness import (
    LOOPBACK,
    GitRemote,
    Nginx,
    Stack,
    deliver_webhook,
    remove_installation,
    traversable_dir,
)
from tests.integration.installs import demo_app, install_env, printed_token, run_install, stop_paas_up

pytestmark = pytest.mark.integration

NOTES_MAIN = """\
import os
from pathlib import Path

from fastapi import FastAPI, Request

app = FastAPI()
NOTE = Path("/data/note.txt")


@app.get("/")
def root():
    return {{"version": "{version}", "word": os.environ.get("SECRET_WORD", "")}}


@app.get("/healthz")
def healthz():
    return {{"ok": True}}


@app.get("/note")
def read_note():
    return {{"note": NOTE.read_text() if NOTE.exists() else None}}


@app.post("/note")
async def write_note(request: Request):
    NOTE.write_text((await request.body()).decode())
    return {{"ok": True}}
"""

SECRET_WORD = "canary-" + os.urandom(6).hex()


def _serves(port: int, host: str, path: str = "/", deadline: float = 300) -> dict[str, object]:
    """The app's JSON answer through nginx, once it answers 200."""
    until = time.monotonic() + deadline
    last = ""
    while time.monotonic() < until:
        try:
            got = httpx.get(f"http://{LOOPBACK}:{port}{path}", headers={"Host": host}, timeout=5)
            if got.status_code == 200:
                return dict(got.json())
            last = f"{got.status_code} {got.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{host}{path} did not serve within {deadline} s: {last}")


def test_a_backup_restored_on_a_fresh_installation_brings_every_app_back() -> None:
    if os.geteuid() != 0:
        pytest.fail("install.sh needs root; scripts/test.sh runs as root")
    root = traversable_dir("paas-backup-")
    nginx = Nginx(root / "nginx")
    nginx.start()
    env = install_env(root, nginx)
    pidfile = root / "run" / "paas-up.pid"
    paas_bin = root / "opt" / "venv" / "bin" / "paas"
    # a root shell on the server: nothing but where install.sh put the settings file
    server_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "PAAS_ENV_FILE": str(root / "etc" / "paas.env"),
    }
    client_env = {"PATH": os.environ["PATH"], "HOME": str(root / "home")}

    def run(args: list[str], environ: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(paas_bin), *args], env=environ, input=stdin, capture_output=True, text=True, timeout=900
        )

    def paas(*args: str, stdin: str = "") -> str:
        done = run(list(args), client_env, stdin)
        assert done.returncode == 0, f"paas {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    try:
        first = run_install(env)
        assert first.returncode == 0, first.stdout + first.stderr
        token = printed_token(first.stdout)
        paas("login", f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}", "--token", token)

        shop_repo, blog_repo = GitRemote(_made(root / "shop")), GitRemote(_made(root / "blog"))
        shop_push = shop_repo.commit(
            {"requirements.txt": "fastapi>=0.110,<1\n", "main.py": NOTES_MAIN.format(version="s1")}, "shop"
        )
        blog_push = blog_repo.commit(demo_app("b1"), "blog")
        shop = json.loads(
            paas(
                "apps", "create", "shop", "--repo", str(shop_repo.bare), "--health-path", "/healthz",
                "--data-path", "/data", "--json",
            )
        )  # fmt: skip
        blog = json.loads(
            paas(
                "apps", "create", "blog", "--repo", str(blog_repo.bare), "--health-path", "/healthz", "--json"
            )
        )
        paas("env", "set", "shop", "SECRET_WORD", "--secret", stdin=SECRET_WORD + "\n")
        assert "shop v1 is live" in paas("deploy", "shop", "--wait")
        assert "blog v1 is live" in paas("deploy", "blog", "--wait")
        assert _serves(nginx.port, "shop.apps.test") == {"version": "s1", "word": SECRET_WORD}
        wrote = httpx.post(
            f"http://{LOOPBACK}:{nginx.port}/note",
            headers={"Host": "shop.apps.test"},
            content="kept in /data",
        )
        assert wrote.status_code == 200, wrote.text

        # the backup, while paas runs
        archive = root / "saved" / "paas.tar.gz"
        archive.parent.mkdir()
        made = run(["backup", "--output", str(archive)], server_env)
        assert made.returncode == 0, made.stdout + made.stderr
        print(f"\n{made.stdout.strip()}")
        assert "2 app(s) (blog, shop), 1 volume(s), 0 image(s)" in made.stdout, made.stdout
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
        for part in (
            "manifest.json",
            "database/paas.db",
            "keys",
            "paas.env",
            "instance-id",
            "volumes/paas-shop-data",
        ):
            assert f"paas-backup/{part}" in names, sorted(names)[:40]
        assert "paas-backup/volumes/paas-shop-data/note.txt" in names

        # the server is lost: everything paas made, here and in the engine
        _destroy(root, nginx)

        # a fresh installation (same code), which cannot be restored into while it runs
        fresh = run_install(env)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        new_token = printed_token(fresh.stdout)
        refused = run(["restore", str(archive)], server_env)
        assert refused.returncode == 1 and "paas is running" in refused.stderr, (
            refused.stdout + refused.stderr
        )
        stop_paas_up(pidfile)
        restored = run(["restore", str(archive)], server_env)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        print(restored.stdout.strip())
        assert "shop: v1 is rebuilt from commit" in restored.stdout, restored.stdout
        assert "blog: v1 is rebuilt from commit" in restored.stdout, restored.stdout
        started = run_install(env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "paas_" not in started.stdout  # the backup's tokens exist: no new one is made

        # both apps serve the same commits again, with the secret and the file
        assert _serves(nginx.port, "shop.apps.test") == {"version": "s1", "word": SECRET_WORD}
        assert _serves(nginx.port, "shop.apps.test", "/note") == {"note": "kept in /data"}
        assert _serves(nginx.port, "blog.apps.test")["version"] == "b1"
        api = httpx.Client(
            base_url=f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}/api/v1",
            headers={"Authorization": f"Bearer {token}"},  # the old token
        )
        for name, push in (("shop", shop_push), ("blog", blog_push)):
            live = [r for r in api.get(f"/apps/{name}/releases").json() if r["status"] == "succeeded"]
            assert live and live[0]["commit"] == push["after"], live
        assert (
            httpx.get(
                f"http://{LOOPBACK}:{env['PAAS_WEB_PORT']}/api/v1/apps",
                headers={"Authorization": f"Bearer {new_token}"},
            ).status_code
            == 401
        )  # the fresh installation's token went with its database

        # the old webhook secret still deploys
        push = blog_repo.commit(demo_app("b2"), "after the move")
        hook = deliver_webhook(
            f"http://{LOOPBACK}:{nginx.port}", "paas.apps.test", "blog", blog["webhook_secret"], push
        )
        assert hook.status_code == 202, hook.text
        deadline = time.monotonic() + 300
        while _serves(nginx.port, "blog.apps.test")["version"] != "b2":
            assert time.monotonic() < deadline, api.get("/apps/blog/releases").json()
            time.sleep(0.5)
        assert shop["webhook_secret"]  # shown at creation; kept by the restore like blog's

        # once more with the images in the archive: nothing is rebuilt
        archive = root / "saved" / "with-images.tar.gz"
        made = run(["backup", "--output", str(archive), "--with-images"], server_env)
        assert made.returncode == 0 and "1 volume(s), 2 image(s)" in made.stdout, made.stdout + made.stderr
        _destroy(root, nginx)
        fresh = run_install(env)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        stop_paas_up(pidfile)
        restored = run(["restore", str(archive)], server_env)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        # (the first restore made v2 of each, a rebuild; the push v3 of blog)
        assert "blog: v3 starts again from its image" in restored.stdout, restored.stdout
        assert "shop: v2 starts again from its image" in restored.stdout, restored.stdout
        started = run_install(env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert _serves(nginx.port, "blog.apps.test")["version"] == "b2"
        assert _serves(nginx.port, "shop.apps.test") == {"version": "s1", "word": SECRET_WORD}
        assert _serves(nginx.port, "shop.apps.test", "/note") == {"note": "kept in /data"}
        log = api.get("/apps/blog/releases/4/log").text
        assert "==> build" not in log and "==> start" in log and "v4 is live" in log, log
    finally:
        stop_paas_up(pidfile)
        remove_installation(root / "data")
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_agent_writes_scheduled_backups_and_copies_them_with_rclone(nginx: Nginx, tmp_path: Path) -> None:
    """Every minute (the finest crontab line), an rclone remote that is a
    directory here: the first scheduled archive appears in both places."""
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    (tmp_path / "sched").mkdir()
    stack = Stack(
        tmp_path / "sched", nginx, PAAS_BACKUP_SCHEDULE="* * * * *", PAAS_BACKUP_RCLONE_REMOTE=str(offsite)
    )
    stack.start()
    try:
        backups = Path(stack.env["PAAS_DATA_DIR"]) / "backups"
        deadline = time.monotonic() + 75
        while not list(offsite.glob("paas-backup-*.tar.gz")):
            assert time.monotonic() < deadline, stack.log_path.read_text()[-3000:]
            time.sleep(0.5)
        [here] = list(backups.glob("paas-backup-*.tar.gz"))
        [there] = list(offsite.glob("paas-backup-*.tar.gz"))
        assert here.name == there.name and here.read_bytes() == there.read_bytes()
        assert stat.S_IMODE(here.stat().st_mode) == 0o600 and stat.S_IMODE(backups.stat().st_mode) == 0o700
        with tarfile.open(here) as tar:
            assert "paas-backup/database/paas.db" in tar.getnames()
        assert "backup written" in stack.log_path.read_text()
    finally:
        stack.stop()
        stack.remove_everything()


def _destroy(root: Path, nginx: Nginx) -> None:
    """Everything the installation made, here and in the engine, and its nginx sites."""
    stop_paas_up(root / "run" / "paas-up.pid")
    remove_installation(root / "data")
    for gone in ("data", "etc", "run", "acme", "paas.log"):
        path = root / gone
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    for site in nginx.conf_dir.glob("paas-*.conf"):  # install.sh reloads nginx
        site.unlink()


def _made(path: Path) -> Path:
    path.mkdir()
    return path
