"""paas backup and restore without a Docker engine (apps without volumes or
images): what the archive holds, what a restore puts back and refuses, the
schedule's retention and its rclone copy (a local rclone remote).
tests/integration/test_backup.py restores a whole installation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from agent.backup import (
    BackupError,
    make_backup,
    prune_backups,
    queue_restored_apps,
    restore_backup,
    scheduled_backup,
)
from paas.crypto import Keyring
from paas.db import head_revision, make_engine, migrate, session_scope
from paas.errors import SettingsError
from paas.models import App, Deployment, DeploymentStatus, Job, JobState
from paas.settings import Settings, load_settings
from testkit.harness import free_port

COMMIT = "a" * 40


class NoImages:
    """The engine as a restore without images sees it: no image, no volume."""

    def image_id(self, ref: str) -> None:
        return None

    def volume_path(self, name: str, labels: dict[str, str] | None = None) -> None:
        return None


def _installation(root: Path, *, domain: str) -> Settings:
    port = free_port()  # nothing listens there: paas is stopped
    env_file = root / "etc" / "paas.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(
        f"PAAS_DOMAIN={domain}\nPAAS_DATA_DIR={root / 'data'}\nPAAS_WEB_PORT={port}\n"
        f"PAAS_SECRET_KEY=k-{domain}\n"
    )
    return load_settings(
        _env_file=None,
        data_dir=root / "data",
        run_dir=root / "run",
        keys_dir=root / "keys",
        env_file=env_file,
        domain=domain,
        web_port=port,
        nginx_conf_dir=root / "nginx",
        acme=False,
    )


def _live_app(settings: Settings, engine: Engine) -> str:
    """An app with a secret env var and a live v1; returns its webhook secret."""
    from web.app import create_web_app

    with TestClient(create_web_app(settings, engine=engine)) as client:
        from paas import tokens

        with session_scope(engine) as session:
            token = tokens.create_token(session, name="t")
        auth = {"Authorization": f"Bearer {token}"}
        made = client.post(
            "/api/v1/apps",
            json={"name": "shop", "repo_url": "https://github.com/acme/shop.git"},
            headers=auth,
        )
        assert made.status_code == 201, made.text
        put = client.patch(
            "/api/v1/apps/shop/env",
            json={"set": [{"key": "WORD", "value": "sesame", "secret": True}]},
            headers=auth,
        )
        assert put.status_code < 300, put.text
    with session_scope(engine) as session:
        app = session.exec(select(App).where(App.name == "shop")).one()
        for job in session.exec(select(Job)).all():
            session.delete(job)  # the env change's release: nothing is live to release yet
        dep = Deployment(
            app_id=app.id,
            version=1,
            commit=COMMIT,
            ref="refs/heads/main",
            status=DeploymentStatus.succeeded,
            image="paas/shop:v1",
        )
        session.add(dep)
        session.flush()
        app.current_deployment_id = dep.id
        session.add(app)
    return str(made.json()["webhook_secret"])


@pytest.fixture
def old(tmp_path: Path) -> tuple[Settings, Engine, str]:
    settings = _installation(tmp_path / "old", domain="old.example")
    migrate(settings)
    from paas.crypto import ensure_keys

    ensure_keys(settings.keys_dir)
    engine = make_engine(settings)
    secret = _live_app(settings, engine)
    yield settings, engine, secret
    engine.dispose()


def test_the_archive_is_private_and_holds_a_consistent_snapshot(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    settings, engine, _ = old
    made = make_backup(settings, NoImages(), output=tmp_path / "b.tar.gz")  # type: ignore[arg-type]
    assert made.apps == ["shop"] and made.volumes == [] and made.images == []
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    with tarfile.open(made.path) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("paas-backup/manifest.json"))  # type: ignore[arg-type]
        tar.extract("paas-backup/database/paas.db", tmp_path / "x")
    assert {"paas-backup/keys", "paas-backup/paas.env", "paas-backup/instance-id"} <= names
    assert manifest["revision"] == head_revision() and manifest["format"] == 1
    assert manifest["apps"] == [
        {
            "name": "shop",
            "live": {"version": 1, "commit": COMMIT, "ref": "refs/heads/main", "image": "paas/shop:v1"},
            "volume": None,
        }
    ]
    with sqlite3.connect(tmp_path / "x" / "paas-backup" / "database" / "paas.db") as db:
        assert db.execute("select name from app").fetchall() == [("shop",)]
    # never over an existing file, and nothing half-written left behind
    with pytest.raises(BackupError, match="exists already"):
        make_backup(settings, NoImages(), output=made.path)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "old", "x"]


def test_a_restore_brings_the_database_keys_and_settings_to_a_fresh_server(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    settings, engine, webhook_secret = old
    archive = make_backup(settings, NoImages(), output=tmp_path / "b.tar.gz").path  # type: ignore[arg-type]
    new = _installation(tmp_path / "new", domain="new.example")
    migrate(new)  # a fresh install: its own keys, an empty database
    from paas.crypto import ensure_keys

    ensure_keys(new.keys_dir)
    done = restore_backup(new, NoImages(), archive)  # type: ignore[arg-type]
    assert done.apps == ["shop"] and done.made_by
    assert done.settings_changed == ["PAAS_DOMAIN", "PAAS_SECRET_KEY"]
    written = new.env_file.read_text()
    assert "PAAS_DOMAIN='old.example'" in written and "PAAS_SECRET_KEY='k-old.example'" in written
    assert (
        f"PAAS_DATA_DIR={tmp_path / 'new' / 'data'}" in written and f"PAAS_WEB_PORT={new.web_port}" in written
    )
    assert "PAAS_DOMAIN=new.example" in new.env_file.with_name("paas.env.before-restore").read_text()
    assert (new.data_dir / "instance-id").read_text() == (settings.data_dir / "instance-id").read_text()

    migrate(new)
    said = queue_restored_apps(new, NoImages())  # type: ignore[arg-type]
    assert said == [f"shop: v1 is rebuilt from commit {COMMIT[:12]}"]
    restored = make_engine(new)
    try:
        with session_scope(restored) as session:
            app = session.exec(select(App)).one()
            keys = Keyring(new.keys_dir, private=True)
            assert keys.decrypt(app.webhook_secret) == webhook_secret  # the old keys came along
            job = session.exec(select(Job).where(Job.state == JobState.queued)).one()
            assert (job.kind, job.payload["commit"], job.payload["trigger"]) == ("deploy", COMMIT, "restore")
    finally:
        restored.dispose()

    # a second restore finds an app there and changes nothing
    before = (new.db_dir / "paas.db").read_bytes()
    with pytest.raises(BackupError, match=r"already has apps \(shop\)"):
        restore_backup(new, NoImages(), archive)  # type: ignore[arg-type]
    assert (new.db_dir / "paas.db").read_bytes() == before


def test_a_restore_refuses_what_it_cannot_bring_back_and_changes_nothing(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    settings, _, _ = old
    archive = make_backup(settings, NoImages(), output=tmp_path / "b.tar.gz").path  # type: ignore[arg-type]
    new = _installation(tmp_path / "new", domain="new.example")
    migrate(new)
    keys_before = sorted(p.name for p in new.keys_dir.iterdir()) if new.keys_dir.exists() else []

    not_a_backup = tmp_path / "notes.tar.gz"
    with tarfile.open(not_a_backup, "w:gz") as tar:
        tar.add(new.env_file, arcname="notes/paas.env")
    with pytest.raises(BackupError, match="is not a paas backup"):
        restore_backup(new, NoImages(), not_a_backup)  # type: ignore[arg-type]
    with pytest.raises(BackupError, match="no backup archive"):
        restore_backup(new, NoImages(), tmp_path / "missing.tar.gz")  # type: ignore[arg-type]

    # made by a newer paas: its database is ahead of these migrations
    work = tmp_path / "newer"
    with tarfile.open(archive) as tar:
        tar.extractall(work)  # noqa: S202  (our own archive)
    manifest = work / "paas-backup" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["revision"] = "9999"
    manifest.write_text(json.dumps(data))
    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(newer, "w:gz") as tar:
        tar.add(work / "paas-backup", arcname="paas-backup")
    with pytest.raises(BackupError, match="is newer than this paas knows"):
        restore_backup(new, NoImages(), newer)  # type: ignore[arg-type]

    # a SQLite backup on a server whose database is PostgreSQL
    on_postgres = new.model_copy(update={"database_url": "postgresql+psycopg://paas@127.0.0.1/paas"})
    with pytest.raises(BackupError, match="holds a sqlite database and this server uses PostgreSQL"):
        restore_backup(on_postgres, NoImages(), archive)  # type: ignore[arg-type]

    # paas running: its agent answers on the socket
    new.run_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(new.agent_socket))
        listener.listen()
        with pytest.raises(BackupError, match="paas is running"):
            restore_backup(new, NoImages(), archive)  # type: ignore[arg-type]
    assert "PAAS_DOMAIN=new.example" in new.env_file.read_text()
    assert not (new.env_file.with_name("paas.env.before-restore")).exists()
    assert (sorted(p.name for p in new.keys_dir.iterdir()) if new.keys_dir.exists() else []) == keys_before
    assert not [p for p in new.data_dir.iterdir() if p.name.startswith(".restore-")]


def test_scheduled_backups_keep_the_newest_here_and_on_the_rclone_remote(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    if shutil.which("rclone") is None:
        pytest.fail("rclone is not installed: scripts/test.sh installs it")
    settings, _, _ = old
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    settings = settings.model_copy(update={"backup_keep": 2, "backup_rclone_remote": str(offsite)})
    made = []
    for _ in range(3):
        made.append(scheduled_backup(settings, NoImages()).path.name)  # type: ignore[arg-type]
        time.sleep(1.05)  # archives are named to the second
    kept = sorted(made)[1:]
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == kept
    assert sorted(p.name for p in offsite.iterdir()) == kept
    assert stat.S_IMODE(settings.backups_dir.stat().st_mode) == 0o700
    assert prune_backups(settings.backups_dir, 1) == [settings.backups_dir / kept[0]]


def test_backup_settings_are_checked_by_name() -> None:
    with pytest.raises(SettingsError, match="PAAS_BACKUP_SCHEDULE: .*crontab line"):
        load_settings(_env_file=None, backup_schedule="every day")
    with pytest.raises(SettingsError, match="PAAS_BACKUP_RCLONE_REMOTE"):
        load_settings(_env_file=None, backup_rclone_remote="--config=/etc/shadow remote:")
    assert load_settings(_env_file=None, backup_schedule=" 30  3 * * * ").backup_schedule == "30 3 * * *"


# issue 27: what an app, a shared directory or a tampered archive could make root do ---------


SECRET = "the-private-key-of-this-server"


class OneVolume:
    """An engine where the app shop has its data volume at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def image_id(self, ref: str) -> None:
        return None

    def volume_path(self, name: str, labels: dict[str, str] | None = None) -> Path | None:
        return self.path if name == "paas-shop-data" else None


