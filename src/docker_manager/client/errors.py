"""What the remote commands end with: exit codes, and the errors that carry one (no HTTP library
here: a command that never calls the server does not load one)."""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class ClientError(Exception):
    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code


class StreamBroken(Exception):
    """The event stream ended before the task did (a proxy, a restart, the network)."""
