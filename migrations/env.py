"""Alembic environment: the URL comes from paas settings (never alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine
from sqlmodel import SQLModel

import paas.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from paas.db import make_engine
from paas.settings import load_settings

config = context.config
target_metadata = SQLModel.metadata


def _engine() -> Engine:
    settings = config.attributes.get("settings") or load_settings()
    return make_engine(settings)


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,  # SQLite needs batch mode to alter tables
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
