"""A lean HTTP/1.1 response reader for the engine's large downloads.

Why not httpx for these: the engine sends archives and `docker save` output as ~8 KB chunks, and
each chunk goes through several layers of async generators in httpx/httpcore/h11. Reading a 10 MB
file out of a container took 0.3-0.45 s that way against 0.07 s for the same bytes read straight
off the socket (curl: 0.08 s). Here a dedicated connection is read in 1 MiB slices and the
chunked framing is undone in a tight loop. Requests are plain GETs without a body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

READ_SIZE = 1 << 20
MAX_HEAD = 64 * 1024


class RawStreamError(Exception):
    """The engine's answer broke the HTTP framing (or the connection dropped)."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    _reader: asyncio.StreamReader
    _writer: asyncio.StreamWriter
    _leftover: bytes

    async def body(self) -> AsyncIterator[bytes]:
        """The body, de-chunked, in slices of up to about 1 MiB."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            async for piece in self._chunked():
                yield piece
            return
        length = self.headers.get("content-length")
        remaining = int(length) if length is not None else None
        buffer = self._leftover
        self._leftover = b""
        while True:
            if buffer:
                if remaining is not None:
                    buffer = buffer[:remaining]
                    remaining -= len(buffer)
                yield buffer
            if remaining == 0:
                return
            buffer = await self._reader.read(READ_SIZE)
            if not buffer:
                if remaining:
                    raise RawStreamError("the engine closed the connection early")
                return

    async def _chunked(self) -> AsyncIterator[bytes]:
        """Undo the chunked framing. Data is handed on in large slices, but never held back while
        waiting for more (a followed log must not lag)."""
        buffer = bytearray(self._leftover)
        self._leftover = b""
        position = 0
        out = bytearray()
        while True:
            end = buffer.find(b"\r\n", position)
            while end < 0:  # the chunk header is not complete yet
                if out:
                    yield bytes(out)
                    out.clear()
                del buffer[:position]
                position = 0
                buffer += await self._more("inside a chunk header")
                end = buffer.find(b"\r\n")
            try:
                size = int(bytes(buffer[position:end]).split(b";", 1)[0], 16)
            except ValueError as exc:
                raise RawStreamError("malformed chunk header") from exc
            position = end + 2
            if size == 0:
                if out:
                    yield bytes(out)
                return  # trailers, if any, are ignored: the connection closes after this
            while size:
                available = len(buffer) - position
                if available == 0:
                    if out:
                        yield bytes(out)
                        out.clear()
                    buffer = bytearray(await self._more("inside a chunk"))
                    position = 0
                    continue
                take = min(size, available)
                out += buffer[position : position + take]
                position += take
                size -= take
            while len(buffer) - position < 2:  # the CRLF after the chunk's data
                del buffer[:position]
                position = 0
                buffer += await self._more("after a chunk")
            position += 2
            if len(out) >= READ_SIZE:
                yield bytes(out)
                out.clear()

    async def _more(self, where: str) -> bytes:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise RawStreamError(f"the engine closed the connection {where}")
        return data

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        data = bytearray()
        async for piece in self.body():
            data += piece
            if len(data) > limit:
                break
        return bytes(data[:limit])

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def get(
    *, uds: str | None, host: str | None, path: str, params: Mapping[str, str] | None, timeout: float
) -> RawResponse:
    """Send `GET path` on a new connection and read the response head."""
    if uds is not None:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(uds, limit=MAX_HEAD), timeout)
    else:
        assert host is not None
        name, _, port = host.rpartition(":")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(name, int(port), limit=MAX_HEAD), timeout
        )
    target = path + ("?" + urlencode(params) if params else "")
    writer.write(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            more = await asyncio.wait_for(reader.read(MAX_HEAD), timeout)
            if not more:
                raise RawStreamError("the engine closed the connection before answering")
            head += more
            if len(head) > MAX_HEAD * 2:
                raise RawStreamError("the engine's response head is too large")
        raw_head, _, leftover = head.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    except BaseException:
        writer.close()
        raise
    return RawResponse(status=status, headers=headers, _reader=reader, _writer=writer, _leftover=leftover)
