"""The audit log: who changed what, when, from where, and how it ended.

Every state-changing request and every refused authentication is one entry, written before the
answer is sent (`api.observe.RequestObserver`). An entry holds who (token id and name, never the
token; its scopes; the client address), what (method, route template, the targets the request
named: app, container, image, task, domain) and the outcome (status, error code, duration). Never a
request body or a secret: targets come from an allowlist of fields.

Entries go to the database (append-only from the API; `DM_AUDIT_RETENTION_DAYS`), and optionally as
JSON lines to `DM_AUDIT_FILE` for a log shipper (reopened on SIGHUP, so logrotate can move it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.db.tables import audit_log
from docker_manager.errors import InvalidInput
from docker_manager.util.clock import as_utc, iso, utcnow

log = logging.getLogger(__name__)

# Request fields that name what a request acts on (never their neighbours: env, passwords...).
TARGET_FIELDS = (
    "app_id",
    "id_or_name",
    "id",
    "image",
    "source",
    "repo",
    "tag",
    "task_id",
    "old_task_id",
    "domain",
    "new_container",
    "old_container",
    "name",
    "new_port",
    "port",
    "host_port",
    "release",
    "token_id",
    "lz4_path",
    "context_path",
    "context",
    "path",
    "mode",
    "replicas",
    "node_id",
    "availability",
)
MAX_TARGET_VALUE = 200


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    if status < 500:
        return "rejected"
    return "failed"


def targets_from(*sources: dict[str, Any] | None) -> dict[str, Any]:
    """The allowlisted fields of the request's path parameters and JSON body, short values only."""
    found: dict[str, Any] = {}
    for source in sources:
        for key in TARGET_FIELDS:
            value = (source or {}).get(key)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int):
                found[key] = value
            elif isinstance(value, str) and "\x00" not in value:
                found[key] = value[:MAX_TARGET_VALUE]
    return found


@dataclass
class AuditEntry:
    request_id: str
    method: str
    route: str
    status: int
    duration_ms: float
    ts: datetime = field(default_factory=utcnow)
    token_id: str | None = None
    token_name: str | None = None
    scopes: str | None = None
    client: str | None = None
    error_code: str | None = None
    target: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return outcome_of(self.status)

    @property
    def app_id(self) -> str | None:
        value = self.target.get("app_id")
        return str(value) if value is not None else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ts"] = iso(self.ts, timespec="milliseconds")
        data["outcome"] = self.outcome
        data["app_id"] = self.app_id
        return data


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        request_id=row.request_id,
        method=row.method,
        route=row.route,
        status=row.status,
        duration_ms=row.duration_ms,
        ts=as_utc(row.ts) or utcnow(),
        token_id=row.token_id,
        token_name=row.token_name,
        scopes=row.scopes,
        client=row.client,
        error_code=row.error_code,
        target=row.target or {},
    )


class AuditLog:
    def __init__(self, engine: AsyncEngine, *, file: Path | None = None) -> None:
        self._engine = engine
        self._path = file
        self._file: IO[str] | None = None
        self._file_lock = threading.Lock()

    async def record(self, entry: AuditEntry) -> None:
        """Into the database and (when configured) the file: the file gets the entry even when
        the database refuses it."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    audit_log.insert().values(
                        ts=entry.ts,
                        request_id=entry.request_id[:64],
                        token_id=entry.token_id,
                        token_name=_cut(entry.token_name, 100),
                        scopes=_cut(entry.scopes, 200),
                        client=_cut(entry.client, 64),
                        method=entry.method[:8],
                        route=entry.route[:200],
                        app_id=_cut(entry.app_id, 64),
                        target=entry.target or None,
                        status=entry.status,
                        outcome=entry.outcome,
                        error_code=_cut(entry.error_code, 40),
                        duration_ms=entry.duration_ms,
                    )
                )
        finally:
            if self._path is not None:
                await asyncio.to_thread(self._append, json.dumps(entry.as_dict(), separators=(",", ":")))

    # --- the JSON lines file -----------------------------------------------------------------
    def _append(self, line: str) -> None:
        with self._file_lock:
            if self._file is None:
                assert self._path is not None
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                info = os.fstat(fd)
                # Someone else's file (made first in a shared folder), or a hard link to one: refused.
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
                    os.close(fd)
                    raise PermissionError(f"{self._path} is not a plain file of this service's own")
                os.fchmod(fd, 0o600)
                self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()

    def reopen(self) -> None:
        """After logrotate moved the file (SIGHUP): the next entry opens it anew."""
        with self._file_lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def close(self) -> None:
        self.reopen()

    # --- reading -----------------------------------------------------------------------------
    async def page(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        token: str | None = None,
        app_id: str | None = None,
        outcome: str | None = None,
        routes: Sequence[str] = (),
        authenticated: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first; `token` matches a token's id or name; `routes` keeps those route templates;
        `authenticated` keeps the requests a valid token (or session) made."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
        if authenticated:
            query = query.where(audit_log.c.token_id.is_not(None))
        if routes:
            query = query.where(audit_log.c.route.in_(list(routes)))
        if since is not None:
            query = query.where(audit_log.c.ts >= since)
        if until is not None:
            query = query.where(audit_log.c.ts < until)
        if token:
            query = query.where(sa.or_(audit_log.c.token_id == token, audit_log.c.token_name == token))
        if app_id:
            query = query.where(audit_log.c.app_id == app_id)
        if outcome:
            query = query.where(audit_log.c.outcome == outcome)
        if cursor:
            query = query.where(audit_log.c.id < _decode_cursor(cursor))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].id) if more and rows else None
        return [_entry(r) for r in rows], next_cursor

    async def prune(self, before: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(audit_log.delete().where(audit_log.c.ts < before))
        return int(result.rowcount or 0)


def _encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{row_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("a"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("not a cursor this service gave", field="cursor") from exc