def test_a_volume_is_read_without_following_a_link_the_app_swaps_in_while_it_is_read(
    old: tuple[Settings, Engine, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, _ = old
    with session_scope(engine) as session:
        app = session.exec(select(App)).one()
        app.data_path = "/data"
        session.add(app)
    keys = tmp_path / "etc-paas-keys"  # what the app is after: the key that opens every secret
    keys.mkdir()
    (keys / "secrets.key").write_text(SECRET)
    volume = tmp_path / "volume"
    (volume / "uploads").mkdir(parents=True)
    (volume / "uploads" / "photo.jpg").write_text("jpeg")
    (volume / "notes.txt").write_text("kept")
    (volume / "sub" / "deeper").mkdir(parents=True)
    (volume / "sub" / "deeper" / "a.txt").write_text("a")
    (volume / "to-keys").symlink_to(keys)  # a link the app made: archived as a link

    # the race, won every time: the moment after root looked at uploads/ (a directory, not a
    # link), the app puts a link to the keys in its place
    swapped: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def swap_after_the_look(path: Any) -> None:
        if os.path.basename(os.fsdecode(path)) == "uploads" and not swapped:
            swapped.append(os.fsdecode(path))
            os.rename(volume / "uploads", volume / "uploads.before")
            os.symlink(keys, volume / "uploads")

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_lstat(path, *args, **kwargs)
        swap_after_the_look(path)
        return info

    def stat_(path: Any, *args: Any, follow_symlinks: bool = True, **kwargs: Any) -> os.stat_result:
        info = real_stat(path, *args, follow_symlinks=follow_symlinks, **kwargs)
        if not follow_symlinks:
            swap_after_the_look(path)
        return info

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "stat", stat_)
    made = make_backup(settings, OneVolume(volume), output=tmp_path / "b.tar.gz")  # type: ignore[arg-type]
    monkeypatch.undo()
    assert swapped and made.volumes == ["paas-shop-data"]

    prefix = "paas-backup/volumes/paas-shop-data"
    with tarfile.open(made.path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.name.startswith(prefix)}
        contents = {name: tar.extractfile(m).read() for name, m in members.items() if m.isfile()}  # type: ignore[union-attr]
    assert not [name for name in members if name.endswith("secrets.key")], sorted(members)
    assert not [name for name, data in contents.items() if SECRET.encode() in data]
    # the rest of the volume, as it was
    assert contents[f"{prefix}/notes.txt"] == b"kept" and contents[f"{prefix}/sub/deeper/a.txt"] == b"a"
    assert members[prefix].isdir() and members[f"{prefix}/sub/deeper"].isdir()
    link = members[f"{prefix}/to-keys"]
    assert link.issym() and link.linkname == str(keys)


def test_the_archive_never_lands_in_a_file_someone_put_beside_it(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    settings, _, _ = old
    shared = tmp_path / "shared"  # a directory everyone may write to, as /tmp
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / ".b.tar.gz.partial"  # under the name a backup wrote to first
    planted.write_text("mine")
    planted.chmod(0o666)
    planted_inode = planted.stat().st_ino
    made = make_backup(settings, NoImages(), output=shared / "b.tar.gz")  # type: ignore[arg-type]
    assert planted.read_text() == "mine"
    info = made.path.stat()
    assert info.st_ino != planted_inode
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, os.geteuid())
    assert sorted(p.name for p in shared.iterdir()) == [".b.tar.gz.partial", "b.tar.gz"]


def test_a_file_or_link_put_at_the_output_meanwhile_is_neither_replaced_nor_followed(
    old: tuple[Settings, Engine, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.backup

    settings, _, _ = old
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    output = tmp_path / "b.tar.gz"
    snapshot = agent.backup._snapshot_database

    def snapshot_then_a_link_appears(*args: object, **kwargs: object) -> Path:
        done = snapshot(*args, **kwargs)  # type: ignore[arg-type]
        output.symlink_to(elsewhere)  # after the first look, before the archive is in place
        return done

    monkeypatch.setattr(agent.backup, "_snapshot_database", snapshot_then_a_link_appears)
    with pytest.raises(BackupError, match=f"{output} exists already"):
        make_backup(settings, NoImages(), output=output)  # type: ignore[arg-type]
    assert output.is_symlink() and elsewhere.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "elsewhere", "old"]


def test_no_archive_is_written_where_another_user_could_swap_what_root_writes(
    old: tuple[Settings, Engine, str], tmp_path: Path
) -> None:
    settings, _, _ = old
    open_to_all = tmp_path / "open"  # writable by everyone, no sticky bit
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(BackupError, match=f"others may write to {open_to_all} .*no sticky bit"):
        make_backup(settings, NoImages(), output=open_to_all / "b.tar.gz")  # type: ignore[arg-type]
    assert list(open_to_all.iterdir()) == []
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"  # nobody's, with a directory of root's in it
        (theirs / "sub").mkdir(parents=True)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(BackupError, match=f"{theirs} belongs to another user"):
            make_backup(settings, NoImages(), output=theirs / "sub" / "b.tar.gz")  # type: ignore[arg-type]


def test_a_restore_takes_the_installation_settings_and_keeps_this_servers_trust(
    old: tuple[Settings, Engine, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tampered archive's paas.env asks for another GitHub API (every token
    would go there), another nginx binary (root runs it) and another rclone
    remote (every backup, with the key, would go there): none is taken, and
    `paas restore` says so. Its schedule (with spaces) and email come back as
    written, never expanded."""
    import agent.docker_engine
    import paas.cli.server
    from tests.unit.cli_support import run

    settings, _, _ = old
    with settings.env_file.open("a") as fh:
        fh.write(
            "PAAS_GITHUB_API_URL=https://github.evil.example/api/v3\n"
            "PAAS_NGINX_BIN=/tmp/not-nginx\n"
            "PAAS_BACKUP_RCLONE_REMOTE=:sftp,host=evil.example:\n"
            'PAAS_BACKUP_SCHEDULE="30 3 * * *"\n'
            "PAAS_ACME_EMAIL=ops+${HOME}@old.example\n"
        )
    archive = make_backup(settings, NoImages(), output=tmp_path / "b.tar.gz").path  # type: ignore[arg-type]
    new = _installation(tmp_path / "new", domain="new.example")
    migrate(new)
    from paas.crypto import ensure_keys

    ensure_keys(new.keys_dir)
    monkeypatch.setattr(agent.docker_engine, "DockerEngine", NoImages)
    monkeypatch.setattr(paas.cli.server, "_need_root", lambda command: None)
    saved = dict(os.environ)  # the command loads the settings file into the environment
    try:
        for name in [n for n in os.environ if n.startswith("PAAS_")]:
            del os.environ[name]
        os.environ.update(
            PAAS_ENV_FILE=str(new.env_file),
            PAAS_KEYS_DIR=str(new.keys_dir),
            PAAS_RUN_DIR=str(new.run_dir),
            PAAS_NGINX_CONF_DIR=str(new.nginx_conf_dir),
            PAAS_ACME="off",
        )
        code, said = run("restore", str(archive))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert code == 0, said
    not_taken = [line for line in said.splitlines() if line.startswith("settings of the backup not taken")]
    assert len(not_taken) == 1, said
    assert not_taken[0].endswith(  # (and where the old server kept its data, and its port)
        ": PAAS_BACKUP_RCLONE_REMOTE, PAAS_DATA_DIR, PAAS_GITHUB_API_URL, PAAS_NGINX_BIN, PAAS_WEB_PORT"
    )
    assert f"{new.env_file}.from-backup" in not_taken[0]

    from dotenv import dotenv_values

    values = dotenv_values(new.env_file, interpolate=False)
    assert not {"PAAS_GITHUB_API_URL", "PAAS_NGINX_BIN", "PAAS_BACKUP_RCLONE_REMOTE"} & set(values)
    assert values["PAAS_BACKUP_SCHEDULE"] == "30 3 * * *"
    assert values["PAAS_ACME_EMAIL"] == "ops+${HOME}@old.example"
    assert (values["PAAS_DOMAIN"], values["PAAS_DATA_DIR"]) == ("old.example", str(new.data_dir))
    kept = new.env_file.with_name("paas.env.from-backup")  # the archive's whole file, root's alone
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert "PAAS_GITHUB_API_URL=https://github.evil.example/api/v3" in kept.read_text()


def test_the_settings_merge_takes_only_what_describes_the_installation() -> None:
    from agent.backup import merge_settings

    here = "# this server's\nPAAS_DATA_DIR=/srv/paas\nPAAS_DOMAIN=new.example\nPAAS_ACME=off\n"
    there = (
        "PAAS_DATA_DIR=/var/lib/paas\nPAAS_DOMAIN='old.example'\nPAAS_ACME=on\n"
        "PAAS_ACME_DIRECTORY=https://ca.evil.example/dir\nPAAS_WEB_USER=root\n"
        "PAAS_KEEP_RELEASES=5\nPAAS_HOST=it's\nNOT_OURS=1\n"
    )
    merged = merge_settings(here, there)
    assert merged.taken == ["PAAS_DOMAIN", "PAAS_KEEP_RELEASES"]
    # a value one quoted line cannot hold is not taken either
    assert merged.refused == [
        "NOT_OURS",
        "PAAS_ACME",
        "PAAS_ACME_DIRECTORY",
        "PAAS_DATA_DIR",
        "PAAS_HOST",
        "PAAS_WEB_USER",
    ]
    assert merged.text == (
        "# this server's\nPAAS_DATA_DIR=/srv/paas\nPAAS_ACME=off\n"
        "# taken from the backup by paas restore\nPAAS_DOMAIN='old.example'\nPAAS_KEEP_RELEASES='5'\n"
    )


def test_a_file_the_app_truncates_while_it_is_read_does_not_fail_the_backup(
    old: tuple[Settings, Engine, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tar copies the size its header wrote down: a file cut short meanwhile
    (an app's log rotated at that moment, or an app that wants every backup
    to fail) ends in zeros, and the backup goes on."""
    settings, engine, _ = old
    with session_scope(engine) as session:
        app = session.exec(select(App)).one()
        app.data_path = "/data"
        session.add(app)
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "big.log").write_bytes(b"x" * 100_000)
    (volume / "after.txt").write_text("still here")
    real_fstat = os.fstat

    def fstat_then_truncate(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "big.log":
            os.truncate(volume / "big.log", 10)  # the moment after root took its size
        return info

    monkeypatch.setattr(os, "fstat", fstat_then_truncate)
    made = make_backup(settings, OneVolume(volume), output=tmp_path / "b.tar.gz")  # type: ignore[arg-type]
    monkeypatch.undo()
    prefix = "paas-backup/volumes/paas-shop-data"
    with tarfile.open(made.path) as tar:
        big = tar.extractfile(f"{prefix}/big.log").read()  # type: ignore[union-attr]
        after = tar.extractfile(f"{prefix}/after.txt").read()  # type: ignore[union-attr]
    assert big == b"x" * 10 + bytes(100_000 - 10)
    assert after == b"still here"
