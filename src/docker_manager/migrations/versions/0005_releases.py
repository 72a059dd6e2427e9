"""Releases: every successful deploy of an app, with what is needed to run it again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("origin_task_id", sa.String(64), nullable=True),
        sa.Column("image_id", sa.String(80), nullable=False),
        sa.Column("tag", sa.Text, nullable=True),
        sa.Column("container_id", sa.String(80), nullable=True),
        sa.Column("container_name", sa.String(255), nullable=True),
        sa.Column("host_port", sa.Integer, nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("env_sealed", sa.Text, nullable=True),
        sa.Column("artefact", sa.String(1024), nullable=True),
        sa.Column("health", sa.JSON, nullable=True),
        sa.Column("restored_from", sa.Integer, nullable=True),
        sa.Column("deployed_by", sa.String(32), nullable=True),
        sa.Column("deployed_by_name", sa.String(100), nullable=True),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_releases_task", "releases", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_releases_task", table_name="releases")
    op.drop_table("releases")
