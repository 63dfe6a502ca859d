"""domains and certificates

Every hostname paas serves gets a row with its certificate's state; apps can
opt in to HSTS.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("hostname", sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("cert_state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("cert_expires_at", sa.DateTime(), nullable=True),
        sa.Column("cert_error", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_app_id"), ["app_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_domain_hostname"), ["hostname"], unique=True)

    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hsts", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("hsts")
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_hostname"))
        batch_op.drop_index(batch_op.f("ix_domain_app_id"))
    op.drop_table("domain")
