"""The engine's stream formats: multiplexed frames and JSON progress with in-band errors."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

from docker_manager.adapters.docker.streams import ProgressError, StreamId, demux, json_progress
from docker_manager.errors import EngineError


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_demux_keeps_streams_apart_across_chunk_boundaries() -> None:
    raw = frame(1, b"out-1\n") + frame(2, b"err-1\n") + frame(1, b"out-2\n")
    # Split in awkward places: inside a header and inside a payload.
    parts = [raw[:3], raw[3:10], raw[10:17], raw[17:]]
    got = [item async for item in demux(chunks(*parts))]
    assert got == [
        (StreamId.STDOUT, b"out-1\n"),
        (StreamId.STDERR, b"err-1\n"),
        (StreamId.STDOUT, b"out-2\n"),
    ]


async def test_demux_refuses_a_truncated_frame() -> None:
    with pytest.raises(EngineError):
        _ = [item async for item in demux(chunks(frame(1, b"hello")[:-2]))]


async def test_progress_turns_in_band_errors_into_exceptions() -> None:
    stream = json_progress(
        lines(
            '{"stream":"Step 1/2 : FROM bb"}',
            "",
            '{"errorDetail":{"message":"boom"},"error":"boom"}',
            '{"stream":"never seen"}',
        )
    )
    seen = []
    with pytest.raises(ProgressError) as info:
        async for record in stream:
            seen.append(record)
    assert seen == [{"stream": "Step 1/2 : FROM bb"}]
    assert info.value.message == "boom"


async def test_progress_refuses_garbage() -> None:
    with pytest.raises(EngineError):
        _ = [r async for r in json_progress(lines("not json"))]


async def test_json_progress_closes_its_lines_when_an_error_record_ends_it() -> None:
    """Left suspended, the line iterator (an HTTP response's) would be finalized by the garbage
    collector later, on whatever event loop runs then."""
    closed = False

    async def engine_lines() -> AsyncIterator[str]:
        nonlocal closed
        try:
            yield '{"stream": "Step 1/2"}'
            yield '{"errorDetail": {"message": "boom"}, "error": "boom"}'
            yield '{"stream": "never read"}'
        finally:
            closed = True

    with pytest.raises(ProgressError):
        async for _ in json_progress(engine_lines()):
            pass
    assert closed
