"""A release command per app, for a repository whose migration script is not where paas looks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # run again when alembic_version was set back (web can write it): nothing twice
    if "release_command" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("app")}:
        return
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("release_command", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("release_command")
