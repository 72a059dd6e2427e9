"""Docker objects this service created: ownership is decided by this record, not by labels.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owned_objects",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("ref", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("app_id", sa.String(64), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("host_level", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "service_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_meta")
    op.drop_table("owned_objects")
