"""The async engine, SQLite pragmas and schema migration at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from docker_manager.errors import DatabaseBusy, DatabaseUnavailable, DockerManagerError, Unsupported

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers (status routes) run while a task writes; NORMAL is durable across a
        # process crash, which is the failure this service must survive.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A writer held up by another process (a backup, an open sqlite3) waits this long, SQLite
        # sleeping with backoff, then the request answers 503 database_busy.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


class Database:
    """Owns the engine. `open()` migrates the schema to the newest revision."""

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # SQLite allows one writer at a time (WAL), and readers need few connections: a small
            # pool, so idle connections are not kept open for good.
            self.engine: AsyncEngine = create_async_engine(url, pool_size=2, max_overflow=6)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout))
        else:
            # pre-ping: after PostgreSQL restarts, stale connections are replaced, no restart needed.
            self.engine = create_async_engine(url, pool_pre_ping=True)

    async def open(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self._upgrade)

    def _upgrade(self, connection: Connection) -> None:
        cfg = alembic_config(self.url)
        check_known_revision(MigrationContext.configure(connection).get_current_revision())
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async def revisions(self) -> tuple[str | None, str | None]:
        """(the schema's revision in the database, the newest this version knows)."""
        try:
            async with self.engine.connect() as conn:
                current = await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        except Exception as exc:
            raise database_error(exc) from exc
        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()
        return current, head

    async def close(self) -> None:
        await self.engine.dispose()


def schema_revisions() -> list[str]:
    """Every schema revision this version knows, oldest first (the last is its head)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def check_known_revision(revision: str | None) -> None:
    """Refuse a schema written by a newer version: alembic would fail with "can't locate
    revision", and nothing here can read tables it does not know (a downgrade is not supported)."""
    if revision is not None and revision not in schema_revisions():
        raise Unsupported(
            f"the database is at schema revision {revision!r}, newer than this version knows (its newest is "
            f"{schema_revisions()[-1]!r}): run the newer docker-manager that wrote it, or restore a backup "
            "made by this version; a downgrade is not supported"
        )


def database_error(exc: BaseException) -> DockerManagerError:
    """The service error for a failure of the database itself (not of a query's content)."""
    text = str(exc).lower()
    if "database is locked" in text or "database table is locked" in text or isinstance(exc, PoolTimeout):
        return DatabaseBusy("the database is busy (locked by another process); nothing was recorded")
    return DatabaseUnavailable("the database cannot be reached; nothing was recorded")
