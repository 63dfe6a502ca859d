"""The app every FastAPI deployment guide ends with, as the database tests
and benchmarks push it: SQLModel over PostgreSQL, an Alembic migration run
by ``prestart.sh`` before traffic, the connection read from separate
variables (``POSTGRES_SERVER``, ``POSTGRES_PASSWORD`` … as the official
full-stack template does); and a counter in Redis (``counter_files``).

``files(version)`` is the repository (its migration script is
``scripts/prestart.sh``, where paas does not look: the app's release command
names it); ``postgres_bindings(db)`` the env that binds database ``db`` to
it (no ``DATABASE_URL``).
"""

from __future__ import annotations

from testkit import sample_app

DOCKERFILE = sample_app.DOCKERFILE  # the same image recipe; only requirements and code differ

REQUIREMENTS = """\
fastapi>=0.110,<1
uvicorn>=0.29,<1
sqlmodel>=0.0.22,<0.1
alembic>=1.13,<2
psycopg[binary]>=3.1,<4
redis>=5,<7
"""

PRESTART = """\
#!/bin/sh
set -e
echo "prestart: migrating"
alembic upgrade head
"""

ALEMBIC_INI = """\
[alembic]
script_location = migrations
prepend_sys_path = .
"""

ENV_PY = """\
from alembic import context
from sqlalchemy import create_engine

from db import url

with create_engine(url()).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

MIGRATION = """\
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "item",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.String(200), nullable=False),
    )
"""

DB_PY = """\
import os


def url() -> str:
    return (
        "postgresql+psycopg://{POSTGRES_USER}:{POSTGRES_PASSWORD}@{POSTGRES_SERVER}:{POSTGRES_PORT}/{POSTGRES_DB}"
    ).format(**os.environ)
"""

MAIN = """\
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import Field, Session, SQLModel, create_engine, select

from db import url

VERSION = "{version}"
engine = create_engine(url(), pool_pre_ping=True, pool_size=2, max_overflow=2)
app = FastAPI()


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    text: str


@app.post("/items")
def add(body: dict):
    with Session(engine) as session:
        item = Item(text=str(body["text"]))
        session.add(item)
        session.commit()
        return {{"id": item.id}}


@app.get("/items")
def items():
    with Session(engine) as session:
        ids = session.exec(select(Item.id)).all()
        return {{"count": len(ids), "ids": sorted(ids), "version": VERSION}}


@app.get("/healthz")
def healthz():
    with Session(engine) as session:
        session.exec(select(func.count()).select_from(Item)).one()
    return {{"ok": True, "version": VERSION}}
"""


def postgres_bindings(db: str) -> tuple[dict[str, str], dict[str, str]]:
    """The env binding database ``db`` by its parts: (general values, secret values).
    POSTGRES_PASSWORD is secret; the rest are general, each only a reference."""
    general = {
        "POSTGRES_SERVER": f"${{{db}.HOSTNAME}}",
        "POSTGRES_PORT": f"${{{db}.PORT}}",
        "POSTGRES_USER": f"${{{db}.USERNAME}}",
        "POSTGRES_DB": f"${{{db}.DATABASE}}",
    }
    return general, {"POSTGRES_PASSWORD": f"${{{db}.PASSWORD}}"}


def files(version: str) -> dict[str, str]:
    """The repository at ``version`` (shown by GET /items and /healthz)."""
    return {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": REQUIREMENTS,
        "scripts/prestart.sh": PRESTART,
        "alembic.ini": ALEMBIC_INI,
        "migrations/env.py": ENV_PY,
        "migrations/versions/0001_items.py": MIGRATION,
        "db.py": DB_PY,
        "main.py": MAIN.format(version=version),
    }


COUNTER_MAIN = """\
import os

import redis
from fastapi import FastAPI

app = FastAPI()
store = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.post("/count")
def count():
    return {"count": store.incr("hits")}


@app.get("/count")
def read_count():
    return {"count": int(store.get("hits") or 0)}


@app.get("/")
def root():
    return {"ok": True}
"""


def counter_files() -> dict[str, str]:
    """An app that counts in Redis, bound by ``REDIS_URL``."""
    return {"Dockerfile": DOCKERFILE, "requirements.txt": REQUIREMENTS, "main.py": COUNTER_MAIN}


RELEASE_COMMAND = "sh scripts/prestart.sh"  # the app's --release-command
