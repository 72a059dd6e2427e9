"""Upgrades: a database left at any earlier schema revision, with rows in every table, reaches
the newest through the service's own start-up (`Database.open`) with every row and value kept;
a database written by a newer version is refused with a clear message, untouched."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from docker_manager.db import Database
from docker_manager.db.engine import alembic_config, schema_revisions
from docker_manager.errors import Unsupported

EARLIER = schema_revisions()[:-1]


def _config(path: Path) -> Config:
    config = alembic_config(f"sqlite:///{path}")
    config.attributes.pop("connection", None)
    return config


def _value(column: sa.Column[Any], row: int) -> Any:
    """A value every column type of this schema accepts, different per row."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return row % 2 == 0
    if isinstance(kind, sa.Integer):
        return 1000 + row
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1.5 + row
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, 1 + row, 12, 0, tzinfo=UTC).replace(tzinfo=None)
    if isinstance(kind, sa.JSON):
        return {"row": row}
    if isinstance(kind, sa.LargeBinary):
        return b"\x00bytes" + bytes([row])
    length = getattr(kind, "length", None) or 40
    return f"{column.name}-{row}"[:length]


def _fill(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Two rows in every table the database has (parents first, so foreign keys hold)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata = sa.MetaData()
    metadata.reflect(engine)
    written: dict[str, list[tuple[Any, ...]]] = {}
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [{column.name: _value(column, row) for column in table.columns} for row in (1, 2)]
            for foreign in table.foreign_keys:  # point at the parent's rows
                parent = written[foreign.column.table.name]
                index = list(foreign.column.table.columns).index(foreign.column)
                for number, values in enumerate(rows):
                    values[foreign.parent.name] = parent[number][index]
            conn.execute(table.insert(), rows)
            written[table.name] = [tuple(values.values()) for values in rows]
    engine.dispose()
    return {name: _read(path, name) for name in written}


def _read(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        query = f'SELECT {", ".join(columns)} FROM "{table}" ORDER BY 1'  # noqa: S608 (names from the schema)
        return [tuple(row) for row in conn.execute(query)]


def _columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


@pytest.mark.parametrize("revision", EARLIER)
def test_a_database_at_every_earlier_revision_upgrades_with_nothing_lost(
    tmp_path: Path, revision: str
) -> None:
    path = tmp_path / "docker-manager.db"
    command.upgrade(_config(path), revision)
    before = _fill(path)
    assert before, "the revision has tables"
    columns_before = {table: _columns(path, table) for table in before}

    async def start() -> tuple[str | None, str | None]:
        database = Database(f"sqlite+aiosqlite:///{path}")
        await database.open()  # what `serve` does at start
        try:
            return await database.revisions()
        finally:
            await database.close()

    current, head = asyncio.run(start())
    assert current == head == schema_revisions()[-1]
    for table, rows in before.items():
        after = _read(path, table)
        assert len(after) == len(rows), table
        # Every column the table had keeps its values (columns added later come after them).
        kept = [tuple(row[: len(columns_before[table])]) for row in after]
        assert kept == rows, table
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_database_written_by_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "docker-manager.db"
    command.upgrade(_config(path), "head")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    before = path.read_bytes()

    async def start() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.open()
        finally:
            await database.close()

    with pytest.raises(Unsupported) as refused:
        asyncio.run(start())
    assert "'0099'" in refused.value.detail and "newer" in refused.value.detail
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0099",)
    assert len(path.read_bytes()) == len(before)
