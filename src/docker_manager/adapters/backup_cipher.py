"""A byte stream sealed with a passphrase: argon2id for the key, libsodium's secretstream
(XChaCha20-Poly1305, PyNaCl) for the data. Nothing hand-made: the two are libsodium's own.

    DMBACKUP\\x01 | salt (16) | opslimit (u32) | memlimit (u64) | stream header (24) | frames

Each frame is a big-endian u32 length and one sealed chunk (at most CHUNK bytes of data). The last
chunk carries the FINAL tag: an archive cut anywhere ends without it and is refused, a changed
byte fails its chunk's tag, a wrong passphrase fails the first chunk. Memory stays at one chunk.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

from nacl import bindings, pwhash
from nacl.exceptions import CryptoError

MAGIC = b"DMBACKUP\x01"
CHUNK = 64 * 1024
# argon2id at libsodium's "moderate" work, a quarter of its memory: ~0.5 s and 64 MiB per key.
OPSLIMIT = pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT = pwhash.argon2id.MEMLIMIT_INTERACTIVE
MAX_MEMLIMIT = pwhash.argon2id.MEMLIMIT_SENSITIVE  # an archive asking for more is refused
# The key is stretched from the passphrase, so its length is what a guesser faces: shorter ones are
# refused when sealing (opening accepts what sealed it).
MIN_PASSPHRASE = 12
_PARAMS = struct.Struct(">16sIQ")
_LENGTH = struct.Struct(">I")
_HEADER_BYTES = bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_ABYTES = bindings.crypto_secretstream_xchacha20poly1305_ABYTES
_FINAL = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MESSAGE = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class SealedStreamError(Exception):
    """Not an archive of this kind, a wrong passphrase, or a damaged or cut archive."""


def _key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    if not passphrase:
        raise SealedStreamError("the passphrase is empty")
    key: bytes = pwhash.argon2id.kdf(
        bindings.crypto_secretstream_xchacha20poly1305_KEYBYTES, passphrase, salt, opslimit, memlimit
    )
    return key


class SealingWriter:
    """A write-only file object: what is written comes out sealed into `target`."""

    def __init__(self, target: Writable, passphrase: bytes) -> None:
        self._target = target
        salt = os.urandom(pwhash.argon2id.SALTBYTES)
        self._state = bindings.crypto_secretstream_xchacha20poly1305_state()
        header = bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, _key(passphrase, salt, OPSLIMIT, MEMLIMIT)
        )
        target.write(MAGIC + _PARAMS.pack(salt, OPSLIMIT, MEMLIMIT) + header)
        self._buffer = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # (the last chunk waits for close: it carries FINAL)
            self._push(bytes(self._buffer[:CHUNK]), _MESSAGE)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._target, "flush", None)  # (a stream's sink has none)
        if flush is not None:
            flush()

    def close(self) -> None:
        if not self.closed:
            self._push(bytes(self._buffer), _FINAL)
            self._buffer.clear()
            self.flush()
            self.closed = True

    def _push(self, chunk: bytes, tag: int) -> None:
        sealed = bindings.crypto_secretstream_xchacha20poly1305_push(self._state, chunk, None, tag)
        self._target.write(_LENGTH.pack(len(sealed)) + sealed)


class OpeningReader:
    """A read-only file object over a sealed stream: each chunk checked before any byte of it is
    given out; the end of the stream without the FINAL tag is an error, never a short read."""

    def __init__(self, source: Readable, passphrase: bytes) -> None:
        self._source = source
        head = source.read(len(MAGIC) + _PARAMS.size + _HEADER_BYTES)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise SealedStreamError("not a docker-manager backup (its first bytes are not DMBACKUP)")
        if len(head) < len(MAGIC) + _PARAMS.size + _HEADER_BYTES:
            raise SealedStreamError("the archive is cut short (in its header)")
        salt, opslimit, memlimit = _PARAMS.unpack_from(head, len(MAGIC))
        if memlimit > MAX_MEMLIMIT or opslimit > pwhash.argon2id.OPSLIMIT_SENSITIVE:
            raise SealedStreamError("the archive asks for more key work than any backup of this service")
        self._state = bindings.crypto_secretstream_xchacha20poly1305_state()
        key = _key(passphrase, salt, opslimit, memlimit)
        header = head[len(MAGIC) + _PARAMS.size :]
        bindings.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        self._buffer = b""
        self._ended = False
        self._first = True

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            self._buffer += self._pull()
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readable(self) -> bool:
        return True

    def _pull(self) -> bytes:
        length_bytes = self._source.read(_LENGTH.size)
        if len(length_bytes) < _LENGTH.size:
            raise SealedStreamError("the archive is cut short (no end mark)")
        (length,) = _LENGTH.unpack(length_bytes)
        if length > CHUNK + _ABYTES:
            raise SealedStreamError("the archive is damaged (a chunk longer than any written)")
        sealed = self._source.read(length)
        if len(sealed) < length:
            raise SealedStreamError("the archive is cut short (in a chunk)")
        try:
            chunk, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(self._state, sealed, None)
        except CryptoError:
            if self._first:
                raise SealedStreamError("wrong passphrase, or the archive is damaged") from None
            raise SealedStreamError("the archive is damaged (a chunk fails its check)") from None
        self._first = False
        if tag == _FINAL:
            self._ended = True
            if self._source.read(1):
                raise SealedStreamError("the archive has bytes after its end mark")
        return bytes(chunk)
