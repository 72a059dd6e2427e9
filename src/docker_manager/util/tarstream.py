"""Reading a tar stream as it arrives, without buffering it or extracting anything.

Enough of the format for what the Docker engine produces (Go's archive/tar): ustar headers with
prefixes, PAX extended headers (long names, big sizes, precise times) and GNU long names.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass

BLOCK = 512

TYPES = {
    b"0": "file",
    b"\x00": "file",
    b"7": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char_device",
    b"4": "block_device",
    b"5": "directory",
    b"6": "fifo",
}


class TarFormatError(Exception):
    """The stream is not a tar archive we can read."""


@dataclass
class TarEntry:
    name: str
    type: str
    size: int
    mode: int
    mtime: float
    link_target: str | None
    uid: int
    gid: int

    @property
    def permissions(self) -> str:
        return stat.filemode(self.mode & 0o7777 | _TYPE_BITS.get(self.type, stat.S_IFREG))


_TYPE_BITS = {
    "file": stat.S_IFREG,
    "hardlink": stat.S_IFREG,
    "directory": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "char_device": stat.S_IFCHR,
    "block_device": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
}


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256, for values octal cannot hold
        value = int.from_bytes(field, "big") & ~(0x80 << (8 * (len(field) - 1)))
        return value
    text = field.split(b"\x00", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.index(b" ", position)
        length = int(data[position:space])
        record = data[space + 1 : position + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode()] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


class TarReader:
    """Feed it the stream's chunks; `entries()` yields each member and its data as it comes."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        # Unconsumed bytes are buffer[pos:]; consuming moves `pos`, so taking a 512-byte header
        # never shifts a megabyte of buffered data (that made listing 10,000 files crawl).
        self._buffer = bytearray()
        self._pos = 0

    @property
    def available(self) -> int:
        return len(self._buffer) - self._pos

    async def _fill(self, size: int) -> bool:
        while self.available < size:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                return False
            if self._pos:
                del self._buffer[: self._pos]
                self._pos = 0
            self._buffer += chunk
        return True

    async def _take(self, size: int) -> bytes:
        if not await self._fill(size):
            raise TarFormatError("the archive ended in the middle of a member")
        data = bytes(self._buffer[self._pos : self._pos + size])
        self._pos += size
        return data

    def _consume(self, limit: int) -> bytes:
        piece = bytes(self._buffer[self._pos : self._pos + limit])
        self._pos += len(piece)
        return piece

    async def _skip(self, size: int) -> None:
        while size > 0:
            if not self.available and not await self._fill(1):
                raise TarFormatError("the archive ended in the middle of a member")
            step = min(size, self.available)
            self._pos += step
            size -= step

    async def entries(self) -> AsyncIterator[tuple[TarEntry, DataReader]]:
        """Members in order. Data a caller leaves unread is skipped before the next header."""
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            if not await self._fill(BLOCK):
                return
            header = await self._take(BLOCK)
            if header == b"\x00" * BLOCK:
                return  # end-of-archive marker
            kind = header[156:157]
            size = _number(header[124:136])
            padded = -(-size // BLOCK) * BLOCK
            if kind in (b"x", b"g"):
                records = _pax((await self._take(padded))[:size])
                if kind == b"x":
                    pax.update(records)
                continue
            if kind in (b"L", b"K"):
                value = _text(await self._take(padded))
                if kind == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            name = _text(header[0:100])
            prefix = _text(header[345:500]) if header[257:262] == b"ustar" else ""
            if prefix:
                name = f"{prefix}/{name}"
            entry = TarEntry(
                name=(pax.get("path") or long_name or name).rstrip("/"),
                type=TYPES.get(kind, "other"),
                size=int(pax.get("size", size)),
                mode=_number(header[100:108]),
                mtime=float(pax.get("mtime", _number(header[136:148]))),
                link_target=(pax.get("linkpath") or long_link or _text(header[157:257])) or None,
                uid=int(pax.get("uid", _number(header[108:116]))),
                gid=int(pax.get("gid", _number(header[116:124]))),
            )
            size = entry.size if entry.type == "file" else 0
            padded = -(-size // BLOCK) * BLOCK
            pax, long_name, long_link = {}, None, None
            reader = DataReader(self, size)
            yield entry, reader
            await self._skip(reader.remaining + (padded - size))


class DataReader:
    """The data of one member, read in pieces as they arrive."""

    def __init__(self, tar: TarReader, size: int) -> None:
        self._tar = tar
        self.remaining = size

    async def skip(self, size: int) -> None:
        size = min(size, self.remaining)
        await self._tar._skip(size)
        self.remaining -= size

    async def chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """Up to `limit` bytes (all that is left by default), as they arrive."""
        left = self.remaining if limit is None else min(limit, self.remaining)
        while left > 0:
            if not self._tar.available and not await self._tar._fill(1):
                raise TarFormatError("the archive ended in the middle of a member")
            piece = self._tar._consume(left)
            left -= len(piece)
            self.remaining -= len(piece)
            yield piece
