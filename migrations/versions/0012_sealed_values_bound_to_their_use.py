"""sealed values bound to their use

Values sealed to the agent's key pair (secret env values and the release
snapshots that keep them, GitHub tokens, notification URLs) were ``s1:``, all
alike: a taken-over web could copy one into a secret env var of an app whose
repository it controls, and the agent would open it there (issue 27). This
reseals each ``s1:`` value as ``s2:``, its plaintext naming the field it lies
in (paas/crypto.py: ``env:<app>:<KEY>``, ``github-token:<app>``,
``notify-url:<app or *>:<target id>``); the agent opens nothing else. No
schema change.

It needs the agent's private key, so it runs as root (``paas migrate``, as
install.sh runs it, and the agent and ``paas up`` at start). Where the key
cannot be read (web starting as its own user), a database with no ``s1:``
value migrates as usual; one with any stops here, naming the key file, and
stays at 0011: the agent would refuse those values, so going on would break
every deploy of an app with a secret. On a database that already has an
``s2:`` value (the migration run again: web can write ``alembic_version``)
no ``s1:`` value is bound, whatever field it was put in. An ``s1:`` value that no key opens (its
key rotated away, or damaged) or that lies under a name no purpose can carry
is left as it is, named in a warning: it opened nowhere before and is refused
now. A value found in more than one field (a GitHub token also in an env var)
is named in a warning too: it may have been copied there through this hole,
and the new binding would keep it; replace it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from paas.crypto import (
    DecryptError,
    Keyring,
    KeysMissing,
    Purpose,
    describe_purpose,
    env_purpose,
    github_token_purpose,
    notify_url_purpose,
)

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("paas.migrate")

UNBOUND = "s1:"
BOUND = "s2:"

app_table = sa.table(
    "app", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("github_token", sa.Text)
)
envvar_table = sa.table(
    "envvar",
    sa.column("id", sa.Integer),
    sa.column("app_id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("value", sa.Text),
)
deployment_table = sa.table(
    "deployment",
    sa.column("id", sa.Integer),
    sa.column("app_id", sa.Integer),
    sa.column("version", sa.Integer),
    sa.column("env", sa.JSON),
)
target_table = sa.table(
    "notifytarget", sa.column("id", sa.Integer), sa.column("app_id", sa.Integer), sa.column("url", sa.Text)
)


class _Sealed:
    """One ``s1:`` value: where it lies, what it is to be sealed for, and how to store it again."""

    def __init__(self, where: str, ciphertext: str, purpose: Callable[[], Purpose]) -> None:
        self.where, self.ciphertext, self.purpose = where, ciphertext, purpose
        self.resealed: str | None = None


def _unbound(value: object) -> bool:
    return isinstance(value, str) and value.startswith(UNBOUND)


def _bound(value: object) -> bool:
    return isinstance(value, str) and value.startswith(BOUND)


def _keyring(count: int) -> Keyring:
    settings = context.config.attributes.get("settings")
    if settings is None:
        from paas.settings import load_settings

        settings = load_settings()
    try:
        return Keyring(settings.keys_dir, private=True)
    except KeysMissing as exc:
        raise KeysMissing(
            f"migration 0012 must reseal {count} sealed value(s) (secret env values, GitHub tokens, "
            f"notification URLs) with the agent's private key, and {exc}: run `paas migrate` as root "
            "(the database stays as it was until then)"
        ) from None


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError(
            "migration 0012 reseals values with the agent's private key: it cannot run as --sql"
        )
    conn = op.get_bind()
    names: dict[int, str] = {
        row.id: row.name for row in conn.execute(sa.select(app_table.c.id, app_table.c.name))
    }

    bound = 0  # values sealed since this migration first ran
    apps: dict[int, _Sealed] = {}
    for row in conn.execute(sa.select(app_table.c.id, app_table.c.name, app_table.c.github_token)):
        bound += _bound(row.github_token)
        if _unbound(row.github_token):
            apps[row.id] = _Sealed(
                f"the GitHub token of app {row.name}",
                row.github_token,
                partial(github_token_purpose, row.name),
            )
    envvars: dict[int, _Sealed] = {}
    for row in conn.execute(sa.select(envvar_table)):
        bound += _bound(row.value)
        if _unbound(row.value):
            app = names.get(row.app_id, "")
            envvars[row.id] = _Sealed(
                f"env var {row.key!r} of app {app}", row.value, partial(env_purpose, app, row.key)
            )
    snapshots: dict[int, tuple[list[Any], dict[int, _Sealed]]] = {}
    for row in conn.execute(sa.select(deployment_table)):
        items = row.env if isinstance(row.env, list) else []
        bound += sum(isinstance(item, dict) and _bound(item.get("value")) for item in items)
        app = names.get(row.app_id, "")
        sealed = {
            i: _Sealed(
                f"env var {item.get('key')!r} in release v{row.version} of app {app}",
                item["value"],
                partial(env_purpose, app, item["key"] if isinstance(item.get("key"), str) else ""),
            )
            for i, item in enumerate(items)
            if isinstance(item, dict) and _unbound(item.get("value"))
        }
        if sealed:
            snapshots[row.id] = (items, sealed)
    targets: dict[int, _Sealed] = {}
    for row in conn.execute(sa.select(target_table)):
        bound += _bound(row.url)
        if _unbound(row.url):
            whose = None if row.app_id is None else names.get(row.app_id, "")
            targets[row.id] = _Sealed(
                f"the URL of notification target {row.id}",
                row.url,
                partial(notify_url_purpose, row.id, whose),
            )
    found: list[_Sealed] = [*apps.values(), *envvars.values(), *targets.values()]
    found += [s for _items, sealed in snapshots.values() for s in sealed.values()]
    if not found:
        return
    if bound:
        # Web can write the alembic_version row, so this can run again after the upgrade, with
        # s1: values it kept from before put in fields of its choosing: binding them now would
        # launder them. An upgraded database has no s1: value of its own; leave these unbound.
        log.warning(
            "migration 0012 ran again on a database that already has %d bound value(s): left %d "
            "unbound value(s) as they are (the agent refuses them): %s",
            bound,
            len(found),
            "; ".join(item.where for item in found),
        )
        return

    keyring = _keyring(len(found))
    purposes_of: dict[bytes, set[str]] = defaultdict(set)
    where_of: dict[bytes, list[str]] = defaultdict(list)
    for item in found:
        try:
            purpose = item.purpose()
            value = keyring.open_unbound(item.ciphertext)
        except DecryptError as exc:
            log.warning("migration 0012 left %s unbound (the agent refuses it): %s", item.where, exc)
            continue
        item.resealed = keyring.encrypt(value, secret=True, purpose=purpose)
        digest = hashlib.sha256(value.encode("utf-8")).digest()
        purposes_of[digest].add(purpose)
        where_of[digest].append(item.where)
    for digest, purposes in purposes_of.items():
        if len(purposes) > 1:
            log.warning(
                "migration 0012: one sealed value lies in %s (%s): if it was not put in each by hand, it "
                "was copied (issue 27): replace it where it does not belong, and revoke it",
                ", ".join(sorted(describe_purpose(p) for p in purposes)),
                "; ".join(where_of[digest]),
            )

    for app_id, item in apps.items():
        if item.resealed:
            conn.execute(
                app_table.update().where(app_table.c.id == app_id).values(github_token=item.resealed)
            )
    for envvar_id, item in envvars.items():
        if item.resealed:
            conn.execute(
                envvar_table.update().where(envvar_table.c.id == envvar_id).values(value=item.resealed)
            )
    for target_id, item in targets.items():
        if item.resealed:
            conn.execute(
                target_table.update().where(target_table.c.id == target_id).values(url=item.resealed)
            )
    for dep_id, (items, sealed) in snapshots.items():
        env = [
            {**entry, "value": sealed[i].resealed} if i in sealed and sealed[i].resealed else entry
            for i, entry in enumerate(items)
        ]
        conn.execute(deployment_table.update().where(deployment_table.c.id == dep_id).values(env=env))
    log.warning(
        "migration 0012 bound %d sealed value(s) to their use", sum(1 for item in found if item.resealed)
    )


def downgrade() -> None:
    """Nothing to undo in the schema. The values stay ``s2:``: code from before
    0012 cannot open them, and unbinding them would reopen the hole."""
