"""The database's own copy tools: SQLite's online backup API, and PostgreSQL's `pg_dump`,
`pg_restore` and `psql` run as argv lists. Blocking: call from a thread.

The PostgreSQL password reaches the tools in their environment (libpq's `PGPASSWORD`), never on a
command line another local user can read in /proc.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from docker_manager.errors import Unsupported, UpstreamError

TOOL_TIMEOUT = 3600  # seconds: a dump or restore of a large database
_REVISION_QUERY = "SELECT version_num FROM alembic_version"


def sqlite_copy(source: Path, target: Path) -> str | None:
    """A consistent copy while the service writes (WAL: the backup holds no lock a writer waits
    on for long), as one file of mode 0600. Returns the copy's schema revision."""
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        query = _REVISION_QUERY if _has_table(dst, "alembic_version") else "SELECT NULL"
        row = dst.execute(query).fetchone()
    target.chmod(0o600)
    return str(row[0]) if row and row[0] is not None else None


def postgres_dump(url: str, target: Path) -> str | None:
    """`pg_dump` in its custom format (one consistent snapshot, restored by `postgres_restore`),
    mode 0600, and the schema revision read by `psql`."""
    pg_dump, psql = _tool("pg_dump"), _tool("psql")
    env = postgres_env(url)
    _run([pg_dump, "--format=custom", "--no-owner", f"--file={target}"], env)
    target.chmod(0o600)
    return _run([psql, "-At", "-c", _REVISION_QUERY], env).strip() or None


def postgres_restore(url: str, dump: Path) -> None:
    """The dump into the URL's database, replacing what its tables hold, in one transaction."""
    env = postgres_env(url)
    argv = [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction"]
    _run([*argv, "--dbname", env["PGDATABASE"], str(dump)], env)


def postgres_table_count(url: str) -> int:
    """How many tables the database's public schema holds (0: a fresh database)."""
    query = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    return int(_run([_tool("psql"), "-At", "-c", query], postgres_env(url)).strip() or 0)


def postgres_env(url: str) -> dict[str, str]:
    """libpq's variables for a SQLAlchemy PostgreSQL URL, on top of this process's environment."""
    parsed = make_url(url)
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    return {**os.environ, **{name: value for name, value in values.items() if value}}


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unsupported(
            f"the database is PostgreSQL and {name} is not installed here (Debian: postgresql-client); "
            "install it, or back the database up with your PostgreSQL tooling"
        )
    return found


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False, env=env)
    if done.returncode != 0:
        program = Path(argv[0]).name
        raise UpstreamError(
            f"{program} failed: {done.stderr.strip()[-500:] or f'exit code {done.returncode}'}"
        )
    return done.stdout


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return found.fetchone() is not None
