"""Confining caller-supplied paths to configured roots (symlinks resolved first)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from docker_manager.errors import InvalidInput, PathNotAllowed


def confine(raw: str, roots: Sequence[Path], *, field: str) -> Path:
    """The real path of `raw` if it lies inside one of `roots`; relative paths start at roots[0].

    Blocking (it may stat the filesystem): call it through `asyncio.to_thread` from async code.
    """
    if not raw or "\x00" in raw:
        raise InvalidInput("path is empty or contains a NUL byte", field=field)
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve(strict=False)
    for root in roots:
        real_root = root.resolve()
        if resolved == real_root or resolved.is_relative_to(real_root):
            return resolved
    raise PathNotAllowed(f"{raw!r} is outside the directories this service may use", field=field)


def plain_dir(path: Path, *, create: bool, field: str = "task_id") -> Path:
    """`path` as a real directory, never a symlink (created when asked); blocking.

    A task folder that is a symlink planted into a shared root would have the service read and
    write wherever it points: refused (403), whether it is looked up or about to be used.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)  # mkdir never follows a final symlink: it fails with EEXIST
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return path
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PathNotAllowed(f"{path.name} is not a plain directory (a symlink, or a file)", field=field)
    return path
