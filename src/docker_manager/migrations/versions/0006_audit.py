"""The audit log, and the request that started each task.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(32), nullable=True),
        sa.Column("token_name", sa.String(100), nullable=True),
        sa.Column("scopes", sa.String(200), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=True),
        sa.Column("target", sa.JSON, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_audit_ts", "audit_log", ["ts", "id"])
    op.create_index("ix_audit_token", "audit_log", ["token_id"])
    op.create_index("ix_audit_app", "audit_log", ["app_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("request_id")
