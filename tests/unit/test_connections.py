"""The listener's guard: who is closed for room, and when deadlines pass (pure logic; the flood
against a real server process is in tests/integration/test_hostile_callers.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from docker_manager.api.connections import ConnectionGuard, ConnectionLimits, GuardedProtocol


class Connection:
    def __init__(self, guard: ConnectionGuard, loop: asyncio.AbstractEventLoop) -> None:
        self.guard, self.loop, self.closed = guard, loop, False

    def close(self) -> None:
        self.closed = True
        self.guard.gone(cast(GuardedProtocol, self))


def guard_of(max_connections: int) -> ConnectionGuard:
    return ConnectionGuard(
        ConnectionLimits(max_connections, header_timeout=1.0, body_timeout=2.0, send_timeout=3.0)
    )


async def test_room_is_made_by_closing_the_one_waiting_longest_never_one_being_answered() -> None:
    loop = asyncio.get_running_loop()
    guard = guard_of(3)
    served, slow_head, slow_body = (Connection(guard, loop) for _ in range(3))
    for connection in (served, slow_head, slow_body):
        assert guard.admit(cast(Any, connection))
    guard.served(cast(Any, served))
    guard.waiting_for_head(cast(Any, slow_head), loop.time())
    guard.waiting_for_body(cast(Any, slow_body), loop.time())
    newcomer = Connection(guard, loop)
    assert guard.admit(cast(Any, newcomer)) and slow_head.closed and not served.closed
    guard.waiting_for_head(cast(Any, newcomer), loop.time())
    assert guard.admit(cast(Any, Connection(guard, loop))) and newcomer.closed  # heads go first
    assert guard.admit(cast(Any, Connection(guard, loop))) and slow_body.closed
    assert guard.open == 3
    # An answer its peer does not read (writing paused) is closed for room before any body.
    guard.stalled(cast(Any, served), loop.time())
    assert guard.admit(cast(Any, Connection(guard, loop))) and served.closed
    # Every place taken by requests being answered: the newcomer is the one refused.
    busy = list(guard._heads) + list(guard._bodies)
    for connection in busy:
        guard.served(connection)
    assert not guard.admit(cast(Any, Connection(guard, loop)))


async def test_a_deadline_counts_from_when_waiting_began_whatever_arrives_since() -> None:
    loop = asyncio.get_running_loop()
    guard = guard_of(10)
    head, body, answered = (Connection(guard, loop) for _ in range(3))
    for connection in (head, body, answered):
        guard.admit(cast(Any, connection))
    now = loop.time()
    guard.waiting_for_head(cast(Any, head), now - 1.5)  # started 1.5 s ago, head timeout 1 s
    guard.waiting_for_body(cast(Any, body), now - 1.5)  # body timeout 2 s: not yet
    guard.served(cast(Any, answered))
    guard._sweep(loop)
    assert head.closed and not body.closed and not answered.closed
    guard._bodies[cast(Any, body)] = now - 2.5
    guard._sweep(loop)
    assert body.closed and not answered.closed and guard.open == 1
    guard.stalled(cast(Any, answered), now - 3.5)  # nobody read its answer for 3.5 s (limit 3)
    guard._sweep(loop)
    assert answered.closed and guard.open == 0
