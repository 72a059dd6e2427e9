"""Build contexts as tar streams: walked in a thread, `.dockerignore` honoured, never buffered whole.

Inline files (an inline Dockerfile) are added to the stream, not written into the user's directory.
The walk holds directory file descriptors and opens every name relative to its parent with
O_NOFOLLOW, so a directory swapped for a symlink mid-walk is never followed out of the context.
Symlinks are archived as links, never followed; sockets, FIFOs and devices are skipped (opening a
FIFO would hang the walk).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from docker_manager.errors import PayloadTooLarge
from docker_manager.util.threads import ChunkSink, iterate_in_thread

_FLUSH_BYTES = 256 * 1024
_COPY_BYTES = 1024 * 1024  # a file's content is read in pieces this large (tarfile's own: 16 KiB)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool


def _compile(pattern: str) -> re.Pattern[str]:
    """Translate one `.dockerignore` pattern as Docker's patternmatcher does (`**` spans dirs)."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            out.append(re.escape(pattern[i]) if i < len(pattern) else "\\\\")
        elif ch in "[]":
            out.append(ch)
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error:
        # An unbalanced `[` matches nothing in Docker either (its compile fails); be as lenient.
        return re.compile(r"(?!)")


@dataclass
class DockerIgnore:
    """The rules of a `.dockerignore` file: the last matching pattern decides."""

    patterns: list[_Pattern] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, *, always_include: tuple[str, ...] = ()) -> DockerIgnore:
        patterns: list[_Pattern] = []
        for raw in text.lstrip("\ufeff").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            if not line:
                continue
            line = os.path.normpath(line).replace(os.sep, "/")
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
            patterns.append(_Pattern(_compile(line), exclusion))
        # Docker always sends the Dockerfile and .dockerignore, even when a pattern excludes them.
        for name in always_include:
            patterns.append(_Pattern(re.compile("^" + re.escape(name) + "$"), True))
        return cls(patterns)

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, rel_path: str) -> bool:
        parents = _parents(rel_path)
        matched = False
        for pattern in self.patterns:
            hit = pattern.regex.match(rel_path) is not None or any(
                pattern.regex.match(parent) for parent in parents
            )
            if hit:
                matched = not pattern.exclusion
        return matched


def _parents(rel_path: str) -> list[str]:
    parts = rel_path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class BuildContext:
    """What to send: a directory (may be None for inline-only builds) plus inline files."""

    root: Path | None
    dockerfile: str = "Dockerfile"
    inline_files: dict[str, bytes] = field(default_factory=dict)
    max_bytes: int = 4 << 30
    # Extra .dockerignore patterns (e.g. ".git" for a cloned repository).
    exclude: tuple[str, ...] = ()

    def stream(self) -> AsyncIterator[bytes]:
        return iterate_in_thread(self._write)

    def _write(self, sink: ChunkSink) -> None:
        writer = _BufferedWriter(sink, self.max_bytes)
        # Mode "w" on a write-only object, not the stream mode "w|": that one cuts every write into
        # 10 KiB pieces (re-slicing the rest each time) and held a 1 GiB context to ~300 MiB/s.
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=writer, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_COPY_BYTES
        ) as tar:
            if self.root is not None:
                _add_tree(tar, self.root, self._ignore_rules(), set(self.inline_files))
            now = time.time()
            for name, data in self.inline_files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(now)
                tar.addfile(info, _BytesReader(data))
        writer.flush()

    def _ignore_rules(self) -> DockerIgnore:
        assert self.root is not None
        path = self.root / ".dockerignore"
        text = ""
        if path.is_file() and not path.is_symlink():
            text = path.read_text("utf-8", "replace")
        text = "\n".join([text, *self.exclude])  # (last: a repository's `!.git` cannot undo them)
        return DockerIgnore.parse(text, always_include=(self.dockerfile, ".dockerignore"))


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
MAX_DEPTH = 256


def _add_tree(tar: tarfile.TarFile, root: Path, ignore: DockerIgnore, skip: set[str]) -> None:
    """Archive the tree under `root`, walking with directory file descriptors.

    Every name is opened relative to its parent's descriptor with O_NOFOLLOW: a directory swapped
    for a symlink during the walk is not followed out of the context (the open fails), and a
    symlink is archived as a link, never read through.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        _add_dir(tar, fd, "", ignore, skip, depth=0)
    finally:
        os.close(fd)


def _add_dir(
    tar: tarfile.TarFile, dir_fd: int, rel_dir: str, ignore: DockerIgnore, skip: set[str], *, depth: int
) -> None:
    if depth > MAX_DEPTH:
        raise PayloadTooLarge(f"the build context is nested deeper than {MAX_DEPTH} directories")
    with os.scandir(dir_fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        rel = f"{rel_dir}/{name}" if rel_dir else name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone meanwhile
        is_dir = stat.S_ISDIR(st.st_mode)
        excluded = ignore.excluded(rel)
        # An excluded directory may still hold re-included files (`!dir/keep`).
        if excluded and not (is_dir and ignore.has_exclusions):
            continue
        if not excluded and rel not in skip:
            _add_entry(tar, dir_fd, name, rel, st)
        if is_dir:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # replaced by a symlink or a file since the stat: not followed
            try:
                _add_dir(tar, child, rel, ignore, skip, depth=depth + 1)
            finally:
                os.close(child)


def _add_entry(tar: tarfile.TarFile, dir_fd: int, name: str, rel: str, st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # replaced meanwhile (e.g. by a symlink): not followed
        with os.fdopen(fd, "rb") as handle:
            info = tar.gettarinfo(arcname=rel, fileobj=handle)
            _owned_by_root(info)
            if info.isreg():
                tar.addfile(info, handle)
            else:  # a hard link to an earlier member
                tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        else:
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dir_fd)
        _owned_by_root(info)
        tar.addfile(info)
    # Sockets, FIFOs and device nodes are skipped on purpose.


def _owned_by_root(info: tarfile.TarInfo) -> None:
    # Like the docker CLI: the builder sees files owned by root, not by whoever owns them here.
    info.uid = info.gid = 0
    info.uname = info.gname = ""


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


class _BufferedWriter:
    """Collects tarfile's small writes into larger chunks and enforces the size cap."""

    def __init__(self, sink: ChunkSink, max_bytes: int) -> None:
        self._sink = sink
        self._max = max_bytes
        self._buffer = bytearray()
        self.total = 0

    def tell(self) -> int:
        return self.total  # (tarfile asks where it is: the bytes written so far)

    def write(self, data: bytes) -> int:
        self.total += len(data)
        if self.total > self._max:
            raise PayloadTooLarge(f"the build context is larger than the {self._max} byte limit")
        if not self._buffer and len(data) >= _FLUSH_BYTES:
            self._sink.write(bytes(data))  # a file's large piece goes as it is, copied once
            return len(data)
        self._buffer += data
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._sink.write(bytes(self._buffer))
            self._buffer.clear()
