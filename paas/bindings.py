"""Bindable variables: an env value that names a part of a database,
``${NAME.PART}``, as App Platform's ``${db.DATABASE_URL}`` does (pure).

Web reads which databases a value binds when the value is set (it sees the
value then, secret or not) and keeps their names beside the ciphertext;
the agent resolves the references at release time, with the password only
it can open, so the value an app runs with never passes through web.

Only the parts below make a reference: any other ``${...}`` in a value is
the value's own text and stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_KEY",
    "ENGINES",
    "PARTS",
    "PASSWORD",
    "PORTS",
    "Endpoint",
    "account_for",
    "image_for",
    "names_for",
    "references",
    "resolve",
]

PARTS = ("DATABASE_URL", "HOSTNAME", "PORT", "USERNAME", "PASSWORD", "DATABASE")
# the name as paas/schemas.py's check_app_name allows it (a DNS label); checked there too
_REFERENCE = re.compile(r"\$\{([a-z][a-z0-9-]{0,29})\.(" + "|".join(PARTS) + r")\}")

DEFAULT_KEY = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}  # `attach` without --as
ENGINES = ("postgres", "redis")
PORTS = {"postgres": 5432, "redis": 6379}
_SHORT = {"postgres": "pg", "redis": "redis"}


def names_for(name: str, engine: str, version: str) -> tuple[str, str, str]:
    """(container, volume, network) of database ``name`` at ``version``.
    ``paasdb-`` begins no name an app's things have, and the major version
    is in the container's, so an upgrade's new instance sits beside the old.
    The container's name is also its hostname on the network."""
    major = version.split(".")[0]
    container = f"paasdb-{name}-{_SHORT[engine]}{major}"
    return container, f"{container}-data", f"paasdb-{name}"


def image_for(repository: str, version: str, variant: str) -> str:
    """The official images' tag scheme: ``postgres:17-bookworm``, ``redis:7.2-bookworm``."""
    return f"{repository}:{version}-{variant}"


def account_for(name: str, engine: str) -> tuple[str, str]:
    """(username, database) an app connects with: postgres's superuser and a
    database named after it; Redis's default user and its database 0."""
    return ("postgres", name.replace("-", "_")) if engine == "postgres" else ("default", "0")


@dataclass(frozen=True)
class Endpoint:
    """How an attached app reaches a database, the password in clear (the
    agent's memory only)."""

    engine: str
    network: str
    hostname: str
    port: int
    username: str
    password: str = field(repr=False)
    database: str = ""

    def url(self) -> str:
        # the password is URL-safe by construction (agent/databases.py makes it), as are the rest
        scheme = "postgresql" if self.engine == "postgres" else "redis"
        return f"{scheme}://{self.username}:{self.password}@{self.hostname}:{self.port}/{self.database}"

    def part(self, name: str) -> str:
        return {
            "DATABASE_URL": self.url(),
            "HOSTNAME": self.hostname,
            "PORT": str(self.port),
            "USERNAME": self.username,
            "PASSWORD": self.password,
            "DATABASE": self.database,
        }[name]


PASSWORD = re.compile(r"[A-Za-z0-9_-]{32}")  # what the agent makes: secrets.token_urlsafe(24)


def references(value: str) -> list[str]:
    """The databases ``value`` binds, each once, in order of appearance."""
    seen: dict[str, None] = {}
    for match in _REFERENCE.finditer(value):
        seen.setdefault(match[1], None)
    return list(seen)


def resolve(value: str, endpoints: Mapping[str, Endpoint]) -> str:
    """``value`` with every reference replaced by its part; a database not
    in ``endpoints`` is a KeyError naming it (the caller says which variable)."""
    return _REFERENCE.sub(lambda m: endpoints[m[1]].part(m[2]), value)
