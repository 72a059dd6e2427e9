"""The last lines of a file, found backwards from the end: time and memory follow `n`, not the size.

`tail_span` finds where the last `n` lines start without keeping them; `read_span` then reads them
forwards in blocks, a batch at a time, so that a caller can send 10,000 lines of a 4 MiB tail
without holding them all (`/tasks/logs` streams its answer). `tail_lines` is both at once.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024
MAX_LINE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TailSpan:
    """Where a file's last lines are: bytes [start, end), of which the first `skip` lines are not
    wanted (a line cut by the start, or more lines than asked for)."""

    path: Path
    start: int
    end: int
    skip: int
    max_line: int

    @property
    def size(self) -> int:
        """The file's size when the span was taken (appends after it are not read)."""
        return self.end


def _open(path: Path) -> int | None:
    """A read descriptor, never through a symlink; None when the file is missing (or a symlink)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink planted where a log should be
            return None
        raise


def tail_span(path: Path, n: int, *, max_line: int = MAX_LINE, max_bytes: int = 4 << 20) -> TailSpan | None:
    """Where the last `n` lines of `path` are, or None if the file is missing. Blocking.

    At most `max_bytes` are looked at from the end: fewer lines come when they are that long.
    """
    fd = _open(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if n <= 0 or end == 0:
            return TailSpan(path, end, end, 0, max_line)
        budget = min(n * (max_line + 1) + BLOCK, max(max_bytes, BLOCK))
        newlines = 0
        position = end
        while position > 0 and budget > 0:
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            newlines += handle.read(size).count(b"\n")
            budget -= size
            if newlines > n:
                break
        handle.seek(end - 1)
        ends_with_newline = handle.read(1) == b"\n"
    pieces = newlines + 1 - (1 if ends_with_newline else 0)
    cut_first = position > 0 and newlines > n  # the first piece read is a line cut by `position`
    lines = pieces - (1 if cut_first else 0)
    skip = (1 if cut_first else 0) + max(lines - n, 0)
    return TailSpan(path, position, end, skip, max_line)


def read_span(span: TailSpan, *, batch_bytes: int = BLOCK, block: int = BLOCK) -> Generator[list[str]]:
    """The span's lines (without newlines, each cut to its last `max_line` bytes), in batches of
    about `batch_bytes`, read `block` bytes at a time. Blocking; memory stays near one block, one
    batch and one long line."""
    fd = _open(span.path)
    if fd is None:
        return
    with os.fdopen(fd, "rb") as handle:
        handle.seek(span.start)
        remaining = span.end - span.start
        skip = span.skip
        line = bytearray()
        batch: list[str] = []
        batch_size = 0
        while remaining > 0:
            data = handle.read(min(block, remaining))
            if not data:
                break  # truncated meanwhile
            remaining -= len(data)
            *complete, rest = data.split(b"\n")
            for part in complete:
                line += part
                if skip:
                    skip -= 1
                else:
                    text = bytes(line[-span.max_line :]).decode("utf-8", "replace")
                    batch.append(text)
                    batch_size += len(text)
                line.clear()
            line += rest
            if len(line) > 2 * span.max_line:
                del line[: -span.max_line]  # only a long line's end is kept
            if batch_size >= batch_bytes:
                yield batch
                batch, batch_size = [], 0
        if line and not skip:
            batch.append(bytes(line[-span.max_line :]).decode("utf-8", "replace"))
        if batch:
            yield batch


def tail_lines(path: Path, n: int, *, max_line: int = MAX_LINE, max_bytes: int = 4 << 20) -> list[str] | None:
    """The last `n` lines (without newlines), or None if the file is missing. Blocking.

    Symlinks are not followed. A line longer than `max_line` bytes keeps its last `max_line` bytes.
    At most `max_bytes` are read from the end: fewer lines come back when they are that long.
    """
    if n <= 0:
        return []
    span = tail_span(path, n, max_line=max_line, max_bytes=max_bytes)
    if span is None:
        return None
    return [line for batch in read_span(span) for line in batch]


def file_size(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError:
        return None
