"""Sealed values are bound to the field they were sealed for (issue 27).

A taken-over web process can write any row and holds the public key, so it
could copy a GitHub token, a notification URL or another app's secret into a
secret env var of an app whose repository it controls. The agent must refuse
to open it there. Also: key rotation keeps the binding, and migration 0012
binds the values sealed before it (``s1:``).
"""

from __future__ import annotations

import base64
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from nacl.public import SealedBox
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent.releases import Releases
from paas import db
from paas.crypto import (
    PRIVATE_FILE,
    DecryptError,
    Keyring,
    KeysMissing,
    ensure_keys,
    env_purpose,
    github_token_purpose,
    key_id,
    load_keys,
    notify_url_purpose,
)
from paas.db import make_engine, migrate, session_scope
from paas.models import App, Deployment, EnvVar, Job, NotifyTarget
from paas.settings import Settings

TOKEN = "github_pat_" + "c4n4ry" * 8
URL = "slack://T000/B000/XXXXcanarytokenXXXX"
SHOP_SECRET = "sk_live_shop_c4n4ry_0123456789"  # noqa: S105  (canaries, not credentials)
SHOP_OTHER = "shop-db-password-c4n4ry"  # noqa: S105
EVIL_OWN = "evil-own-secret"  # noqa: S105


