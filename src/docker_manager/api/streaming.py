"""Streaming responses: NDJSON, Server-Sent Events, and one JSON document kept alive while it is made.

None of them is buffered by a proxy (`X-Accel-Buffering: no`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import StreamingResponse

NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# While a document is being made, a space every few seconds keeps proxies and clients from timing
# out; leading whitespace is valid JSON, so `resp.json()` still works.
DOCUMENT_KEEPALIVE = 5.0

StreamFormat = Literal["ndjson", "sse"]


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


def ndjson(items: AsyncIterator[dict[str, Any] | None]) -> StreamingResponse:
    """One JSON object per line; None becomes an empty line (a keep-alive readers skip)."""

    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            yield b"\n" if item is None else (_dumps(item) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson", headers=NO_BUFFERING)


def sse(items: AsyncIterator[tuple[int, str, dict[str, Any]] | None]) -> StreamingResponse:
    """Events as (id, event name, data); None becomes a keep-alive comment."""

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for item in items:
            if item is None:
                yield b": keep-alive\n\n"
                continue
            event_id, name, data = item
            yield f"id: {event_id}\nevent: {name}\ndata: {_dumps(data)}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream", headers=NO_BUFFERING)


def live(items: AsyncIterator[dict[str, Any]], kind: StreamFormat) -> StreamingResponse:
    """`items` as NDJSON, or as SSE numbered in order (`end` for the last, `line` for the rest)."""
    if kind == "ndjson":
        return ndjson(items)

    async def numbered() -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        number = 0
        async for item in items:
            number += 1
            yield number, "line" if "line" in item or "stream" in item else "step", item

    return sse(numbered())


def json_document(result: Awaitable[dict[str, Any]]) -> StreamingResponse:
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

    return StreamingResponse(body(), media_type="application/json", headers=NO_BUFFERING)
