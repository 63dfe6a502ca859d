"""Env vars: the service functions behind the API, CLI and UI, the .env
format, each release's snapshot, and key rotation.

Values are encrypted before they reach the database (paas.crypto) and are
never logged, recorded in an event or put in an error message: errors name
the key (or the .env line number), never the value.

Writers take the key lock (:func:`paas.db.hold_key_lock`) before they encrypt, and
key rotation holds it exclusively while it re-encrypts, so no value can be
written under a key that rotation is about to drop.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from paas import services
from paas.crypto import KeyMaterial, Keyring, generate_keys, load_keys, write_keys
from paas.db import hold_key_lock, session_scope
from paas.errors import Conflict, InvalidInput, NotFound
from paas.models import App, Deployment, EnvScope, EnvVar, utcnow
from paas.schemas import (
    MAX_VARS,
    EnvChange,
    EnvChangeResult,
    EnvImport,
    EnvSet,
    EnvVarPublic,
    check_env_key,
    env_value_problem,
)

__all__ = [
    "BUILD_ARG_WARNING",
    "OpenedEnv",
    "RotationReport",
    "change_env",
    "encrypt_plain_webhook_secrets",
    "export_env",
    "import_env",
    "list_env",
    "open_snapshot",
    "parse_dotenv",
    "restore_snapshot",
    "rotate_keys",
    "snapshot_env",
]

log = logging.getLogger("paas.env")

MASK = "********"
BUILD_ARG_WARNING = (
    "{key} is passed to builds as a build arg: build args are visible to anyone who can "
    "read the image's history (docker history); keep credentials in run scope"
)


def _rows(session: Session, app: App) -> dict[str, EnvVar]:
    rows = session.exec(select(EnvVar).where(EnvVar.app_id == app.id).order_by(col(EnvVar.key))).all()
    return {r.key: r for r in rows}


def _put(
    session: Session,
    rows: dict[str, EnvVar],
    app: App,
    *,
    key: str,
    ciphertext: str,
    secret: bool,
    scope: str,
    actor: str,
    now: datetime,
) -> None:
    """Create or replace one variable; ``ciphertext`` is already encrypted."""
    row = rows.get(key) or EnvVar(app_id=app.id, key=key, value="")  # type: ignore[arg-type]
    row.value, row.secret, row.scope = ciphertext, secret, scope
    row.updated_at, row.updated_by = now, actor
    session.add(row)


def _public(row: EnvVar, keyring: Keyring) -> EnvVarPublic:
    return EnvVarPublic(
        key=row.key,
        value=None if row.secret else keyring.decrypt(row.value),
        secret=row.secret,
        scope=row.scope,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def list_env(session: Session, *, name: str, keyring: Keyring) -> list[EnvVarPublic]:
    """Every variable, general values in clear and secret ones as None."""
    app = services.get_app(session, name)
    return [_public(r, keyring) for r in _rows(session, app).values()]


# changing ------------------------------------------------------------------------------


def change_env(
    session: Session, *, name: str, change: EnvChange, actor: str, keyring: Keyring
) -> EnvChangeResult:
    """Apply sets and unsets together: all or nothing, one release (or staged).

    Every check runs before anything is written, so bad input changes nothing.
    """
    hold_key_lock(session)
    app = services.get_app(session, name)
    if app.state != "active":
        raise Conflict(f"app {name!r} is being deleted")
    rows = _rows(session, app)

    missing = [k for k in change.unset if k not in rows]
    if missing:
        raise NotFound(f"{name} has no env var {', '.join(missing)}")
    planned: list[tuple[EnvSet, bool, str]] = []
    for item in change.set:
        existing = rows.get(item.key)
        secret = item.secret if item.secret is not None else (existing.secret if existing else False)
        chosen = item.scope or (EnvScope(existing.scope) if existing else EnvScope.run)
        if secret and chosen != EnvScope.run:
            raise InvalidInput(
                f"{item.key} is secret, and secret values never go to builds (build args are "
                "visible in the image's history): use scope run"
            )
        planned.append((item, secret, str(chosen)))
    new_keys = {i.key for i in change.set} - rows.keys()
    total = len(rows) - len(change.unset) + len(new_keys)
    if total > MAX_VARS:
        raise InvalidInput(f"an app can have at most {MAX_VARS} env vars; this change would make {total}")

    now = utcnow()
    for item, secret, scope in planned:
        ciphertext = keyring.encrypt(item.value, secret=secret)
        _put(
            session,
            rows,
            app,
            key=item.key,
            ciphertext=ciphertext,
            secret=secret,
            scope=scope,
            actor=actor,
            now=now,
        )
    for key in change.unset:
        session.delete(rows[key])
    app.env_version += 1
    session.add(app)
    session.flush()

    restart = change.restart and app.current_deployment_id is not None
    parts = [f"{item.key} ({'secret, ' if secret else ''}{scope})" for item, secret, scope in planned]
    detail = "; ".join(
        p
        for p in (
            f"set {', '.join(parts)}" if parts else "",
            f"unset {', '.join(change.unset)}" if change.unset else "",
            "applied by a new release" if restart else "staged for the next deploy",
        )
        if p
    )
    services.record_event(session, actor=actor, action="env.change", app_name=name, detail=detail)
    job = services.request_release(session, app=app, actor=actor, trigger="env") if restart else None
    warnings = [
        BUILD_ARG_WARNING.format(key=item.key) for item, _s, scope in planned if scope != EnvScope.run
    ]
    return EnvChangeResult(
        app=name,
        changed=[item.key for item in change.set],
        removed=list(change.unset),
        staged=job is None,
        job=services.job_public(session, job) if job else None,
        warnings=warnings,
        env=[_public(r, keyring) for r in _rows(session, app).values()],
    )


# the .env format -----------------------------------------------------------------------


def parse_dotenv(text_: str) -> list[tuple[str, str]]:
    """Parse a .env file with python-dotenv's parser, strictly: a line it
    cannot read, a name without a value, an invalid or repeated name is an
    error naming the line (never quoting it: the line may hold a secret)."""
    if "\x00" in text_:
        raise InvalidInput("the .env file contains a NUL character")
    pairs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text_)):
        line = binding.original.line
        if binding.error:
            raise InvalidInput(f".env line {line} is not KEY=VALUE (or a comment)")
        if binding.key is None:
            continue  # blank line or comment
        if binding.value is None:
            raise InvalidInput(f".env line {line}: {binding.key} has no '=' and no value")
        try:
            check_env_key(binding.key)
        except ValueError as exc:
            raise InvalidInput(f".env line {line}: {exc}") from None
        if binding.key in seen:
            raise InvalidInput(f".env line {line}: {binding.key} is already set on line {seen[binding.key]}")
        problem = env_value_problem(binding.key, binding.value)
        if problem:
            raise InvalidInput(f".env line {line}: {problem}")
        seen[binding.key] = line
        pairs.append((binding.key, binding.value))
    if not pairs:
        raise InvalidInput("the .env file sets no variables")
    if len(pairs) > MAX_VARS:
        raise InvalidInput(f"the .env file sets {len(pairs)} variables; the limit is {MAX_VARS}")
    return pairs


def import_env(
    session: Session, *, name: str, body: EnvImport, actor: str, keyring: Keyring
) -> EnvChangeResult:
    pairs = parse_dotenv(body.dotenv)
    change = EnvChange(
        set=[EnvSet(key=k, value=v, secret=body.secret, scope=body.scope) for k, v in pairs],
        restart=body.restart,
    )
    return change_env(session, name=name, change=change, actor=actor, keyring=keyring)


def _quote(value: str) -> str:
    """Double-quote for python-dotenv, which decodes these escapes back."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def export_env(session: Session, *, name: str, keyring: Keyring) -> str:
    """The app's env as a .env file. Secrets appear only as commented-out,
    masked lines, so re-importing the file can never overwrite them."""
    app = services.get_app(session, name)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# env of {name}, exported {stamp} by paas", "# secret values are write-only and not exported"]
    for row in _rows(session, app).values():
        scope = "" if row.scope == EnvScope.run else f"  # scope: {row.scope}"
        if row.secret:
            lines.append(f"# {row.key}={MASK}  (secret)")
        else:
            lines.append(f"{row.key}={_quote(keyring.decrypt(row.value))}{scope}")
    return "\n".join(lines) + "\n"


