"""The per-task folder and the file names of the API README's contract.

    build.log               raw text: the work's output as it came, plus service lines "[ts] ..."
    build.jsonl             one JSON object per line: ts (ISO-8601 UTC), level, event, fields
    events.log              "[ts] message" per step of the task
    error.log               "[ts] message" per failure (written for every failure)
    build.info.json         the task's summary; merged by several writers under a lock
    dockerfile.parsed.json  the Dockerfile's instructions (continuation lines joined)
    Dockerfile.used         the Dockerfile the build used

All writes happen in a worker thread. JSON files are replaced atomically (temp file, fsync,
rename), so a reader never sees half a file. When the disk is full, log appends are dropped and
`truncated` is set; the task's final state lives in the database and is not affected.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker_manager.util.clock import timestamp
from docker_manager.util.files import write_atomic
from docker_manager.util.paths import plain_dir

log = logging.getLogger(__name__)

BUILD_LOG = "build.log"
BUILD_JSONL = "build.jsonl"
EVENTS_LOG = "events.log"
ERROR_LOG = "error.log"
INFO_JSON = "build.info.json"
DOCKERFILE_PARSED = "dockerfile.parsed.json"
DOCKERFILE_USED = "Dockerfile.used"
# The artefact's name, size and sha256, written by the build host and checked by localrun.
MANIFEST = "build.manifest.json"
_LOCK = ".build.info.lock"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Out of descriptors for a moment (the process's or the system's): worth a few short waits
# rather than ending a build with half its log.
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_OPEN_ATTEMPTS = 6


def _open_retrying(path: Path) -> int:
    """A log file opened for appending (never through a symlink). Blocking: runs in a thread."""
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno not in _NO_DESCRIPTORS or attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)  # 0.05 ... 0.8 s, 1.55 s in all
    raise AssertionError("unreachable")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if missing or unreadable (never raises for bad content)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(16 << 20)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `update` into `base`: nested objects merge, everything else is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class LogBatch:
    """What to append to the log files in one go (one thread hop per batch)."""

    raw: list[str] = field(default_factory=list)
    jsonl: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.raw or self.jsonl or self.events or self.errors)


class TaskFiles:
    """One task's folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.truncated = False

    @classmethod
    async def open(cls, directory: Path) -> TaskFiles:
        """The folder, created if needed; a symlink in its place is refused, never written through."""
        await asyncio.to_thread(plain_dir, directory, create=True)
        return cls(directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    # --- appends ---------------------------------------------------------------------------
    async def append(self, batch: LogBatch) -> None:
        if batch:
            await asyncio.to_thread(self._append, batch)

    def _append(self, batch: LogBatch) -> None:
        stamp = timestamp()
        parts: list[tuple[str, str]] = []
        if batch.raw:
            parts.append((BUILD_LOG, "".join(batch.raw)))
        if batch.jsonl:
            lines = (
                json.dumps({"ts": stamp, "level": "info", **record}, default=str, ensure_ascii=False)
                for record in batch.jsonl
            )
            parts.append((BUILD_JSONL, "\n".join(lines) + "\n"))
        if batch.events:
            parts.append((EVENTS_LOG, "".join(f"[{stamp}] {line}\n" for line in batch.events)))
        if batch.errors:
            parts.append((ERROR_LOG, "".join(f"[{stamp}] {line}\n" for line in batch.errors)))
        for name, text in parts:
            self._append_text(name, text)

    def _append_text(self, name: str, text: str) -> None:
        if self.truncated:
            return
        try:
            fd = _open_retrying(self.path(name))
            with os.fdopen(fd, "ab") as handle:
                handle.write(text.encode("utf-8", "replace"))
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            self.truncated = True
            log.warning("disk full: logs of %s are truncated from here on", self.directory.name)

    # --- whole files -----------------------------------------------------------------------
    async def write_text(self, name: str, text: str) -> None:
        await asyncio.to_thread(write_atomic, self.path(name), text.encode("utf-8"))

    async def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        payload = json.dumps(data, indent=2, default=str, ensure_ascii=False).encode("utf-8")
        await asyncio.to_thread(write_atomic, self.path(name), payload)

    async def merge_info(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `fields` into build.info.json under a file lock; returns the merged summary.

        On a full disk the summary keeps its previous content (the atomic write never leaves half
        a file) and `truncated` is set; the task's state in the database is the truth.
        """
        try:
            return await asyncio.to_thread(self._merge_info, fields)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            self.truncated = True
            log.warning("disk full: build.info.json of %s was not updated", self.directory.name)
            return {}

    def _merge_info(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        lock_fd = os.open(self.path(_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            current = read_json(self.path(INFO_JSON)) or {}
            merged = deep_merge(current, fields)
            merged["updated_at"] = timestamp()
            payload = json.dumps(merged, indent=2, default=str, ensure_ascii=False).encode("utf-8")
            write_atomic(self.path(INFO_JSON), payload)
            return merged
        finally:
            os.close(lock_fd)  # closing releases the lock
