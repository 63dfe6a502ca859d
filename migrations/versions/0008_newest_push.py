"""the newest push accepted from GitHub

An app remembers repository.pushed_at and the commit of the newest push it
accepted; an older push, or the same one again under a new delivery id, is
a replay or an out-of-order delivery: recorded, not deployed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_pushed_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "last_pushed_commit",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("last_pushed_commit")
        batch_op.drop_column("last_pushed_at")
