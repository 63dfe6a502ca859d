"""Databases beside apps: PostgreSQL and Redis containers the agent runs, and the databases each env var binds

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # run again when alembic_version was set back (web can write it): nothing twice
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("database"):
        _create_database_table()
    if "databases" not in {c["name"] for c in inspector.get_columns("envvar")}:
        with op.batch_alter_table("envvar", schema=None) as batch_op:
            batch_op.add_column(sa.Column("databases", sa.JSON(), nullable=False, server_default="[]"))


def _create_database_table() -> None:
    op.create_table(
        "database",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("engine", sqlmodel.AutoString(length=20), nullable=False),
        sa.Column("version", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("image", sqlmodel.AutoString(length=300), nullable=False),
        sa.Column("image_digest", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("server_version", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("state", sqlmodel.AutoString(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column("password", sa.Text(), nullable=False, server_default=""),
        sa.Column("username", sqlmodel.AutoString(length=63), nullable=False),
        sa.Column("database", sqlmodel.AutoString(length=63), nullable=False),
        sa.Column("memory", sqlmodel.AutoString(length=20), nullable=False),
        sa.Column("container", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("volume", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("network", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("exposed_port", sa.Integer(), nullable=True),
        sa.Column("upgraded_from", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("last_backup_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_backup_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_by", sqlmodel.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_database_name"), "database", ["name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("envvar", schema=None) as batch_op:
        batch_op.drop_column("databases")
    op.drop_index(op.f("ix_database_name"), table_name="database")
    op.drop_table("database")
