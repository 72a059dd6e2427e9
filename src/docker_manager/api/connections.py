"""The listener's guard: connections that hold a descriptor without making progress are closed.

uvicorn sets no deadline before a connection's first request head, nor after a response while the
peer keeps trickling bytes, and accepts as many connections as the process can open: 1,100 sockets
that never finish a head took every descriptor, and `/healthz`, admin calls and a running build's
log files failed with "Too many open files". Here, per connection:

- its request head must be complete within `header_timeout` of the connection opening or of the
  previous response ending (bytes that trickle in do not extend it), and its body within
  `body_timeout` of the head;
- an answer the peer does not read (the socket's buffers full, writing paused) is given up after
  `send_timeout` without progress, like nginx's `send_timeout` (pipelined requests behind an
  unread answer, or a stream nobody reads, hold nothing for longer);
- at most `max_connections` are open. Past that, a waiting connection is closed to make room: the
  one that has waited longest for its own request head, else the longest stalled answer, else the
  newest unfinished body. A caller whose request arrives at once is never the one closed, so
  `/healthz` and admin calls get through a flood; an answer that is being read is never closed
  (live streams are capped per token instead: `streaming.py`).

It is a subclass of uvicorn's httptools protocol (the one uvicorn picks when httptools is
installed, as the lock files pin it), hooking the parser's callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from docker_manager import metrics

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: task logs, the engine's socket,
# the database, nginx and git children, SFTP. A connection may hold two (an open file it sends).
RESERVED_DESCRIPTORS = 512
DESCRIPTORS_PER_CONNECTION = 2


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (Debian's soft default is 1,024); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    return soft


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    send_timeout: float

    @classmethod
    def fitted(
        cls, *, max_connections: int, header_timeout: float, body_timeout: float, send_timeout: float
    ) -> ConnectionLimits:
        """The limits, with connections kept below the open-files limit (raised first)."""
        open_files = raise_open_files_limit()
        room = max(open_files - RESERVED_DESCRIPTORS, open_files // 2) // DESCRIPTORS_PER_CONNECTION
        if room < max_connections:
            log.warning(
                "the open-files limit (%d) allows %d client connections, not DM_MAX_CONNECTIONS=%d",
                open_files,
                room,
                max_connections,
            )
        return cls(min(max_connections, room), header_timeout, body_timeout, send_timeout)


class ConnectionGuard:
    """The open connections, and those waiting for their own request (oldest first).

    Deadlines are checked by one sweep every `SWEEP` seconds rather than a timer per request
    (measured: a timer armed and cancelled per request cost ~5 % of the status route's rate): a
    connection may outlive its deadline by up to that much.
    """

    SWEEP = 0.5

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        # connection -> when it started waiting; insertion order is that order, so the first
        # is the one to close for room and the first whose deadline passes.
        self._heads: dict[GuardedProtocol, float] = {}
        self._bodies: dict[GuardedProtocol, float] = {}
        self._stalled: dict[GuardedProtocol, float] = {}  # answers whose writing is paused
        self._sweeping: asyncio.TimerHandle | None = None

    def admit(self, connection: GuardedProtocol) -> bool:
        """Count a new connection; False when there is no room even after closing a waiting one."""
        if self._sweeping is None:
            self._sweeping = connection.loop.call_later(self.SWEEP, self._sweep, connection.loop)
        if self.open >= self.limits.max_connections:
            victim = (
                next(iter(self._heads), None)
                or next(iter(self._stalled), None)
                # The newest body: a flood of trickled bodies closes its own, not an older upload.
                or next(reversed(self._bodies), None)
            )
            if victim is None:
                metrics.CONNECTIONS_CLOSED.labels(reason="full").inc()
                return False
            metrics.CONNECTIONS_CLOSED.labels(reason="evicted").inc()
            victim.close()
        self.open += 1
        return True

    def waiting_for_head(self, connection: GuardedProtocol, now: float) -> None:
        self._bodies.pop(connection, None)
        self._heads.pop(connection, None)
        self._heads[connection] = now

    def waiting_for_body(self, connection: GuardedProtocol, now: float) -> None:
        self._heads.pop(connection, None)
        self._bodies[connection] = now

    def served(self, connection: GuardedProtocol) -> None:
        self._heads.pop(connection, None)
        self._bodies.pop(connection, None)

    def stalled(self, connection: GuardedProtocol, now: float) -> None:
        self._stalled.setdefault(connection, now)

    def flowing(self, connection: GuardedProtocol) -> None:
        self._stalled.pop(connection, None)

    def gone(self, connection: GuardedProtocol) -> None:
        self.served(connection)
        self.flowing(connection)
        self.open -= 1

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for waiting, timeout, reason in (
            (self._heads, self.limits.header_timeout, "header_timeout"),
            (self._bodies, self.limits.body_timeout, "body_timeout"),
            (self._stalled, self.limits.send_timeout, "send_timeout"),
        ):
            expired = []
            for connection, since in waiting.items():
                if now - since < timeout:
                    break  # the rest started waiting later
                expired.append(connection)
            for connection in expired:
                metrics.CONNECTIONS_CLOSED.labels(reason=reason).inc()
                connection.close()
        self._sweeping = loop.call_later(self.SWEEP, self._sweep, loop) if self.open else None

    def protocol(self) -> type[asyncio.Protocol]:
        """The protocol class uvicorn instantiates per connection (`uvicorn.run(http=...)`)."""
        guard = self

        class Guarded(GuardedProtocol):
            pass

        Guarded.guard = guard
        return Guarded


class GuardedProtocol(HttpToolsProtocol):
    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False
        self._waiting_head = False

    # --- the connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.transport.abort()
            return
        self._counted = True
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.guard.gone(self)
        super().connection_lost(exc)

    def close(self) -> None:
        """Close now (a deadline passed, or room is needed); it no longer counts as open."""
        if self._counted:
            self._counted = False
            self.guard.gone(self)
        if not self.transport.is_closing():
            self.transport.abort()

    # --- the parser's callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._waiting_head:  # a head that starts while a request is answered (pipelined)
            self._wait_for_head()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._waiting_head = False
        if self._counted:
            self.guard.waiting_for_body(self, self.loop.time())

    def on_message_complete(self) -> None:
        answered = self.cycle is not None and self.cycle.response_complete
        super().on_message_complete()
        if answered:
            return  # the rest of a body nobody read (a refusal answered early): still waiting
        self.guard.served(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._counted:
            self.guard.stalled(self, self.loop.time())

    def resume_writing(self) -> None:
        super().resume_writing()
        self.guard.flowing(self)

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._wait_for_head()

    def _wait_for_head(self) -> None:
        """From now, a whole request head must come within the header timeout (bytes that trickle
        in do not extend it)."""
        if self._counted:
            self._waiting_head = True
            self.guard.waiting_for_head(self, self.loop.time())
