"""Env vars: the service functions behind the API, CLI and UI, and the .env
format. A release's snapshot is paas/env_snapshots.py; key rotation is
paas/key_rotation.py.

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
from datetime import UTC, datetime

from dotenv.parser import parse_stream
from sqlmodel import Session, select

from paas import queue, services
from paas.bindings import references
from paas.crypto import Keyring, env_purpose
from paas.db import hold_key_lock
from paas.env_snapshots import put_row, rows_of
from paas.errors import InvalidInput, NotFound
from paas.models import App, Database, DatabaseState, EnvScope, EnvVar, Job, utcnow
from paas.payloads import MAX_TEXT
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
    "BUILD_MOUNT_NOTE",
    "change_env",
    "export_env",
    "import_env",
    "list_env",
    "parse_dotenv",
]

log = logging.getLogger("paas.env")

MASK = "********"
BUILD_ARG_WARNING = (
    "{key} is passed to builds as a build arg: build args are visible to anyone who can "
    "read the image's history (docker history); keep credentials secret (--secret)"
)
BUILD_MOUNT_NOTE = (
    "{key} is a build secret: a Dockerfile reads it with `RUN --mount=type=secret,id={key}` "
    "(at /run/secrets/{key}); it is in no layer and no build arg"
)


def bindable_databases(session: Session) -> set[str]:
    """The databases an env value may bind: every one but those on their way out."""
    gone = (DatabaseState.retired, DatabaseState.destroying)
    return {d.name for d in session.exec(select(Database)).all() if d.state not in gone}


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
    return [_public(r, keyring) for r in rows_of(session, app).values()]


# changing ------------------------------------------------------------------------------


def change_env(
    session: Session, *, name: str, change: EnvChange, actor: str, keyring: Keyring
) -> EnvChangeResult:
    """Apply sets and unsets together: all or nothing, one release (or staged).

    Every check runs before anything is written, so bad input changes nothing.
    """
    hold_key_lock(session)
    app = services.get_app(session, name)
    services.check_active(app)
    rows = rows_of(session, app)

    missing = [k for k in change.unset if k not in rows]
    if missing:
        raise NotFound(f"{name} has no env var {', '.join(missing)}")
    planned: list[tuple[EnvSet, bool, str, list[str]]] = []
    usable = bindable_databases(session)
    for item in change.set:
        existing = rows.get(item.key)
        secret = item.secret if item.secret is not None else (existing.secret if existing else False)
        chosen = item.scope or (EnvScope(existing.scope) if existing else EnvScope.run)
        bound = references(item.value)
        if bound and chosen != EnvScope.run:
            raise InvalidInput(
                f"{item.key} binds database {bound[0]!r}: bindable variables are resolved when the "
                "app is released, not at build time; use scope run"
            )
        for db_name in bound:
            if db_name not in usable:
                raise InvalidInput(
                    f"{item.key} binds database {db_name!r}, which does not exist (paas databases list)"
                )
        planned.append((item, secret, str(chosen), bound))
    # a change that a build reads (set in build or both scope, or was) needs a build, not a
    # release of the image built with the old value
    rebuild = any(scope != EnvScope.run for _i, _s, scope, _b in planned) or any(
        rows[k].scope != EnvScope.run for k in [*change.unset, *(i.key for i in change.set if i.key in rows)]
    )
    new_keys = {i.key for i in change.set} - rows.keys()
    total = len(rows) - len(change.unset) + len(new_keys)
    if total > MAX_VARS:
        raise InvalidInput(f"an app can have at most {MAX_VARS} env vars; this change would make {total}")

    now = utcnow()
    for item, secret, scope, bound in planned:
        ciphertext = keyring.encrypt(item.value, secret=secret, purpose=env_purpose(app.name, item.key))
        put_row(
            session,
            rows,
            app,
            key=item.key,
            ciphertext=ciphertext,
            secret=secret,
            scope=scope,
            actor=actor,
            now=now,
            databases=bound,
        )
    for key in change.unset:
        session.delete(rows[key])
    app.env_version += 1
    session.add(app)
    session.flush()

    # with nothing live, a deploy in progress may have taken the env before this change: a
    # release follows it, so that what goes live has this change ("staged" means --no-restart)
    live = app.current_deployment_id is not None
    restart = change.restart and (live or queue.release_in_progress(session, app.id) is not None)
    parts = [f"{item.key} ({'secret, ' if secret else ''}{scope})" for item, secret, scope, _b in planned]
    detail = "; ".join(
        p
        for p in (
            f"set {', '.join(parts)}" if parts else "",
            f"unset {', '.join(change.unset)}" if change.unset else "",
            ("applied by a new build" if rebuild else "applied by a new release")
            if restart
            else "staged for the next deploy",
        )
        if p
    )
    services.record_event(session, actor=actor, action="env.change", app_name=name, detail=detail)
    job = None
    if restart and rebuild:
        job = _rebuild(session, app, actor)
    elif restart:
        job = services.request_release(session, app=app, actor=actor, trigger="env", live=live)
    warnings = [
        (BUILD_MOUNT_NOTE if secret else BUILD_ARG_WARNING).format(key=item.key)
        for item, secret, scope, _b in planned
        if scope != EnvScope.run
    ]
    return EnvChangeResult(
        app=name,
        changed=[item.key for item in change.set],
        removed=list(change.unset),
        staged=job is None,
        job=services.job_public(session, job) if job else None,
        warnings=warnings,
        env=[_public(r, keyring) for r in rows_of(session, app).values()],
    )


def _rebuild(session: Session, app: App, actor: str) -> Job:
    """A deploy that builds again what is live (its commit, pinned or not),
    or, with nothing live yet, the branch a deploy in progress is building."""
    live = services.live_release(session, app)
    if live is not None and live.commit:
        return services.request_deploy(
            session,
            app=app,
            actor=actor,
            trigger="env",
            ref=live.ref or None,
            commit=live.commit,
            message=live.commit_message[:MAX_TEXT],
        )
    return services.request_deploy(session, app=app, actor=actor, trigger="env")


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
    for row in rows_of(session, app).values():
        scope = "" if row.scope == EnvScope.run else f"  # scope: {row.scope}"
        if row.secret:
            lines.append(f"# {row.key}={MASK}  (secret)")
        else:
            lines.append(f"{row.key}={_quote(keyring.decrypt(row.value))}{scope}")
    return "\n".join(lines) + "\n"
