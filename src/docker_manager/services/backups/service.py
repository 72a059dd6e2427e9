"""Backups of this service's state: to a file (the CLI, the schedule) or as a stream (the API).

A backup never stops the service: the database is copied with SQLite's online backup API (or
pg_dump) into a private staging folder under the data folder, and that copy is what is sealed.
Scheduled backups go to DM_BACKUP_DIR every DM_BACKUP_INTERVAL; the newest DM_BACKUP_KEEP stay.
A failed one is logged, counted and written to the audit log; the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from docker_manager import metrics
from docker_manager.adapters.backup_cipher import Writable
from docker_manager.errors import DockerManagerError, InsufficientStorage, InvalidInput
from docker_manager.schemas.backups import BackupFile, BackupStatus
from docker_manager.services.backups.archive import SPARE_BYTES, Manifest, read_passphrase, write_archive
from docker_manager.services.backups.options import BackupOptions
from docker_manager.services.backups.snapshot import take_snapshot
from docker_manager.services.observability.audit import AuditEntry, AuditLog
from docker_manager.util.threads import ChunkSink, iterate_in_thread

log = logging.getLogger(__name__)
SUFFIX = ".dmbackup"


@dataclass(frozen=True, slots=True)
class WrittenBackup:
    path: Path
    size: int
    manifest: Manifest


@contextlib.contextmanager
def _staging(options: BackupOptions) -> Iterator[Path]:
    """A private folder beside the state (same disk, 0700), removed whatever happens."""
    options.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix=".backup-", dir=options.data_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def seal_into(options: BackupOptions, out: Writable, passphrase: bytes) -> Manifest:
    """Take a snapshot and seal it into `out`. Blocking."""
    _check_room(options)
    with _staging(options) as staging:
        sources, manifest = take_snapshot(options, staging)
        return write_archive(out, passphrase, sources, manifest)


def _check_room(options: BackupOptions) -> None:
    """The database's copy is made beside it first: refused when it would fill the disk."""
    database = options.sqlite_path
    size = database.stat().st_size if database is not None and database.exists() else 0
    free = shutil.disk_usage(options.data_dir if options.data_dir.exists() else options.data_dir.parent).free
    needed = size + SPARE_BYTES
    if free < needed:
        raise InsufficientStorage(
            f"not enough room to copy the database under {options.data_dir}: {needed} bytes needed, "
            f"{free} free",
            path=str(options.data_dir),
            needed_bytes=needed,
            free_bytes=free,
        )


