"""process types, scale and Python builds

Apps get a run command, a base image for builds without a Dockerfile and a
count of containers per process type; a release records the host:port of
each of its web containers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "run_command",
                sqlmodel.sql.sqltypes.AutoString(length=2000),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(
            sa.Column(
                "base_image", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False, server_default=""
            )
        )
        batch_op.add_column(sa.Column("scale", sa.JSON(), nullable=False, server_default="{}"))

    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upstreams", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.drop_column("upstreams")

    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("scale")
        batch_op.drop_column("base_image")
        batch_op.drop_column("run_command")
