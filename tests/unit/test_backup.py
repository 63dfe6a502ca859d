"""paas backup and restore without a Docker engine (apps without volumes or
images): what the archive holds, what a restore puts back and refuses, the
schedule's retention and its rclone copy (a local rclone remote).
tests/integration/test_backup.py restores a whole installation."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import stat
import tarfile
import time
from pathlib import Path

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
from tests.integration.harness import free_port

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
    assert "PAAS_DOMAIN=old.example" in written and "PAAS_SECRET_KEY=k-old.example" in written
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