@pytest.fixture
def two_apps(client: TestClient, auth: dict[str, str], engine: Engine) -> dict[str, str]:
    """shop, the victim: a GitHub token, a notification target and two secrets;
    evil, whose repository the attacker controls: a secret of its own. All set
    through the API, as web does. Returns the stored ciphertexts by name."""
    for name in ("shop", "evil"):
        r = client.post(
            "/api/v1/apps",
            json={"name": name, "repo_url": f"https://github.com/octo/{name}.git"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
    assert client.put("/api/v1/apps/shop/github", json={"token": TOKEN}, headers=auth).status_code == 200
    r = client.post("/api/v1/notifications", json={"url": URL, "app": "shop"}, headers=auth)
    assert r.status_code == 201, r.text
    for app, key, value in (("shop", "STRIPE_KEY", SHOP_SECRET), ("shop", "DB_PASSWORD", SHOP_OTHER)):
        body = {"set": [{"key": key, "value": value, "secret": True}], "restart": False}
        assert client.patch(f"/api/v1/apps/{app}/env", json=body, headers=auth).status_code == 200
    body = {"set": [{"key": "MINE", "value": EVIL_OWN, "secret": True}], "restart": False}
    assert client.patch("/api/v1/apps/evil/env", json=body, headers=auth).status_code == 200
    with Session(engine) as s:
        shop = s.exec(select(App).where(App.name == "shop")).one()
        rows = {(r.app_id, r.key): r.value for r in s.exec(select(EnvVar)).all()}
        return {
            "github_token": shop.github_token,
            "notify_url": s.exec(select(NotifyTarget)).one().url,
            "shop_secret": rows[(shop.id, "STRIPE_KEY")],
            "shop_other": rows[(shop.id, "DB_PASSWORD")],
        }


def _plant(engine: Engine, app: str, key: str, ciphertext: str) -> Job:
    """What a taken-over web can do: write a secret env row holding any
    ciphertext, and queue a deploy of that app."""
    with session_scope(engine) as s:
        target = s.exec(select(App).where(App.name == app)).one()
        s.add(EnvVar(app_id=target.id, key=key, value=ciphertext, secret=True, scope="run"))  # type: ignore[arg-type]
        job = Job(
            kind="deploy", app_id=target.id, app_name=app, payload={"commit": "a" * 40, "trigger": "push"}
        )
        s.add(job)
        s.flush()
        s.expunge(job)
        return job


@pytest.mark.parametrize(
    ("source", "into", "plaintext", "sealed_for"),
    [
        ("github_token", "evil", TOKEN, "the GitHub token of app shop"),  # into evil's env
        ("notify_url", "evil", URL, "the URL of notification target"),
        ("shop_secret", "evil", SHOP_SECRET, "env var STRIPE_KEY of app shop"),  # another app's secret
        ("shop_other", "shop", SHOP_OTHER, "env var DB_PASSWORD of app shop"),  # the same app's other key
    ],
)
def test_the_agent_refuses_a_sealed_value_copied_into_a_secret_env_var(
    two_apps: dict[str, str],
    engine: Engine,
    settings: Settings,
    source: str,
    into: str,
    plaintext: str,
    sealed_for: str,
) -> None:
    job = _plant(engine, into, "STOLEN", two_apps[source])
    releases = Releases(engine, Keyring(settings.keys_dir, private=True))  # the agent's own path
    with pytest.raises(DecryptError) as refused:
        made = releases.create(job)
        pytest.fail(f"the agent opened the copied value: {made.env.run.get('STOLEN') == plaintext}")
    said = str(refused.value)
    assert f"env var STOLEN of app {into}" in said and sealed_for in said and plaintext not in said


def test_an_apps_own_secrets_still_open_for_its_release(
    two_apps: dict[str, str], engine: Engine, settings: Settings
) -> None:
    """The control: without a copied value both apps release with their own secrets."""
    releases = Releases(engine, Keyring(settings.keys_dir, private=True))
    with session_scope(engine) as s:
        jobs = []
        for name in ("shop", "evil"):
            app = s.exec(select(App).where(App.name == name)).one()
            jobs.append(Job(kind="deploy", app_id=app.id, app_name=name, payload={"commit": "a" * 40}))
        s.add_all(jobs)
        s.flush()
        for job in jobs:
            s.expunge(job)
    assert releases.create(jobs[0]).env.run == {"STRIPE_KEY": SHOP_SECRET, "DB_PASSWORD": SHOP_OTHER}
    assert releases.create(jobs[1]).env.run == {"MINE": EVIL_OWN}


def test_a_rollback_reuses_a_snapshot_bound_to_its_app_and_keys(
    two_apps: dict[str, str], engine: Engine, settings: Settings
) -> None:
    """A release's snapshot keeps the values as sealed for the app's vars: a
    later release (restart, rollback) opens them again; copied into another
    app's release it opens nowhere."""
    agent = Keyring(settings.keys_dir, private=True)
    releases = Releases(engine, agent)
    with session_scope(engine) as s:
        shop = s.exec(select(App).where(App.name == "shop")).one()
        job = Job(kind="deploy", app_id=shop.id, app_name="shop", payload={"commit": "a" * 40})
        s.add(job)
        s.flush()
        s.expunge(job)
    made = releases.create(job)
    with Session(engine) as s:
        snapshot = s.get(Deployment, made.dep_id).env  # type: ignore[union-attr]
    from paas.env_snapshots import open_snapshot

    assert open_snapshot(snapshot, agent, app="shop").run["STRIPE_KEY"] == SHOP_SECRET
    with pytest.raises(DecryptError, match=r"of app evil: it was sealed for env var \w+ of app shop"):
        open_snapshot(snapshot, agent, app="evil")


# key rotation -------------------------------------------------------------------------------


def test_rotation_keeps_each_value_bound_and_leaves_what_never_opened(
    two_apps: dict[str, str], engine: Engine, settings: Settings
) -> None:
    from paas.key_rotation import rotate_keys

    _plant(engine, "evil", "STOLEN", two_apps["github_token"])  # copied before the rotation
    unbound = _seal_s1(settings.keys_dir, "planted")
    _plant(engine, "evil", "OLD", unbound)

    report = rotate_keys(engine, settings.keys_dir)

    assert report.left == ("env var 'OLD' of app evil",)
    agent = Keyring(settings.keys_dir, private=True)
    with Session(engine) as s:
        shop = s.exec(select(App).where(App.name == "shop")).one()
        target = s.exec(select(NotifyTarget)).one()
        rows = {(r.app_id, r.key): r.value for r in s.exec(select(EnvVar)).all()}
        evil_id = s.exec(select(App.id).where(App.name == "evil")).one()
    assert shop.github_token != two_apps["github_token"]  # resealed under the new key...
    assert agent.decrypt(shop.github_token, purpose=github_token_purpose("shop")) == TOKEN  # ...for shop
    assert agent.decrypt(target.url, purpose=notify_url_purpose(target.id, "shop")) == URL
    assert (
        agent.decrypt(rows[(shop.id, "STRIPE_KEY")], purpose=env_purpose("shop", "STRIPE_KEY")) == SHOP_SECRET
    )
    with pytest.raises(DecryptError, match="the GitHub token of app shop"):  # the copy is still refused
        agent.decrypt(rows[(evil_id, "STOLEN")], purpose=env_purpose("evil", "STOLEN"))
    assert rows[(evil_id, "OLD")] == unbound  # left as it was: it opened nowhere and never will
    with pytest.raises(DecryptError):
        agent.decrypt(unbound, purpose=env_purpose("evil", "OLD"))


# migration 0012 ----------------------------------------------------------------------------


def _seal_s1(keys_dir: Path, value: str) -> str:
    """A value as paas sealed it before binding (``s1:``)."""
    public = load_keys(keys_dir, private=False).public[0]
    sealed = bytes(SealedBox(public).encrypt(value.encode("utf-8")))
    return f"s1:{key_id(public)}:{base64.b64encode(sealed).decode('ascii')}"


@pytest.fixture
def at_0011(settings: Settings) -> Any:
    """A database as paas 0011 left it: every sealed value ``s1:``. Made at
    today's schema (the rows go in through today's models), then marked 0011:
    0012 binds values again, and the migrations after it add nothing twice."""
    migrate(settings)
    ensure_keys(settings.keys_dir)
    engine = make_engine(settings)
    s1 = _seal_s1
    keys = settings.keys_dir
    with session_scope(engine) as s:
        shop = App(name="shop", repo_url="https://github.com/octo/shop.git", webhook_secret="f1:x")
        evil = App(name="evil", repo_url="https://github.com/octo/evil.git", webhook_secret="f1:x")
        shop.github_token = s1(keys, TOKEN)
        s.add_all([shop, evil])
        s.flush()
        general = Keyring(keys, private=False).encrypt("hello")
        s.add(EnvVar(app_id=shop.id, key="STRIPE_KEY", value=s1(keys, SHOP_SECRET), secret=True))  # type: ignore[arg-type]
        s.add(EnvVar(app_id=shop.id, key="GREETING", value=general))  # type: ignore[arg-type]
        # copied through the hole before the upgrade: bound where it lies, but named in a warning
        s.add(EnvVar(app_id=evil.id, key="STOLEN", value=s1(keys, TOKEN), secret=True))  # type: ignore[arg-type]
        snapshot = [
            {"key": "STRIPE_KEY", "scope": "run", "secret": True, "value": s1(keys, SHOP_SECRET)},
            {"key": "GREETING", "scope": "run", "secret": False, "value": general},
        ]
        s.add(Deployment(app_id=shop.id, version=1, env=snapshot))  # type: ignore[arg-type]
        s.add(NotifyTarget(app_id=None, url=s1(keys, URL), masked="m"))
        s.add(NotifyTarget(app_id=shop.id, url=s1(keys, URL + "2"), masked="m"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0011'")
    yield engine
    engine.dispose()


def test_migration_0012_binds_every_s1_value_to_where_it_lies(
    at_0011: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="paas.migrate"):
        migrate(settings)  # 0012, then what came after (read through today's models)
    assert db.current_revision(at_0011) == db.head_revision()
    agent = Keyring(settings.keys_dir, private=True)
    with Session(at_0011) as s:
        apps = {a.name: a for a in s.exec(select(App)).all()}
        rows = {(r.app_id, r.key): r.value for r in s.exec(select(EnvVar)).all()}
        snapshot = s.exec(select(Deployment)).one().env
        targets = s.exec(select(NotifyTarget).order_by(NotifyTarget.id)).all()  # type: ignore[arg-type]
    shop, evil = apps["shop"].id, apps["evil"].id
    sealed = [
        apps["shop"].github_token,
        rows[(shop, "STRIPE_KEY")],
        rows[(evil, "STOLEN")],
        snapshot[0]["value"],
        *(t.url for t in targets),
    ]
    assert all(v.startswith("s2:") for v in sealed)
    assert rows[(shop, "GREETING")].startswith("f1:") and snapshot[1]["value"] == rows[(shop, "GREETING")]
    assert agent.decrypt(apps["shop"].github_token, purpose=github_token_purpose("shop")) == TOKEN
    assert agent.decrypt(rows[(shop, "STRIPE_KEY")], purpose=env_purpose("shop", "STRIPE_KEY")) == SHOP_SECRET
    assert agent.decrypt(snapshot[0]["value"], purpose=env_purpose("shop", "STRIPE_KEY")) == SHOP_SECRET
    assert agent.decrypt(targets[0].url, purpose=notify_url_purpose(targets[0].id, None)) == URL
    assert agent.decrypt(targets[1].url, purpose=notify_url_purpose(targets[1].id, "shop")) == URL + "2"
    with pytest.raises(DecryptError, match="env var STRIPE_KEY of app shop"):
        agent.decrypt(rows[(shop, "STRIPE_KEY")], purpose=github_token_purpose("shop"))
    # a value found in more than one field is named (never shown): it may have been copied
    said = caplog.text
    assert "the GitHub token of app shop" in said and "env var STOLEN of app evil" in said
    assert "issue 27" in said and TOKEN not in said and SHOP_SECRET not in said
    # after the migration, an s1 value anywhere is refused, saying what to do
    planted = _seal_s1(settings.keys_dir, TOKEN)
    with pytest.raises(DecryptError, match="paas migrate") as refused:
        agent.decrypt(planted, purpose=env_purpose("evil", "STOLEN"))
    assert "env var STOLEN of app evil" in str(refused.value)


def test_migration_0012_without_the_private_key_stops_and_changes_nothing(
    at_0011: Engine, settings: Settings, tmp_path: Path
) -> None:
    """Where the private key cannot be read (web starting as its own user),
    the s1 values cannot be resealed: the migration stops, naming what to do,
    and the database stays at 0011 with its values as they were."""
    with Session(at_0011) as s:
        before = s.exec(select(App.github_token).where(App.name == "shop")).one()
    aside = tmp_path / "secrets.key.aside"
    shutil.move(settings.keys_dir / PRIVATE_FILE, aside)
    with pytest.raises(KeysMissing, match=r"must reseal 6 sealed value.*run `paas migrate` as root"):
        migrate(settings)
    assert db.current_revision(at_0011) == "0011"
    with Session(at_0011) as s:
        assert s.exec(select(App.github_token).where(App.name == "shop")).one() == before
    shutil.move(aside, settings.keys_dir / PRIVATE_FILE)
    migrate(settings)  # as root, with the key: done
    assert db.current_revision(at_0011) == db.head_revision()


def test_migration_0012_needs_no_key_when_nothing_is_sealed(settings: Settings) -> None:
    migrate(settings, revision="0011")  # no keys at all yet: a fresh install migrates first
    migrate(settings)
    engine = make_engine(settings)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


def test_migration_0012_leaves_a_value_no_key_opens(at_0011: Engine, settings: Settings) -> None:
    """An s1 value sealed to a key long rotated away opened nowhere before; it
    is left as it is (the agent refuses it) rather than stopping the upgrade."""
    other = settings.keys_dir.parent / "other-keys"
    ensure_keys(other)
    orphan = _seal_s1(other, "from a lost key")
    with session_scope(at_0011) as s:
        evil = s.exec(select(App).where(App.name == "evil")).one()
        evil.github_token = orphan
        s.add(evil)
    migrate(settings)
    with Session(at_0011) as s:
        assert s.exec(select(App.github_token).where(App.name == "evil")).one() == orphan


def test_migration_0012_run_again_binds_nothing(at_0011: Engine, settings: Settings) -> None:
    """Web can write ``alembic_version``: it sets it back to 0011 and puts an
    ``s1:`` copy of shop's token (kept from before the upgrade) into evil's
    env. The next start migrates again; the copy must stay unbound."""
    kept = _seal_s1(settings.keys_dir, TOKEN)
    migrate(settings)
    with session_scope(at_0011) as s:
        evil = s.exec(select(App).where(App.name == "evil")).one()
        s.add(EnvVar(app_id=evil.id, key="LAUNDERED", value=kept, secret=True))  # type: ignore[arg-type]
    with at_0011.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0011'")
    migrate(settings)
    agent = Keyring(settings.keys_dir, private=True)
    with Session(at_0011) as s:
        row = s.exec(select(EnvVar).where(EnvVar.key == "LAUNDERED")).one()
    assert row.value == kept
    with pytest.raises(DecryptError):
        agent.decrypt(row.value, purpose=env_purpose("evil", "LAUNDERED"))
