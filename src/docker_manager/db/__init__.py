"""Persistence: one async SQLAlchemy engine (SQLite by default, PostgreSQL by URL) and its tables."""

from docker_manager.db.engine import Database
from docker_manager.db.tables import metadata

__all__ = ["Database", "metadata"]
