"""Streaming lz4 frame compression to a file: constant memory, no intermediate tar on disk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import lz4.frame

CHUNK = 1 << 20


@dataclass(frozen=True)
class CompressedFile:
    path: Path
    size: int
    sha256: str
    raw_size: int


class _Writer:
    """Compress, hash and write; every call runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        self._compressor = lz4.frame.LZ4FrameCompressor(
            block_size=lz4.frame.BLOCKSIZE_MAX4MB, content_checksum=True
        )
        self._hash = hashlib.sha256()
        self.size = 0
        self.raw_size = 0

    def _out(self, data: bytes) -> None:
        if data:
            self._hash.update(data)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self.size += len(data)

    def begin(self) -> None:
        self._out(self._compressor.begin())

    def feed(self, data: bytes) -> None:
        self.raw_size += len(data)
        self._out(self._compressor.compress(data))

    def finish(self) -> str:
        self._out(self._compressor.flush())
        os.fsync(self._fd)
        return self._hash.hexdigest()

    def close(self) -> None:
        os.close(self._fd)


async def compress_to_file(chunks: AsyncIterator[bytes], path: Path) -> CompressedFile:
    """Write `chunks` lz4-compressed to `path` (via `path.part`, renamed when complete).

    On any failure (or cancellation) the partial file is removed.
    """
    part = path.with_name(path.name + ".part")
    writer = await asyncio.to_thread(_Writer, part)
    try:
        await asyncio.to_thread(writer.begin)
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= CHUNK:
                data, buffer = bytes(buffer), bytearray()
                await asyncio.to_thread(writer.feed, data)
        if buffer:
            await asyncio.to_thread(writer.feed, bytes(buffer))
        digest = await asyncio.to_thread(writer.finish)
        await asyncio.to_thread(writer.close)
        await asyncio.to_thread(os.replace, part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise
    return CompressedFile(path=path, size=writer.size, sha256=digest, raw_size=writer.raw_size)
