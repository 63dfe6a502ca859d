"""The Dockerfile stage each app builds (issue 31: --target per app)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # run again when alembic_version was set back (web can write it): nothing twice
    if "build_target" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("app")}:
        return
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("build_target", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("build_target")