def write_backup_file(options: BackupOptions, target: Path, passphrase: bytes) -> WrittenBackup:
    """A backup at `target` (0600, complete or absent: written beside it, then renamed). Blocking."""
    if target.exists() and not target.is_file():
        raise InvalidInput(f"{target} exists and is not a file", field="file")
    partial = target.with_name(f".{target.name}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            manifest = seal_into(options, handle, passphrase)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, 0o600)  # (a .part a crash left behind kept its own mode)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return WrittenBackup(target, target.stat().st_size, manifest)


class BackupService:
    def __init__(self, *, options: BackupOptions, audit: AuditLog | None) -> None:
        self._options = options
        self._audit = audit
        self._status = BackupStatus(
            enabled=self.scheduled,
            directory=str(options.backup_dir) if options.backup_dir else None,
            interval_seconds=options.interval,
            keep=options.keep,
        )
        self._loop: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def scheduled(self) -> bool:
        return self._options.backup_dir is not None and self._options.passphrase_file is not None

    async def start(self) -> None:
        if self.scheduled:
            await asyncio.to_thread(self._adopt_newest)
            self._loop = asyncio.create_task(self._schedule(), name="backups")

    def _adopt_newest(self) -> None:
        """The newest backup in the folder is the last one, for the status and the metrics (else
        an alert on their age would fire after every restart)."""
        for path in self._backups()[:1]:
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                self._status.last_at = datetime.fromtimestamp(stat.st_mtime, UTC)
                self._status.last_file, self._status.last_size_bytes = path.name, stat.st_size
                metrics.BACKUP_LAST_SUCCESS.set(stat.st_mtime)
                metrics.BACKUP_LAST_SIZE.set(stat.st_size)

    @staticmethod
    def file_name() -> str:
        """A backup's file name: its time, sortable."""
        return f"docker-manager-{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}{SUFFIX}"

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    # --- on request ----------------------------------------------------------------------------
    async def passphrase(self, given: str | None) -> bytes:
        """The request's passphrase, else the configured file's."""
        if given is not None:
            return given.encode()
        if self._options.passphrase_file is None:
            raise InvalidInput(
                "no passphrase: send one, or set DM_BACKUP_PASSPHRASE_FILE", field="passphrase"
            )
        return await asyncio.to_thread(read_passphrase, self._options.passphrase_file, creating=True)

    async def stream(self, passphrase: bytes) -> AsyncIterator[bytes]:
        """A backup as it is sealed. The snapshot is taken before this returns, so that what fails
        there (the database, pg_dump) is an error answer, not a cut download."""

        def produce(sink: ChunkSink) -> None:
            seal_into(self._options, sink, passphrase)

        chunks = iterate_in_thread(produce)
        try:
            first = await anext(chunks)
        except BaseException:
            metrics.BACKUPS.labels(trigger="api", result="error").inc()
            await chunks.aclose()
            raise
        return self._rest(first, chunks)

    async def _rest(self, first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        outcome = "error"
        try:
            yield first
            async for chunk in chunks:
                yield chunk
            outcome = "ok"
        finally:
            metrics.BACKUPS.labels(trigger="api", result=outcome).inc()

    # --- on a schedule -------------------------------------------------------------------------
    async def status(self) -> BackupStatus:
        files = await asyncio.to_thread(self._files)
        return self._status.model_copy(update={"files": files})

    async def _schedule(self) -> None:
        # The first one when the newest in the folder is an interval old (or there is none): a
        # service restarting in a loop must not replace the good history with copies of itself.
        wait = await asyncio.to_thread(self._until_due)
        while True:
            self._status.next_at = datetime.now(UTC) + timedelta(seconds=wait)
            await asyncio.sleep(wait)
            try:
                await self.run_scheduled()
            except Exception:  # (it reports its own failures: this is what it could not report)
                log.exception("scheduled backup: unexpected failure; the next one is still due")
            wait = self._options.interval

    def _until_due(self) -> float:
        newest = self._backups()[:1]
        if not newest:
            return 0.0
        with contextlib.suppress(FileNotFoundError):
            age = time.time() - newest[0].stat().st_mtime
            return max(0.0, min(self._options.interval - age, self._options.interval))
        return 0.0

    async def run_scheduled(self) -> None:
        """One scheduled backup, then the oldest beyond DM_BACKUP_KEEP removed; never raises."""
        async with self._lock:
            started = time.monotonic()
            try:
                written = await asyncio.to_thread(self._write_scheduled)
            except Exception as exc:
                await self._failed(exc)
                return
            self._status.last_at = datetime.now(UTC)
            self._status.last_file = written.path.name
            self._status.last_size_bytes = written.size
            self._status.last_duration_seconds = round(time.monotonic() - started, 3)
            self._status.last_error = self._status.last_error_at = None
            metrics.BACKUPS.labels(trigger="schedule", result="ok").inc()
            metrics.BACKUP_LAST_SUCCESS.set(time.time())
            metrics.BACKUP_LAST_SIZE.set(written.size)
            log.info("backup written: %s (%d bytes)", written.path, written.size)

    def _write_scheduled(self) -> WrittenBackup:
        folder, passphrase_file = self._options.backup_dir, self._options.passphrase_file
        assert folder is not None and passphrase_file is not None
        passphrase = read_passphrase(passphrase_file, creating=True)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        written = write_backup_file(self._options, folder / self.file_name(), passphrase)
        for old in self._backups()[self._options.keep :]:
            old.unlink(missing_ok=True)
        return written

    async def _failed(self, exc: BaseException) -> None:
        reason = exc.detail if isinstance(exc, DockerManagerError) else f"{type(exc).__name__}: {exc}"
        self._status.last_error, self._status.last_error_at = reason, datetime.now(UTC)
        metrics.BACKUPS.labels(trigger="schedule", result="error").inc()
        log.error("scheduled backup failed: %s", reason)
        if self._audit is None:
            return
        entry = AuditEntry(
            request_id=f"backup-{int(time.time())}",
            method="TASK",
            route="scheduled backup",
            status=500,
            duration_ms=0.0,
            token_name="docker-manager",  # noqa: S106 (who did it: the service, not a token)
            error_code="backup_failed",
            target={"reason": reason[:200]},
        )
        try:
            await self._audit.record(entry)
        except Exception as error:  # (the database may be what failed the backup)
            log.warning("the audit entry of a failed backup was not written: %s", error)

    def _backups(self) -> list[Path]:
        folder = self._options.backup_dir
        if folder is None or not folder.is_dir():
            return []
        found = [p for p in folder.glob(f"docker-manager-*{SUFFIX}") if p.is_file()]
        return sorted(found, key=lambda p: p.name, reverse=True)  # (names sort by time)

    def _files(self) -> list[BackupFile]:
        files = []
        for path in self._backups():
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                files.append(
                    BackupFile(
                        name=path.name,
                        size=stat.st_size,
                        created_at=datetime.fromtimestamp(stat.st_mtime, UTC),
                    )
                )
        return files
