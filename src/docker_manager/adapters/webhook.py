"""POSTing JSON to the external log stream over one kept-alive HTTP/1.1 connection.

Why not httpx2 here: the original's receivers expect one POST per output line, and a 20,000-line
command must reach them within seconds. httpx2 managed about 750 POSTs per second on loopback
(most of it in its layers of async generators); writing the request and reading the answer's
head on a plain asyncio stream manages several thousand. Only what a log receiver needs is
supported: http and https, a Content-Length or chunked answer (its body is read and dropped), no
redirects, no proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
MAX_DRAIN = 1 << 20


class WebhookError(Exception):
    """The POST did not get an HTTP answer (connection refused, reset, timed out, garbled)."""


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    tls: bool
    path: str
    host_header: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the log stream endpoint must be an http:// or https:// URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = port == (443 if tls else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return _Target(parts.hostname, port, tls, path, host if default else f"{host}:{port}")


class WebhookClient:
    """One connection, reused while the receiver keeps it open; reopened when it does not."""

    def __init__(self, url: str, *, headers: dict[str, str], timeout: float) -> None:
        self._target = _target(url)
        self._timeout = timeout
        fixed = {"Host": self._target.host_header, "Content-Type": "application/json", **headers}
        # Header values come from the operator's config; CR/LF in them would split the request.
        if any("\r" in k or "\n" in k or "\r" in v or "\n" in v for k, v in fixed.items()):
            raise ValueError("log stream headers may not contain line breaks")
        self._head = "".join(f"{key}: {value}\r\n" for key, value in fixed.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, *, extra_headers: dict[str, str] | None = None) -> int:
        """POST `body`; the answer's status code. Raises WebhookError when there is no answer."""
        extra = "".join(f"{key}: {value}\r\n" for key, value in (extra_headers or {}).items())
        request = (
            f"POST {self._target.path} HTTP/1.1\r\n{self._head}{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        # A kept-alive connection may have been closed by the receiver meanwhile: one fresh retry
        # for a reused connection (the request may then arrive twice: delivery is at least once).
        reused = self._writer is not None
        try:
            return await asyncio.wait_for(self._exchange(request), self._timeout)
        except (OSError, asyncio.IncompleteReadError, WebhookError, TimeoutError) as exc:
            await self.close()
            if not reused or isinstance(exc, TimeoutError):
                raise _as_error(exc) from exc
        try:
            return await asyncio.wait_for(self._exchange(request), self._timeout)
        except (OSError, asyncio.IncompleteReadError, WebhookError, TimeoutError) as exc:
            await self.close()
            raise _as_error(exc) from exc

    async def _exchange(self, request: bytes) -> int:
        if self._writer is None:
            context = ssl.create_default_context() if self._target.tls else None
            self._reader, self._writer = await asyncio.open_connection(
                self._target.host, self._target.port, ssl=context, limit=MAX_HEAD
            )
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            status = int(rest[:3])
        except ValueError as exc:
            raise WebhookError("the receiver's answer is not HTTP") from exc
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip().lower()
        keep = await self._drain(headers, status)
        if not keep or headers.get("connection") == "close" or version == "HTTP/1.0":
            await self.close()
        return status

    async def _drain(self, headers: dict[str, str], status: int) -> bool:
        """Read and drop the answer's body; False when the connection cannot be reused."""
        assert self._reader is not None
        if status in (204, 304) or 100 <= status < 200:
            return True
        if headers.get("transfer-encoding") == "chunked":
            total = 0
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                total += size
                if total > MAX_DRAIN:
                    return False
                await self._reader.readexactly(size + 2)
                if size == 0:
                    return True
        length = headers.get("content-length")
        if length is None:
            return False  # the body ends when the connection does
        size = int(length)
        if size > MAX_DRAIN:
            return False
        await self._reader.readexactly(size)
        return True

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _as_error(exc: BaseException) -> WebhookError:
    if isinstance(exc, WebhookError):
        return exc
    if isinstance(exc, TimeoutError):
        return WebhookError("the receiver did not answer in time")
    return WebhookError(f"{type(exc).__name__}: {exc}".rstrip(": "))
