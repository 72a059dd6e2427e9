"""Following a task live: replay from the store after a sequence number, then live events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from docker_manager.runner.bus import EventBus
from docker_manager.runner.models import TaskEvent
from docker_manager.runner.store import TaskStore

REPLAY_PAGE = 500


def is_final(event: TaskEvent) -> bool:
    return bool(event.data.get("final"))


async def follow(
    store: TaskStore,
    bus: EventBus,
    task_id: str,
    *,
    after: int = 0,
    keepalive: float = 15.0,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[TaskEvent | None]:
    """Yield the task's events with seq > `after`, in order, until its final event.

    Yields None every `keepalive` seconds of silence (for SSE comments). Ends early when `stop`
    is set (service shutdown). The store is the source of truth: the live bus only spares a
    query per event, and any gap is filled from the store.
    """
    record = await store.get(task_id, with_events=False)  # NotFound for unknown ids
    last = after
    with bus.subscribe(task_id) as subscription:
        while True:
            # Catch up from the store: at the start, after a gap, and after every quiet spell.
            while True:
                events = await store.events_after(task_id, last, limit=REPLAY_PAGE)
                for stored in events:
                    yield stored
                    last = stored.seq
                    if is_final(stored):
                        return
                if len(events) < REPLAY_PAGE:
                    break
            if last == after and record.status.final:
                return  # asked for events after the final one: there will be none
            subscription.gap = False
            while not subscription.gap:
                if stop is not None and stop.is_set():
                    return
                event = await subscription.next(timeout=keepalive)
                if event is None:
                    if not subscription.queue.empty():
                        continue
                    yield None
                    break  # re-check the store (covers a missed close and a stalled bus)
                if event.seq <= last:
                    continue
                if event.seq != last + 1:
                    break  # a gap: fill it from the store
                yield event
                last = event.seq
                if is_final(event):
                    return
