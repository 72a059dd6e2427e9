"""Turning a command line into an argv list, the one way the service does it."""

from __future__ import annotations

import shlex

MAX_ARGS = 4096


def split_words(command: str | list[str], *, max_args: int = MAX_ARGS, max_arg: int = 65536) -> list[str]:
    """A list as it is; a string split into words as a POSIX shell would (quotes respected, nothing
    expanded). Raises ValueError for an empty command, a NUL byte, or too much."""
    try:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError as exc:
        raise ValueError(f"cannot split the command: {exc}") from exc
    if not argv or not argv[0].strip():
        raise ValueError("the command is empty")
    if len(argv) > max_args or any("\x00" in arg or len(arg) > max_arg for arg in argv):
        raise ValueError("the command has a NUL byte, too many arguments or an over-long one")
    return argv
