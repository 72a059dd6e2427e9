"""Every request observed once: its id, its metrics, and (when it changes state or was refused) its
audit entry, written before the answer leaves.

A pure-ASGI middleware just outside authentication, so refused requests are seen too. The request
id (the caller's `X-Request-ID` when sane, else a new one) is returned in the answer, set in a
context variable (log lines, and the tasks the request starts, carry it) and stored in the audit
entry. Targets for the audit entry come from the path parameters and, for JSON bodies up to
64 KiB, from an allowlist of body fields read as the body passes through.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docker_manager import metrics
from docker_manager.api.middleware import client_key, peer_of
from docker_manager.errors import (
    DockerManagerError,
    Forbidden,
    PayloadTooLarge,
    TooManyFailures,
    Unauthorized,
)
from docker_manager.services.observability.audit import AuditEntry, AuditLog, targets_from
from docker_manager.util.requestctx import REQUEST_ID, request_id_from

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
DENIED = frozenset({401, 403, 429})
MAX_SNIFFED_BODY = 64 << 10
# Answers whose code is not in a JSON body the observer can wait for.
_DEFAULT_CODES = {
    401: Unauthorized.code,
    403: Forbidden.code,
    413: PayloadTooLarge.code,
    429: TooManyFailures.code,
}


UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/apps/{app_id}/rollback`), never the raw path."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(candidate.path)
    return UNMATCHED


class DenialThrottle:
    """Refused requests, and every request without valid credentials whatever its answer, are
    audited one by one up to `limit` a minute per client address; beyond that they are counted and
    the count goes into the next entry written (a flood must not fill the database)."""

    def __init__(self, limit: int = 30, window: float = 60.0, max_clients: int = 10_000) -> None:
        self._limit, self._window, self._max = limit, window, max_clients
        self._seen: dict[str, tuple[float, int, int]] = {}  # client -> (window start, written, skipped)

    def admit(self, client: str) -> int | None:
        """None: skip this one. Else the number skipped before it (to record with it)."""
        now = time.monotonic()
        start, written, skipped = self._seen.get(client, (now, 0, 0))
        if now - start > self._window:
            start, written = now, 0
        if written >= self._limit:
            self._seen[client] = (start, written, skipped + 1)
            return None
        if client not in self._seen and len(self._seen) >= self._max:
            self._seen.pop(next(iter(self._seen)))
        self._seen[client] = (start, written + 1, 0)
        return skipped


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.denials = DenialThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, b"x-request-id"))
        REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.monotonic()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"  # a bounded label
        body = _BodySniffer(scope, receive) if method not in READ_METHODS else None
        held: Message | None = None
        started_answer = False

        async def observed_send(message: Message) -> None:
            nonlocal held, started_answer
            if message["type"] == "http.response.start":
                started_answer = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                status = int(message["status"])
                route = route_template(scope)
                elapsed = time.monotonic() - started
                metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
                metrics.HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
                if not _audited(method, status, route):
                    await send(message)
                elif status >= 400:
                    held = message  # its code is in the body that follows: audit, then answer
                else:
                    await self._audit(scope, status, route, elapsed, body, None)
                    await send(message)
                return
            if held is not None and message["type"] == "http.response.body":
                start, held = held, None
                code = _code_of(message.get("body", b"")) or _DEFAULT_CODES.get(int(start["status"]))
                elapsed = time.monotonic() - started
                await self._audit(scope, int(start["status"]), route_template(scope), elapsed, body, code)
                await send(start)
            await send(message)

        try:
            await self.app(scope, body.receive if body is not None else receive, observed_send)
        except Exception:
            # Unhandled: the outermost server-error handler answers 500 after this; count it here.
            if not started_answer:
                route, elapsed = route_template(scope), time.monotonic() - started
                metrics.HTTP_REQUESTS.labels(method=method, route=route, status="500").inc()
                metrics.HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
                if _audited(method, 500):
                    await self._audit(scope, 500, route, elapsed, body, DockerManagerError.code)
            raise

    async def _audit(
        self,
        scope: Scope,
        status: int,
        route: str,
        elapsed: float,
        body: _BodySniffer | None,
        code: str | None,
    ) -> None:
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        audit: AuditLog | None = getattr(runtime, "audit", None)
        if audit is None:
            return
        state = scope.get("state", {})
        principal = state.get("principal")
        # A dashboard action refused on its page answers with a redirect: its own status counts.
        status, code = state.get("audit_status", status), state.get("audit_code", code)
        client = peer_of(scope)
        skipped = 0
        if status in DENIED or principal is None:
            admitted = self.denials.admit(client_key(client))
            if admitted is None:
                return
            skipped = admitted
        entry = AuditEntry(
            request_id=scope["state"]["request_id"],
            method=scope["method"],
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            token_id=getattr(principal, "token_id", None),
            token_name=getattr(principal, "name", None),
            scopes=",".join(sorted(s.value for s in principal.scopes)) if principal is not None else None,
            client=client,
            error_code=code,
            # The path names the object the route acts on: it wins over whatever the body says. A
            # caller without credentials names nothing: what it wrote would show as someone's app.
            target=(
                targets_from(body.fields() if body is not None else None, scope.get("path_params"))
                if principal is not None
                else {}
            ),
        )
        if skipped:
            entry.target["denials_not_recorded"] = skipped
        try:
            await audit.record(entry)
        except Exception:
            # The change has happened; the answer must still go. The log keeps what was lost.
            log.exception("could not write the audit entry: %s", json.dumps(entry.as_dict(), default=str))


def _audited(method: str, status: int, route: str = "") -> bool:
    if route == UNMATCHED and status in (404, 405):
        return False  # no route, no identity: nothing happened worth a line (and nothing to flood)
    return method not in READ_METHODS or status in DENIED


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _code_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return str(code)[:40] if code else None


class _BodySniffer:
    """Keeps a copy of a small JSON (or dashboard form) request body as the app reads it (for the
    audit targets)."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        content_type = (_header(scope, b"content-type") or "").lower().split(";")[0].strip()
        self._form = content_type == "application/x-www-form-urlencoded"
        self._wanted = self._form or (content_type.startswith("application/") and "json" in content_type)
        self._receive = receive
        self._chunks: list[bytes] = []
        self._size = 0
        self.oversized = False

    async def receive(self) -> Message:
        message = await self._receive()
        if self._wanted and message["type"] == "http.request":
            chunk = message.get("body", b"")
            self._size += len(chunk)
            if self._size > MAX_SNIFFED_BODY:
                self._wanted, self._chunks, self.oversized = False, [], True
            else:
                self._chunks.append(chunk)
        return message

    def fields(self) -> dict[str, Any] | None:
        if self.oversized:
            return {"body_unread": "over 64 KiB: its targets were not read"}
        if not self._wanted or not self._chunks:
            return None
        if self._form:
            try:
                pairs = parse_qsl(b"".join(self._chunks).decode("utf-8", "replace"), max_num_fields=200)
            except ValueError:
                return None
            return dict(reversed(pairs))  # the first value of each name
        try:
            data = json.loads(b"".join(self._chunks))
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None
