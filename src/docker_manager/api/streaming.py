"""Streaming responses: NDJSON, Server-Sent Events, and one JSON document kept alive while it is made.

None of them is buffered by a proxy (`X-Accel-Buffering: no`). A reader's stream (a task's events,
its log files, the dashboard's live log) holds a connection for as long as it likes, so it takes a
slot (`StreamSlots`): a token, and all readers together, may hold only so many at once. The answer
of the work itself (build-stream, run-stream) takes none: the task queue bounds those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from docker_manager import metrics
from docker_manager.auth import Principal
from docker_manager.errors import TooManyStreams

NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# While a document is being made, a space every few seconds keeps proxies and clients from timing
# out; leading whitespace is valid JSON, so `resp.json()` still works.
DOCUMENT_KEEPALIVE = 5.0

StreamFormat = Literal["ndjson", "sse"]


class StreamSlot:
    """One live stream's place; given back once, whichever way the stream ends."""

    def __init__(self, slots: StreamSlots, holder: str) -> None:
        self._slots: StreamSlots | None = slots
        self._holder = holder

    def release(self) -> None:
        if self._slots is not None:
            self._slots.give_back(self._holder)
            self._slots = None


class StreamSlots:
    """Live streams open at once, in all and per token: past either cap a new one is refused (429
    `too_many_streams`) before it starts. Without caps 1,000 event streams of one read token held
    1,030 descriptors and 57 MB."""

    def __init__(self, *, total: int, per_token: int) -> None:
        self._total = total
        self._per_token = per_token
        self._held: Counter[str] = Counter()
        self.open = 0

    def take(self, principal: Principal) -> StreamSlot:
        holder = principal.token_id
        if self.open >= self._total:
            metrics.STREAMS_REFUSED.labels(cap="total").inc()
            raise TooManyStreams(f"{self.open} live streams are open on this service; retry later")
        if self._held[holder] >= self._per_token:
            metrics.STREAMS_REFUSED.labels(cap="token").inc()
            raise TooManyStreams(
                f"this token has {self._held[holder]} live streams open (at most {self._per_token}); "
                "close one first"
            )
        self._held[holder] += 1
        self.open += 1
        return StreamSlot(self, holder)

    def give_back(self, holder: str) -> None:
        self.open -= 1
        self._held[holder] -= 1
        if self._held[holder] <= 0:
            del self._held[holder]


class _SlotStreamingResponse(StreamingResponse):
    """A streaming answer that gives its slot back when it ends (sent, failed, or the client gone,
    even before its body started)."""

    slot: StreamSlot | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.slot is not None:
                self.slot.release()


def streaming(
    body: AsyncIterator[bytes],
    media_type: str,
    slot: StreamSlot | None,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    response = _SlotStreamingResponse(body, media_type=media_type, headers=headers or NO_BUFFERING)
    response.slot = slot
    return response


def _dumps(item: Any) -> str:
    return json.dumps(item, default=str, ensure_ascii=False, separators=(",", ":"))


def wanted_stream(request: Request, format: str | None = None) -> StreamFormat | None:
    """The live stream a client asked for (`?format=` or `Accept`), or None for one JSON document."""
    if format in ("ndjson", "sse"):
        return format  # type: ignore[return-value]
    accept = request.headers.get("accept", "")
    if "application/x-ndjson" in accept or "application/jsonl" in accept:
        return "ndjson"
    if "text/event-stream" in accept:
        return "sse"
    return None


def ndjson(items: AsyncIterator[dict[str, Any] | None], slot: StreamSlot | None) -> StreamingResponse:
    """One JSON object per line; None becomes an empty line (a keep-alive readers skip)."""

    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            yield b"\n" if item is None else (_dumps(item) + "\n").encode()

    return streaming(body(), "application/x-ndjson", slot)


def sse(
    items: AsyncIterator[tuple[int, str, dict[str, Any]] | None], slot: StreamSlot | None
) -> StreamingResponse:
    """Events as (id, event name, data); None becomes a keep-alive comment."""

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for item in items:
            if item is None:
                yield b": keep-alive\n\n"
                continue
            event_id, name, data = item
            yield f"id: {event_id}\nevent: {name}\ndata: {_dumps(data)}\n\n".encode()

    return streaming(body(), "text/event-stream", slot)


def live(
    items: AsyncIterator[dict[str, Any]], kind: StreamFormat, slot: StreamSlot | None
) -> StreamingResponse:
    """`items` as NDJSON, or as SSE numbered in order (`end` for the last, `line` for the rest)."""
    if kind == "ndjson":
        return ndjson(items, slot)

    async def numbered() -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        number = 0
        async for item in items:
            number += 1
            yield number, "line" if "line" in item or "stream" in item else "step", item

    return sse(numbered(), slot)


def json_document(result: Awaitable[dict[str, Any]], slot: StreamSlot | None) -> StreamingResponse:
    """One JSON document, sent when `result` is ready; whitespace keeps the connection alive
    meanwhile. A client that goes away cancels `result`."""

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.ensure_future(result)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=DOCUMENT_KEEPALIVE)
                if not task.done():
                    yield b" "
            yield _dumps(task.result()).encode()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return streaming(body(), "application/json", slot)
