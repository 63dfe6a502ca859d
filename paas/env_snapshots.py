"""An app's env rows, and the snapshot each release keeps of them: the
ciphertexts as stored (``snapshot_env``), copied back for a rollback
(``restore_snapshot``), and opened in the agent's memory only
(``open_snapshot``), each secret only as the variable of the app it was
sealed for (paas/crypto.py ``env_purpose``). Imports no service module, so
services (rollback) and envvars (changes) can both use it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from paas.bindings import Endpoint, references, resolve
from paas.crypto import DecryptError, Keyring, env_purpose
from paas.errors import InvalidInput
from paas.models import App, EnvScope, EnvVar, utcnow

__all__ = [
    "OpenedEnv",
    "bind_databases",
    "build_secret_keys",
    "open_snapshot",
    "put_row",
    "restore_snapshot",
    "rows_of",
    "snapshot_env",
]


def rows_of(session: Session, app: App) -> dict[str, EnvVar]:
    rows = session.exec(select(EnvVar).where(EnvVar.app_id == app.id).order_by(col(EnvVar.key))).all()
    return {r.key: r for r in rows}


def put_row(
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
    databases: list[str],
) -> None:
    """Create or replace one variable; ``ciphertext`` is already encrypted,
    ``databases`` are those its value binds (paas/bindings.py)."""
    row = rows.get(key) or EnvVar(app_id=app.id, key=key, value="")  # type: ignore[arg-type]
    row.value, row.secret, row.scope = ciphertext, secret, scope
    row.databases = list(databases)
    row.updated_at, row.updated_by = now, actor
    session.add(row)


def snapshot_env(session: Session, app: App) -> list[dict[str, Any]]:
    """The app's env as a release keeps it: ciphertexts, not values."""
    return [
        {"key": r.key, "scope": r.scope, "secret": r.secret, "value": r.value, "databases": list(r.databases)}
        for r in rows_of(session, app).values()
    ]


def restore_snapshot(session: Session, app: App, snapshot: list[dict[str, Any]], *, actor: str) -> None:
    """Make the app's env what a release's snapshot says (for a rollback):
    ciphertexts are copied as they are, so web needs no key to open them."""
    rows = rows_of(session, app)
    wanted = {item["key"] for item in snapshot}
    for key, row in rows.items():
        if key not in wanted:
            session.delete(row)
    now = utcnow()
    for item in snapshot:
        put_row(
            session,
            rows,
            app,
            key=item["key"],
            ciphertext=item["value"],
            secret=item["secret"],
            scope=item["scope"],
            actor=actor,
            now=now,
            databases=[d for d in item.get("databases", []) if isinstance(d, str)],
        )
    app.env_version += 1
    session.add(app)


@dataclass(frozen=True)
class OpenedEnv:
    """A snapshot in clear, held in the agent's memory only."""

    run: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    # secret values of build or both scope: BuildKit secrets (`RUN --mount=type=secret,id=KEY`),
    # never build args, so that no layer and no `docker history` holds them
    build_secrets: dict[str, str] = field(default_factory=dict)
    secret_keys: frozenset[str] = frozenset()
    networks: tuple[str, ...] = ()  # the bound databases' networks, which every container joins

    def bound(self) -> frozenset[str]:
        """The databases the run values name (paas/bindings.py), resolved or not yet."""
        return frozenset(name for value in self.run.values() for name in references(value))


def bind_databases(env: OpenedEnv, endpoints: Mapping[str, Endpoint]) -> OpenedEnv:
    """``env`` with every ``${NAME.PART}`` in its run values resolved; a
    database missing from ``endpoints`` is an :class:`InvalidInput` naming
    the variable and the database (never the value)."""
    run: dict[str, str] = {}
    for key, value in env.run.items():
        for name in references(value):
            if name not in endpoints:
                raise InvalidInput(
                    f"env var {key} binds database {name!r}, which does not exist or is not ready "
                    "(paas databases list)"
                )
        run[key] = resolve(value, endpoints)
    networks = sorted({endpoints[name].network for name in env.bound()})
    return replace(env, run=run, networks=tuple(networks))


def open_snapshot(snapshot: list[dict[str, Any]], keyring: Keyring, *, app: str) -> OpenedEnv:
    """Open ``app``'s snapshot: a sealed value opens only as the variable of
    ``app`` it was sealed for (a :class:`DecryptError` naming it otherwise)."""
    run: dict[str, str] = {}
    build: dict[str, str] = {}
    build_secrets: dict[str, str] = {}
    for item in snapshot:
        purpose = env_purpose(app, item["key"])
        if not isinstance(item["value"], str):
            raise DecryptError(f"env var {item['key']} of app {app} holds no ciphertext")
        value = keyring.decrypt(item["value"], purpose=purpose)
        if item["scope"] in (EnvScope.run, EnvScope.both):
            run[item["key"]] = value
        if item["scope"] in (EnvScope.build, EnvScope.both):
            # secrets never become build args: a build reads them from /run/secrets only
            (build_secrets if item["secret"] else build)[item["key"]] = value
    secret_keys = frozenset(i["key"] for i in snapshot if i["secret"])
    return OpenedEnv(run=run, build_args=build, build_secrets=build_secrets, secret_keys=secret_keys)


def build_secret_keys(rows: Mapping[str, EnvVar]) -> frozenset[str]:
    """The names of an app's build secrets (no value is opened)."""
    return frozenset(k for k, r in rows.items() if r.secret and r.scope in (EnvScope.build, EnvScope.both))
