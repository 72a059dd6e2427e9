"""Readers for the engine's two stream formats: JSON progress lines and multiplexed frames."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from enum import IntEnum
from typing import Any

from docker_manager.errors import EngineError


class StreamId(IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2


class ProgressError(Exception):
    """An in-band error in a JSON progress stream (the HTTP status was 200)."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.record = record


def progress_error(record: dict[str, Any]) -> str | None:
    """The error message carried by one progress record, if it carries one."""
    detail = record.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    if record.get("error"):
        return str(record["error"])
    return None


async def json_progress(lines: AsyncIterator[str]) -> AsyncGenerator[dict[str, Any], None]:
    """Yield each JSON record; raise `ProgressError` on the first in-band error record.

    The error record is not yielded: callers see it as the exception, with the record attached.
    The line iterator is closed here whatever happens: left suspended after an error, it would be
    finalized later by the garbage collector, on whatever loop is running then.
    """
    try:
        async for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EngineError(f"engine sent a malformed progress line: {line[:200]!r}") from exc
            if not isinstance(record, dict):
                continue
            message = progress_error(record)
            if message is not None:
                raise ProgressError(message, record)
            yield record
    finally:
        close = getattr(lines, "aclose", None)
        if close is not None:
            await close()


_HEADER = struct.Struct(">BxxxL")


async def demux(chunks: AsyncIterator[bytes]) -> AsyncGenerator[tuple[StreamId, bytes], None]:
    """Split the engine's multiplexed stream into (stream, payload) frames.

    Each frame is an 8-byte header (stream id, 3 zero bytes, big-endian payload length) followed by
    the payload. Frames arrive split across or merged within HTTP chunks, so bytes are buffered
    until a whole frame is there.
    """
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            stream_id, size = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            payload = bytes(buffer[_HEADER.size : _HEADER.size + size])
            del buffer[: _HEADER.size + size]
            # Id 3 ("systemerr") appears on some engines for errors of the engine itself.
            yield (StreamId(stream_id) if stream_id <= StreamId.STDERR else StreamId.STDERR), payload
    if buffer:
        raise EngineError("multiplexed stream ended in the middle of a frame")
