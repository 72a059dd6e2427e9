"""Restore a backup onto this host (the service stopped).

Order, so that a refused archive changes nothing: read the whole archive once and check it
(manifest, every checksum, schema not newer than this version) writing nothing; check the host
(nothing answers on the service's port, the data folder is empty or `force`, room on the disk);
unpack into a private folder beside the data folder and migrate that copy of the database;
then put certificates and site files in place (re-rendered for this host's nginx, tested and
reloaded as one change, put back if nginx refuses them); last, swap the data folder in by rename
(the one it replaces is kept aside, named in the report).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from docker_manager.adapters.database_dump import postgres_restore, postgres_table_count
from docker_manager.adapters.nginx import FileChange, Nginx
from docker_manager.adapters.site_header import read_header, unreadable_sites
from docker_manager.db import Database
from docker_manager.errors import Conflict, InsufficientStorage, InvalidInput, NginxUnavailable, Unsupported
from docker_manager.services.backups.archive import SPARE_BYTES, Manifest, read_archive, refused
from docker_manager.services.backups.options import BackupOptions
from docker_manager.services.sites.upstreams import ident_of
from docker_manager.util.files import write_atomic

# Where a member lands in the data folder (sites, certificates and a PostgreSQL dump are placed
# elsewhere, from the unpacked copy).
_DATA_NAMES = {
    "database/docker-manager.db": "docker-manager.db",
    "keys/release-key": "release-key",
    "keys/session-key": "session-key",
    "keys/admin-token": "admin-token",
    "settings.json": "restored-settings.json",
}
MAX_CERTIFICATE_BYTES = 1 << 20


@dataclass
class RestoreReport:
    manifest: Manifest
    schema_from: str | None = None
    schema_to: str | None = None
    data_dir: str = ""
    replaced_folder_kept_at: str | None = None
    sites: list[str] = field(default_factory=list)
    certificates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify(archive: Path, passphrase: bytes) -> Manifest:
    """Read the whole archive and check it, writing nothing. Blocking."""
    with _open(archive) as source:
        return read_archive(source, passphrase)


def _open(archive: Path) -> IO[bytes]:
    try:
        return archive.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {archive}: {exc.strerror}", field="file") from None


async def restore(
    options: BackupOptions, archive: Path, passphrase: bytes, *, force: bool, nginx: Nginx
) -> RestoreReport:
    manifest = await asyncio.to_thread(verify, archive, passphrase)
    await asyncio.to_thread(_check_host, options, manifest, force)
    report = RestoreReport(
        manifest=manifest, schema_from=manifest.schema_revision, data_dir=str(options.data_dir)
    )
    options.data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dm-restore-", dir=options.data_dir.parent))
    try:
        await asyncio.to_thread(_unpack, archive, passphrase, staging)
        if manifest.database == "sqlite":
            report.schema_to = await _migrate(f"sqlite+aiosqlite:///{staging / 'data' / 'docker-manager.db'}")
        else:  # (one transaction: refused, the database is as it was)
            await asyncio.to_thread(
                postgres_restore, options.database_url, staging / "unpacked/database/docker-manager.pgdump"
            )
            report.schema_to = await _migrate(options.database_url)
        await _place_sites(options, staging, nginx, report)
        await asyncio.to_thread(_swap_in, options, staging, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


# --- before anything is written ------------------------------------------------------------------
def _check_host(options: BackupOptions, manifest: Manifest, force: bool) -> None:
    host, port = options.listen
    with (
        contextlib.suppress(OSError),
        socket.create_connection(
            ("127.0.0.1" if host in ("0.0.0.0", "::") else host.strip("[]"), port),
            timeout=1,
        ),
    ):
        raise Conflict(
            f"something answers on {host}:{port}: stop the service before restoring "
            "(systemctl stop docker-manager)"
        )
    wanted = "sqlite" if options.sqlite_path is not None else "postgresql"
    if manifest.database != wanted:
        raise Unsupported(
            f"the archive holds a {manifest.database} database and this host is set up for {wanted}"
        )
    if not force and _holds_files(options.data_dir):
        raise Conflict(
            f"the data folder {options.data_dir} is not empty: restore into an empty one, or pass --force "
            "(the folder is then kept aside, renamed, not deleted)"
        )
    for _, elsewhere in _outside(options):
        if elsewhere.exists() and not force:
            raise Conflict(f"{elsewhere} exists: pass --force to replace it (it is kept aside, renamed)")
    if manifest.database == "postgresql" and not force and postgres_table_count(options.database_url):
        raise Conflict("the configured PostgreSQL database holds tables: pass --force to replace them")
    _check_certificates(options, manifest, force)
    _check_sites(options, manifest, force)
    needed = manifest.total_bytes * 2 + SPARE_BYTES  # the unpacked copy, and room for its migration
    probe = options.data_dir
    while not probe.exists():  # (the nearest folder that is there: the disk it will be on)
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise InsufficientStorage(
            f"not enough room to restore under {probe}: {needed} bytes needed, {free} free",
            path=str(probe),
            needed_bytes=needed,
            free_bytes=free,
        )


def _check_certificates(options: BackupOptions, manifest: Manifest, force: bool) -> None:
    for member in manifest.members:
        if not member.name.startswith("certificates/"):
            continue
        if member.size > MAX_CERTIFICATE_BYTES:
            raise refused(f"not restorable: {member.name} is larger than any certificate or key")
        target = options.cert_dir / member.name.split("/", 1)[1] if options.cert_dir else None
        if target is not None and target.exists() and not force:
            raise Conflict(f"{target} exists: pass --force to replace it with the archive's")


def _check_sites(options: BackupOptions, manifest: Manifest, force: bool) -> None:
    for member in manifest.members:
        if member.name.startswith("sites/"):
            target = _site_target(options, member.name)
            if target.exists() and read_header(target) is None:
                raise Conflict(f"{target} exists and is not a site of this service: move it, then restore")
            if target.exists() and not force:
                raise Conflict(
                    f"the site file {target} exists: pass --force to replace it with the archive's"
                )


def _outside(options: BackupOptions) -> list[tuple[str, Path]]:
    """The files these settings keep outside the data folder (by their name in it)."""
    wanted = [
        ("release-key", options.release_key),
        ("admin-token", options.admin_token),
        ("session-key", options.session_key),
    ]
    if options.sqlite_path is not None:
        wanted.append(("docker-manager.db", options.sqlite_path))
    return [
        (name, path) for name, path in wanted if not path.resolve().is_relative_to(options.data_dir.resolve())
    ]


def _holds_files(folder: Path) -> bool:
    """True when the folder holds any file (an empty skeleton of folders counts as empty)."""
    if not folder.exists():
        return False
    return any(not path.is_dir() for path in folder.rglob("*"))


def _site_target(options: BackupOptions, name: str) -> Path:
    _, index, file_name = name.split("/", 2)
    directories = options.nginx_conf_dirs
    return directories[min(int(index), len(directories) - 1)] / file_name


# --- unpacked beside the data folder -------------------------------------------------------------
def _unpack(archive: Path, passphrase: bytes, staging: Path) -> None:
    unpacked = staging / "unpacked"

    def open_target(name: str) -> IO[bytes]:
        target = unpacked / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")

    with _open(archive) as source:
        read_archive(source, passphrase, open_target)  # checked again as written: the file may have changed
    data = staging / "data"
    data.mkdir(mode=0o700)
    for name, target in _DATA_NAMES.items():
        if (unpacked / name).is_file():
            os.rename(unpacked / name, data / target)
    if (unpacked / "acme").is_dir():
        os.rename(unpacked / "acme", data / "acme")


async def _migrate(url: str) -> str | None:
    database = Database(url)
    try:
        await database.open()
        current, _ = await database.revisions()
        return current
    finally:
        await database.close()


# --- put in place ----------------------------------------------------------------------------------
async def _place_sites(options: BackupOptions, staging: Path, nginx: Nginx, report: RestoreReport) -> None:
    """Certificates and site files as one change for nginx (all put back if it refuses them)."""
    unpacked = staging / "unpacked"
    folder = unpacked / "certificates"
    certificates = sorted(folder.glob("*")) if folder.is_dir() else []
    changes: list[FileChange] = []
    if certificates and options.cert_dir is None:
        report.notes.append(
            "certificates in the archive were not restored: DM_NGINX_CERT_DIR is not set here"
        )
    elif options.cert_dir is not None:
        options.cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in certificates:  # (each at most MAX_CERTIFICATE_BYTES: checked before)
            mode = 0o600 if path.suffix == ".key" else 0o644
            changes.append(FileChange(options.cert_dir / path.name, path.read_bytes(), mode))
    # Rendered once the certificates are on disk: a site serves TLS when its certificate is there.
    sites = _rendered_sites(options, unpacked, nginx, {change.path.name for change in changes})
    archived = sorted((unpacked / "sites").glob("*")) if (unpacked / "sites").is_dir() else []
    for path in unreadable_sites(archived):
        report.notes.append(f"{path.parent.name}/{path.name} was not restored: its header does not parse")
    await _apply(nginx, [*changes, *sites], report)
    report.certificates = [str(change.path) for change in changes]
    report.sites = [str(change.path) for change in sites]


def _rendered_sites(
    options: BackupOptions, unpacked: Path, nginx: Nginx, certificates: set[str]
) -> list[FileChange]:
    """Each site file as this host's nginx settings render it (listeners, certificate folder),
    saying what the archived one said: its domain, app, upstream, front and HTTPS options."""
    changes = []
    for path in sorted((unpacked / "sites").glob("*/*.conf")) if (unpacked / "sites").is_dir() else []:
        header = read_header(path)  # (its first 4 KiB; every value checked against its grammar)
        if header is None:
            continue
        certified = f"{header.domain}.crt" in certificates and f"{header.domain}.key" in certificates
        target = _site_target(options, f"sites/{path.parent.name}/{path.name}")
        content = nginx.render(
            ident=ident_of(target),
            domain=header.domain,
            upstream=header.upstream,
            app_id=header.app_id,
            front=header.front,
            tls=header.tls,
            certified=certified or None,
        )
        changes.append(FileChange(target, content.encode()))
    return changes


async def _apply(nginx: Nginx, changes: list[FileChange], report: RestoreReport) -> None:
    if not changes:
        return
    try:
        await nginx.check_running()
    except NginxUnavailable:
        for change in changes:
            change.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(change.path, change.content or b"", mode=change.mode)
        report.notes.append("nginx is not running: the site files are in place and serve once it starts")
        return
    async with nginx.lock:
        await nginx.apply_changes(changes)  # one test and reload; every file put back if refused


def _swap_in(options: BackupOptions, staging: Path, report: RestoreReport) -> None:
    data = staging / "data"
    target = options.data_dir
    aside = None
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if target.exists():
        aside = target.with_name(f"{target.name}.before-restore-{stamp}")
        os.rename(target, aside)
    os.rename(data, target)
    os.chmod(target, 0o700)
    if aside is not None and _holds_files(aside):
        report.replaced_folder_kept_at = str(aside)
    elif aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    for name, wanted in _outside(options):
        _move_out(target / name, wanted, stamp)


def _move_out(placed: Path, wanted: Path, stamp: str) -> None:
    """A file these settings keep outside the data folder goes where they say; one already there
    (a restore with --force) is kept aside, renamed, with SQLite's -wal and -shm beside it."""
    if placed.resolve() == wanted.resolve() or not placed.exists():
        return
    wanted.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in (wanted, wanted.with_name(wanted.name + "-wal"), wanted.with_name(wanted.name + "-shm")):
        if old.exists():
            os.rename(old, old.with_name(f"{old.name}.before-restore-{stamp}"))
    partial = wanted.with_name(f".{wanted.name}.restoring")
    shutil.copyfile(placed, partial)  # (streamed: the database may be large)
    os.chmod(partial, 0o600)
    os.replace(partial, wanted)
    placed.unlink()


def describe(report: RestoreReport) -> list[str]:
    """The report as lines for a terminal."""
    lines = [
        f"restored {len(report.manifest.members)} files from a backup of {report.manifest.created_at} "
        f"(docker-manager {report.manifest.version}) into {report.data_dir}",
        f"database schema {report.schema_from} -> {report.schema_to}",
    ]
    lines += [f"site: {site}" for site in report.sites]
    lines += [f"certificate: {cert}" for cert in report.certificates]
    if report.replaced_folder_kept_at:
        lines.append(f"the folder it replaced is kept at {report.replaced_folder_kept_at}")
    lines += [f"note: {note}" for note in report.notes]
    lines.append("start the service; releases whose images are not on this host list them as missing")
    return lines
