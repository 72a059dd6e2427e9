"""Streaming responses: NDJSON and Server-Sent Events, never buffered by a proxy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _dumps(item: Any) -> str:
    return json.dumps(item, default=str, ensure_ascii=False, separators=(",", ":"))


def ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            yield (_dumps(item) + "\n").encode()

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
