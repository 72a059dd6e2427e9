"""A tiny time-bounded cache with single flight: concurrent callers share one load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlightCache(Generic[T]):
    """Remembers each key's value for `ttl` seconds; a miss is loaded once however many ask."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[Hashable, tuple[float, asyncio.Future[T]]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and (not entry[1].done() or entry[0] > now):
            return await asyncio.shield(entry[1])
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now + self._ttl, future)
        try:
            value = await load()
        except BaseException as exc:
            self._entries.pop(key, None)
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        future.set_result(value)
        return value

    def clear(self) -> None:
        """Forget everything (after a change the caller must see at once)."""
        self._entries.clear()
