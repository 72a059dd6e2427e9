"""Pure-ASGI guards that run before any route: Host header check and request body cap."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"code": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_only(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8002
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class TrustedHostGuard:
    """Refuse requests whose `Host` is not one of ours (DNS rebinding), with a JSON 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}
        self.allow_any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allow_any:
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = _host_only(value.decode("latin-1"))
                break
        if host not in self.allowed:
            await _send_error(send, 400, "invalid_host", "the Host header is not one this service answers to")
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the cap.

    An HTTPException, because FastAPI re-raises those from body parsing (any other exception there
    becomes a generic 400); the app's handler turns it into the usual JSON error.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over {max_bytes} bytes")


class BodySizeLimit:
    """Cap request bodies by counting the bytes as they arrive (chunked bodies included).

    A declared Content-Length above the cap is refused before the body is read at all.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_error(send, 413, "payload_too_large", f"request body is over {limit} bytes")
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_error(send, 413, "payload_too_large", f"request body is over {limit} bytes")
