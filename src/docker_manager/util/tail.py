"""The last lines of a file, read backwards from the end: time and memory follow `n`, not the size."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 64 * 1024
MAX_LINE = 64 * 1024


def tail_lines(path: Path, n: int, *, max_line: int = MAX_LINE, max_bytes: int = 4 << 20) -> list[str] | None:
    """The last `n` lines (without newlines), or None if the file is missing.

    Symlinks are not followed. A line longer than `max_line` bytes keeps its last `max_line` bytes.
    At most `max_bytes` are read from the end: fewer lines come back when they are that long.
    """
    if n <= 0:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symlink planted where a log should be
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        budget = min(n * (max_line + 1) + BLOCK, max(max_bytes, BLOCK))
        chunks: list[bytes] = []
        newlines = 0
        position = end
        while position > 0 and budget > 0:
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            chunk = handle.read(size)
            chunks.append(chunk)
            budget -= size
            newlines += chunk.count(b"\n")
            if newlines > n:
                break
    data = b"".join(reversed(chunks))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if position > 0 and newlines > n:
        lines = lines[1:]  # more lines than asked for: the first one read is cut, and not needed
    return [line[-max_line:].decode("utf-8", "replace") for line in lines[-n:]]


def file_size(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError:
        return None