# releases (agent side) --------------------------------------------------------------------


def snapshot_env(session: Session, app: App) -> list[dict[str, Any]]:
    """The app's env as a release keeps it: ciphertexts, not values."""
    return [
        {"key": r.key, "scope": r.scope, "secret": r.secret, "value": r.value}
        for r in _rows(session, app).values()
    ]


def restore_snapshot(session: Session, app: App, snapshot: list[dict[str, Any]], *, actor: str) -> None:
    """Make the app's env what a release's snapshot says (for a rollback):
    ciphertexts are copied as they are, so web needs no key to open them."""
    rows = _rows(session, app)
    wanted = {item["key"] for item in snapshot}
    for key, row in rows.items():
        if key not in wanted:
            session.delete(row)
    now = utcnow()
    for item in snapshot:
        _put(
            session,
            rows,
            app,
            key=item["key"],
            ciphertext=item["value"],
            secret=item["secret"],
            scope=item["scope"],
            actor=actor,
            now=now,
        )
    app.env_version += 1
    session.add(app)


@dataclass(frozen=True)
class OpenedEnv:
    """A snapshot in clear, held in the agent's memory only."""

    run: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    secret_keys: frozenset[str] = frozenset()


def open_snapshot(snapshot: list[dict[str, Any]], keyring: Keyring) -> OpenedEnv:
    run: dict[str, str] = {}
    build: dict[str, str] = {}
    for item in snapshot:
        value = keyring.decrypt(item["value"])
        if item["scope"] in (EnvScope.run, EnvScope.both):
            run[item["key"]] = value
        if item["scope"] in (EnvScope.build, EnvScope.both) and not item["secret"]:
            build[item["key"]] = value  # secrets never become build args, whatever the row says
    secret_keys = frozenset(i["key"] for i in snapshot if i["secret"])
    return OpenedEnv(run=run, build_args=build, secret_keys=secret_keys)


