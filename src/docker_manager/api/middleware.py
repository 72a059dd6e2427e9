"""Pure-ASGI guards that run before any route: Host header, authentication, request body cap."""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import deque
from collections.abc import Iterable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docker_manager.api.errors import send_error
from docker_manager.db.engine import database_error
from docker_manager.errors import InvalidHost, PayloadTooLarge, TooManyFailures, Unauthorized


def host_only(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8002
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_challenge(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope.get("path", "")).startswith("/.well-known/acme-challenge/")


class TrustedHostGuard:
    """Refuse requests whose `Host` is not one of ours (DNS rebinding), with a JSON 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}
        self.allow_any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # (A CA's HTTP-01 fetch arrives through nginx whatever Host it named: public, token-only.)
        if scope["type"] not in ("http", "websocket") or self.allow_any or _is_challenge(scope):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = host_only(value.decode("latin-1"))
                break
        if host not in self.allowed:
            await send_error(send, InvalidHost("the Host header is not one this service answers to"))
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
                await send_error(send, PayloadTooLarge(f"request body is over {limit} bytes"))
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
                await send_error(send, PayloadTooLarge(f"request body is over {limit} bytes"))


class FailureLimiter:
    """Failed authentications per client address: past `limit` in `window` seconds, the address
    is refused (429) for `window` seconds. Keyed by `peer_of`: X-Forwarded-For only from a trusted
    proxy (a caller could rotate it to reset the count)."""

    def __init__(self, *, limit: int, window: float, max_clients: int = 10_000) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        until = self._blocked.get(client)
        if until is None:
            return None
        now = time.monotonic()
        if until <= now:
            del self._blocked[client]
            return None
        return max(int(until - now) + 1, 1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        if client not in self._failures and len(self._failures) >= self._max_clients:
            self._failures.pop(next(iter(self._failures)))  # the oldest entry goes
        if len(self._blocked) >= self._max_clients:
            self._blocked = {k: v for k, v in self._blocked.items() if v > now}
        times = self._failures.setdefault(client, deque())
        times.append(now)
        while times and times[0] < now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            self._blocked[client] = now + self._window
            times.clear()


# Where a request came from when a forwarding header may have replaced the peer address and no
# proxy was named as trusted: every such request shares this one key (rotating the header then
# changes nothing), and the audit records it instead of an address the caller wrote.
UNVERIFIED_PEER = "unverified-forwarded"
_FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def peer_of(scope: Scope) -> str:
    """The client's address as this service may believe it.

    `docker-manager serve` runs uvicorn with forwarding headers off unless DM_TRUSTED_PROXIES names
    proxies (then uvicorn takes the client from those proxies' X-Forwarded-For only), and says so in
    `app.state.peer_verified`. Under a server started otherwise (`uvicorn main:app`, whose default
    believes X-Forwarded-For from any loopback peer) a request that carries a forwarding header
    has an unknown origin.
    """
    client = scope.get("client")
    address = str(client[0]) if client else "unknown"
    state = getattr(scope.get("app"), "state", None)
    if getattr(state, "peer_verified", False):
        return address
    if any(name in _FORWARDING_HEADERS for name, _ in scope.get("headers", [])):
        return UNVERIFIED_PEER
    return address


@functools.lru_cache(maxsize=4096)
def client_key(address: str) -> str:
    """What failures are counted by: the address, or an IPv6 address's /64 (one host's range)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


class AuthGate:
    """Authenticate from the headers alone, before any body is read or parsed.

    Without it, FastAPI would read and parse a request's body before the token dependency runs: a
    caller without a token could make the server parse megabytes per request. A valid token's
    principal is handed on in the request state; the route's dependency still checks the scope.
    Failed attempts are counted per client address (`FailureLimiter`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        public_paths: Iterable[str],
        public_prefixes: Iterable[str] = (),
        limiter: FailureLimiter,
    ) -> None:
        self.app = app
        self.public = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.limiter = limiter

    def _is_public(self, path: str) -> bool:
        return path in self.public or (bool(self.public_prefixes) and path.startswith(self.public_prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self._is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = client_key(peer_of(scope))
        header = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await send_error(send, Unauthorized("a bearer token is required"))
            return
        try:
            principal = await scope["app"].state.runtime.tokens.authenticate(token)
        except (DBAPIError, PoolTimeout, ConnectionError) as exc:
            await send_error(send, database_error(exc))
            return
        if principal is None:
            # Only failures are limited: a valid token is never refused because others behind the
            # same address (a proxy, loopback) guessed wrong.
            self.limiter.failed(client)
            wait = self.limiter.retry_after(client)
            if wait is not None:
                failures = "too many failed authentications from this address; wait and retry"
                await send_error(send, TooManyFailures(failures, retry_after=wait))
                return
            await send_error(send, Unauthorized("unknown, expired or revoked token"))
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
