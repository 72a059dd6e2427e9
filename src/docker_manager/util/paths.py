"""Confining caller-supplied paths to configured roots (symlinks resolved first)."""

from __future__ import annotations

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
