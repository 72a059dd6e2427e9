"""Bridging blocking producers (tar writers, file readers) into async iterators with backpressure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

_DONE = object()


class ChunkSink:
    """Handed to a producer running in a thread: `write()` blocks while the consumer is behind."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], depth: int) -> None:
        self._loop = loop
        self._queue = queue
        self._slots = threading.Semaphore(depth)
        self.stopped = threading.Event()

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        # Wait for room, but give up promptly if the consumer went away (client gone, cancel).
        while not self._slots.acquire(timeout=0.25):
            if self.stopped.is_set():
                raise _ConsumerGone
        if self.stopped.is_set():
            raise _ConsumerGone
        self._loop.call_soon_threadsafe(self._queue.put_nowait, bytes(data))
        return len(data)

    def _finish(self, item: object) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def release(self) -> None:
        self._slots.release()


class _ConsumerGone(Exception):
    """Raised inside the producer thread when nobody reads any more."""


async def iterate_in_thread(
    producer: Callable[[ChunkSink], None], *, depth: int = 8
) -> AsyncGenerator[bytes, None]:
    """Run `producer(sink)` in a thread and yield what it writes, at most `depth` chunks ahead.

    An exception raised by the producer is re-raised here, unchanged, after the chunks before it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    sink = ChunkSink(loop, queue, depth)

    def run() -> None:
        try:
            producer(sink)
        except _ConsumerGone:
            return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            sink._finish(_Failure(exc))
            return
        sink._finish(_DONE)

    thread = threading.Thread(target=run, name="chunk-producer", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            sink.release()
            yield item
    finally:
        sink.stopped.set()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