# keys ------------------------------------------------------------------------------------


def encrypt_plain_webhook_secrets(engine: Engine, keyring: Keyring) -> int:
    """Encrypt webhook secrets stored before encryption existed (migration 0002)."""
    with session_scope(engine) as session:
        hold_key_lock(session)
        count = 0
        for app in session.exec(select(App)).all():
            if not app.webhook_secret.startswith(("f1:", "s1:")):
                app.webhook_secret = keyring.encrypt(app.webhook_secret)
                session.add(app)
                count += 1
    return count


@dataclass(frozen=True)
class RotationReport:
    env_values: int
    release_snapshots: int
    webhook_secrets: int


def rotate_keys(engine: Engine, keys_dir: Path, *, web_user: str = "") -> RotationReport:
    """Re-encrypt every stored value under new keys, while web and agent run.

    1. Write new keys alongside the old (old ones still open everything).
       Every process re-reads the files before it encrypts, and encrypts with
       the newest key from here on.
    2. Holding the key lock, re-encrypt every value, release snapshot and
       webhook secret under the new keys; commit.
    3. Drop the old keys from the files.
    A crash before 3 leaves both generations on disk (still correct); run
    rotate again.
    """
    old = load_keys(keys_dir, private=True)
    new = generate_keys()
    both = KeyMaterial(fernet=new.fernet + old.fernet, public=new.public, private=new.private + old.private)
    write_keys(keys_dir, both, web_user=web_user)
    opener = Keyring.from_material(both)
    target = Keyring.from_material(new)

    with session_scope(engine) as session:
        hold_key_lock(session, exclusive=True)
        env_count = 0
        for row in session.exec(select(EnvVar)).all():
            row.value = opener.reencrypt(row.value, target)
            session.add(row)
            env_count += 1
        snap_count = 0
        for dep in session.exec(select(Deployment)).all():
            if dep.env:
                dep.env = [{**item, "value": opener.reencrypt(item["value"], target)} for item in dep.env]
                session.add(dep)
                snap_count += 1
        hook_count = 0
        for app in session.exec(select(App)).all():
            app.webhook_secret = opener.reencrypt(app.webhook_secret, target)
            session.add(app)
            hook_count += 1
    write_keys(keys_dir, new, web_user=web_user)
    log.info(
        "keys rotated: %d env values, %d release snapshots, %d webhook secrets",
        env_count,
        snap_count,
        hook_count,
    )
    return RotationReport(env_count, snap_count, hook_count)
