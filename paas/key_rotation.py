"""Key rotation: re-encrypt every env value, release snapshot, webhook
secret, GitHub token and notification URL under new keys (each sealed value
keeping the use it is bound to) while web and agent run, and encrypt webhook secrets
stored before encryption existed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import select

from paas.crypto import DecryptError, KeyMaterial, Keyring, generate_keys, load_keys, write_keys
from paas.db import hold_key_lock, session_scope
from paas.models import App, Database, Deployment, EnvVar, NotifyTarget

__all__ = ["RotationReport", "encrypt_plain_webhook_secrets", "rotate_keys"]

log = logging.getLogger("paas.env")


def encrypt_plain_webhook_secrets(engine: Engine, keyring: Keyring) -> int:
    """Encrypt webhook secrets stored before encryption existed (migration 0002)."""
    with session_scope(engine) as session:
        hold_key_lock(session)
        count = 0
        for app in session.exec(select(App)).all():
            if not app.webhook_secret.startswith(("f1:", "s1:", "s2:")):
                app.webhook_secret = keyring.encrypt(app.webhook_secret)
                session.add(app)
                count += 1
    return count


@dataclass(frozen=True)
class RotationReport:
    env_values: int
    release_snapshots: int
    webhook_secrets: int
    # values no key opens (or sealed before binding, s1), left as they were: they opened nowhere
    # before and now never will; naming where each is, never what
    left: tuple[str, ...] = ()


class _Resealer:
    """Re-encrypt one value after another; one that does not open is left as
    it is and named in ``left`` (a sealed value keeps its purpose: crypto.reencrypt)."""

    def __init__(self, opener: Keyring, target: Keyring) -> None:
        self.opener, self.target = opener, target
        self.left: list[str] = []

    def __call__(self, value: str, *, where: str) -> str:
        try:
            return self.opener.reencrypt(value, self.target)
        except DecryptError as exc:
            self.left.append(where)
            log.warning("key rotation left %s as it was: %s", where, exc)
            return value


def rotate_keys(engine: Engine, keys_dir: Path, *, web_user: str = "") -> RotationReport:
    """Re-encrypt every stored value under new keys, while web and agent run.

    1. Write new keys alongside the old (old ones still open everything).
       Every process re-reads the files before it encrypts, and encrypts with
       the newest key from here on.
    2. Holding the key lock, re-encrypt every value, release snapshot and
       webhook secret, GitHub token and notification URL under the new keys;
       commit. A sealed value keeps the purpose it was sealed for; one that
       no key opens, or an unbound ``s1:`` one (paas/crypto.py), is left as
       it was and named in the report: it could not be opened before either,
       and must not stop a rotation.
    3. Drop the old keys from the files.
    A crash before 3 leaves both generations on disk (still correct); run
    rotate again.
    """
    old = load_keys(keys_dir, private=True)
    new = generate_keys()
    both = KeyMaterial(fernet=new.fernet + old.fernet, public=new.public, private=new.private + old.private)
    write_keys(keys_dir, both, web_user=web_user)
    again = _Resealer(Keyring.from_material(both), Keyring.from_material(new))

    with session_scope(engine) as session:
        hold_key_lock(session, exclusive=True)
        names = {a.id: a.name for a in session.exec(select(App)).all()}
        env_count = 0
        for row in session.exec(select(EnvVar)).all():
            row.value = again(row.value, where=f"env var {row.key!r} of app {names.get(row.app_id)}")
            session.add(row)
            env_count += 1
        snap_count = 0
        for dep in session.exec(select(Deployment)).all():
            if dep.env:
                where = f"release v{dep.version} of app {names.get(dep.app_id)}"
                dep.env = [
                    {**item, "value": again(item["value"], where=f"env var {item.get('key')!r} in {where}")}
                    for item in dep.env
                ]
                session.add(dep)
                snap_count += 1
        for database in session.exec(select(Database)).all():
            if database.password:
                database.password = again(
                    database.password, where=f"the password of database {database.name}"
                )
                session.add(database)
        hook_count = 0
        for app in session.exec(select(App)).all():
            app.webhook_secret = again(app.webhook_secret, where=f"the webhook secret of app {app.name}")
            if app.github_token:
                app.github_token = again(app.github_token, where=f"the GitHub token of app {app.name}")
            session.add(app)
            hook_count += 1
        for notify_target in session.exec(select(NotifyTarget)).all():
            where = f"the URL of notification target {notify_target.id}"
            notify_target.url = again(notify_target.url, where=where)
            session.add(notify_target)
    write_keys(keys_dir, new, web_user=web_user)
    log.info(
        "keys rotated: %d env values, %d release snapshots, %d webhook secrets",
        env_count,
        snap_count,
        hook_count,
    )
    return RotationReport(env_count, snap_count, hook_count, tuple(again.left))
