"""What a backup holds, taken from a running host: a consistent copy of the database (SQLite's
online backup API, or `pg_dump`), the keys, the ACME accounts, the managed site files and the
certificates, and the settings without their secrets. Blocking: run in a thread.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from docker_manager.adapters.database_dump import postgres_dump, sqlite_copy
from docker_manager.adapters.site_header import managed_sites
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
        database, revision = "sqlite", sqlite_copy(options.sqlite_path, staging / "docker-manager.db")
        sources.append(("database/docker-manager.db", staging / "docker-manager.db"))
    else:
        database, revision = (
            "postgresql",
            postgres_dump(options.database_url, staging / "docker-manager.pgdump"),
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
