"""In-process fan-out of task events to live followers.

The database is the source of truth; the bus only saves followers a query per event. A follower
that falls behind (its bounded queue is full) is marked as having a gap and re-reads the store.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from docker_manager.runner.models import TaskEvent

QUEUE_DEPTH = 1000


_CLOSED = object()


class Subscription:
    """A follower's bounded queue of events."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_DEPTH)
        self.gap = False

    def offer(self, item: object) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.gap = True

    async def next(self, timeout: float) -> TaskEvent | None:
        """The next event; None after `timeout` seconds or when the task has ended.

        On None the follower re-reads the store: that covers gaps, the end, and keep-alives.
        """
        try:
            async with asyncio.timeout(timeout):
                item = await self.queue.get()
        except TimeoutError:
            return None
        return item if isinstance(item, TaskEvent) else None


class EventBus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    @contextmanager
    def subscribe(self, task_id: str) -> Iterator[Subscription]:
        subscription = Subscription()
        self._subscribers[task_id].add(subscription)
        try:
            yield subscription
        finally:
            followers = self._subscribers.get(task_id)
            if followers is not None:
                followers.discard(subscription)
                if not followers:
                    del self._subscribers[task_id]

    def publish(self, event: TaskEvent) -> None:
        for subscription in self._subscribers.get(event.task_id, ()):
            subscription.offer(event)

    def close(self, task_id: str) -> None:
        """The task is final: wake its followers so they can finish."""
        for subscription in self._subscribers.get(task_id, ()):
            subscription.offer(_CLOSED)
