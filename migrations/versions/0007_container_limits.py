"""per-app container limits

An app may set the memory, CPUs and processes each of its containers gets;
empty or null: the server's PAAS_APP_MEMORY, PAAS_APP_CPUS, PAAS_APP_PIDS.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("memory", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("cpus", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pids", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("pids")
        batch_op.drop_column("cpus")
        batch_op.drop_column("memory")
