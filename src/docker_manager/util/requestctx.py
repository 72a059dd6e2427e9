"""Which request (and which task) the running code serves, for logs, tasks and the audit log.

Context variables: the request's id is set by the HTTP middleware and copied into every asyncio
task started while it runs, so a task started by a request carries the request's id.
"""

from __future__ import annotations

import itertools
import re
import secrets
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TASK_ID: ContextVar[str | None] = ContextVar("task_id", default=None)

# What a caller's X-Request-ID may be to be kept: short, printable, no spaces or quotes.
_SANE = re.compile(r"^[A-Za-z0-9._:@/+=-]{8,64}$")


# New ids: this process's random half, then a counter (a syscall per request showed in profiles).
_PROCESS = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def request_id_from(header: str | None) -> str:
    """The caller's id when it is sane, else a new one (16 hex digits, unique in this process)."""
    if header and _SANE.fullmatch(header):
        return header
    return f"req-{_PROCESS}{next(_COUNTER) & 0xFFFFFFFF:08x}"
