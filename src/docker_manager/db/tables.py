"""Table definitions (SQLAlchemy Core). Schema changes go through an alembic migration too."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    # sha256 of the whole token; the token itself is never stored.
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    # The first characters of the token, so an operator can tell tokens apart in `token list`.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
