"""What a backup holds, taken from a running host: a consistent copy of the database (SQLite's
online backup API, or `pg_dump`), the keys, the ACME accounts, the managed site files and the
certificates, and the settings without their secrets. Blocking: run in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from docker_manager.adapters.site_header import managed_sites
from docker_manager.errors import Unsupported, UpstreamError
from docker_manager.services.backups.archive import Manifest, storable
from docker_manager.services.backups.options import BackupOptions
from docker_manager.util.files import write_atomic

log = logging.getLogger(__name__)
Sources = list[tuple[str, Path]]


def take_snapshot(options: BackupOptions, staging: Path) -> tuple[Sources, Manifest]:
    """Copy what must be consistent into `staging` (a private folder the caller removes), and
    name every file the archive holds, in the order written."""
    sources: Sources = []
    if options.sqlite_path is not None:
        database, revision = "sqlite", _sqlite_copy(options.sqlite_path, staging / "docker-manager.db")
        sources.append(("database/docker-manager.db", staging / "docker-manager.db"))
    else:
        database, revision = (
            "postgresql",
            _postgres_dump(options.database_url, staging / "docker-manager.pgdump"),
        )
        sources.append(("database/docker-manager.pgdump", staging / "docker-manager.pgdump"))
    for name, path in (
        ("release-key", options.release_key),
        ("session-key", options.session_key),
        ("admin-token", options.admin_token),
    ):
        if path.is_file():
            sources.append((f"keys/{name}", path))
    if options.acme_dir.is_dir():
        for path in sorted(options.acme_dir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                sources.append((f"acme/{path.relative_to(options.acme_dir)}", path))
    for index, directory in enumerate(options.nginx_conf_dirs):
        for path, _header in managed_sites([directory]):
            sources.append((f"sites/{index}/{path.name}", path))
    if options.cert_dir is not None and options.cert_dir.is_dir():
        for path in sorted(options.cert_dir.iterdir()):
            if path.suffix in (".crt", ".key") and path.is_file():
                sources.append((f"certificates/{path.name}", path))
    skipped = [name for name, _ in sources if not storable(name)]
    if skipped:  # (an interrupted write's temporary file, a certificate named by hand)
        log.warning("not in the backup (names a backup does not hold): %s", ", ".join(skipped[:20]))
    sources = [(name, path) for name, path in sources if storable(name)]
    write_atomic(staging / "settings.json", json.dumps(options.settings, indent=1, sort_keys=True).encode())
    sources.append(("settings.json", staging / "settings.json"))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return sources, Manifest(schema_revision=revision, database=database, created_at=created)


def _sqlite_copy(source: Path, target: Path) -> str | None:
    """SQLite's online backup: a consistent copy while the service writes (WAL: it holds no lock
    a writer waits on for long). Returns the copy's schema revision."""
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        query = (
            "SELECT version_num FROM alembic_version" if _has_table(dst, "alembic_version") else "SELECT NULL"
        )
        row = dst.execute(query).fetchone()
    target.chmod(0o600)
    return str(row[0]) if row and row[0] is not None else None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        is not None
    )


def postgres_env(url: str) -> dict[str, str]:
    """libpq's variables for the service's PostgreSQL URL: the password goes in the environment
    of pg_dump/psql/pg_restore, never on a command line another local user can read."""
    parsed = make_url(url)
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    return {**os.environ, **{name: value for name, value in values.items() if value}}


def _postgres_dump(url: str, target: Path) -> str | None:
    """`pg_dump` in its custom format (one consistent snapshot of the database, restored with
    `pg_restore`), and the schema revision read by `psql`."""
    pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
    if pg_dump is None or psql is None:
        raise Unsupported(
            "the database is PostgreSQL and pg_dump is not installed here (Debian: postgresql-client); "
            "install it, or back the database up with your PostgreSQL tooling"
        )
    env = postgres_env(url)
    run_tool([pg_dump, "--format=custom", "--no-owner", f"--file={target}"], env)
    target.chmod(0o600)
    revision = run_tool([psql, "-At", "-c", "SELECT version_num FROM alembic_version"], env)
    return revision.strip() or None


def run_tool(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False, env=env)
    if done.returncode != 0:
        program = Path(argv[0]).name
        raise UpstreamError(
            f"{program} failed: {done.stderr.strip()[-500:] or f'exit code {done.returncode}'}"
        )
    return done.stdout
