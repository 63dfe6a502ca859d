"""GitHub statuses and notifications: a sealed GitHub token per app, notification targets, the agent's outbox

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_token", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("github_repo", sqlmodel.AutoString(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "github_environment",
                sqlmodel.AutoString(length=100),
                nullable=False,
                server_default="production",
            )
        )
    op.create_table(
        "notifytarget",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("masked", sqlmodel.AutoString(length=100), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_by", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("last_sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("last_error_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_notifytarget_app_id"), "notifytarget", ["app_id"], unique=False)
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.AutoString(length=10), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("app_name", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("event", sqlmodel.AutoString(length=30), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.AutoString(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["notifytarget.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_notice_app_id"), "notice", ["app_id"], unique=False)
    op.create_index(op.f("ix_notice_job_id"), "notice", ["job_id"], unique=False)
    op.create_index("ix_notice_state_next", "notice", ["state", "next_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_notice_state_next", table_name="notice")
    op.drop_index(op.f("ix_notice_job_id"), table_name="notice")
    op.drop_index(op.f("ix_notice_app_id"), table_name="notice")
    op.drop_table("notice")
    op.drop_index(op.f("ix_notifytarget_app_id"), table_name="notifytarget")
    op.drop_table("notifytarget")
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("github_environment")
        batch_op.drop_column("github_repo")
        batch_op.drop_column("github_token")
