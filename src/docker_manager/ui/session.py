"""Dashboard sessions: a token is exchanged once for a session, named by a cookie.

The cookie is Fernet-sealed (encrypted and authenticated) with a key of this installation
(`{data_dir}/session-key`, 0600) and names a session row (`ui_sessions`): logging out ends the row,
so the old cookie is refused from then on; it also expires (`DM_UI_SESSION_HOURS`). Every request
checks the token is still valid, so revoking the token ends its sessions. Each session has its own
CSRF token, which every form carries.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.auth import Principal
from docker_manager.db.tables import ui_sessions
from docker_manager.util.clock import as_utc, utcnow
from docker_manager.util.files import write_new_file

COOKIE = "dm_session"
MESSAGE_SECONDS = 120  # a message after an action is shown on the page it redirects to, not later


@dataclass(frozen=True)
class Session:
    id: str
    principal: Principal
    csrf: str

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionCodec:
    def __init__(self, key: bytes, engine: AsyncEngine, *, max_age: int) -> None:
        self._fernet = Fernet(key)
        self._engine = engine
        self.max_age = max_age

    @classmethod
    def from_key_file(cls, path: Path, engine: AsyncEngine, *, max_age: int) -> SessionCodec:
        """The key in `path`, made (0600, never through a symlink) when missing. Blocking."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new_file(path, Fernet.generate_key() + b"\n", 0o600)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            return cls(handle.read().strip(), engine, max_age=max_age)

    async def issue(self, token_id: str) -> str:
        """A new session of `token_id`: the cookie value."""
        session_id, csrf = secrets.token_hex(16), secrets.token_urlsafe(24)
        now = utcnow()
        async with self._engine.begin() as conn:
            # Expired sessions go when a new one starts: the table holds live ones and a day's worth.
            await conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at < now - timedelta(days=1)))
            await conn.execute(
                ui_sessions.insert().values(
                    id=session_id,
                    token_id=token_id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.max_age),
                )
            )
        return self._fernet.encrypt(json.dumps({"s": session_id, "c": csrf}).encode()).decode()

    async def read(self, cookie: str | None) -> tuple[str, str, str] | None:
        """(session id, token id, csrf) of a live session; None for anything else."""
        sealed = self._open(cookie)
        if sealed is None:
            return None
        session_id, csrf = sealed
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(ui_sessions).where(ui_sessions.c.id == session_id))
            ).one_or_none()
        if row is None or row.ended_at is not None or (as_utc(row.expires_at) or utcnow()) <= utcnow():
            return None
        return session_id, str(row.token_id), csrf

    async def end_cookie(self, cookie: str | None) -> None:
        """End the session a cookie names, if it names one (live or not)."""
        sealed = self._open(cookie)
        if sealed is not None:
            await self.end(sealed[0])

    async def end(self, session_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                ui_sessions.update().where(ui_sessions.c.id == session_id).values(ended_at=utcnow())
            )

    def seal_message(self, kind: str, text: str, *, session_id: str, path: str) -> str:
        """A page's one-off message (what an action did, or why it was refused), sealed so that a
        link from elsewhere cannot put its own words on these pages, and bound to the session that
        acted and the page it returns to: a message one session made (its text may hold what its
        caller typed) is shown to that session only, on that page only."""
        data = {"k": kind, "t": text[:300], "s": session_id, "p": path}
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open_message(self, sealed: str | None, *, session_id: str, path: str) -> tuple[str, str] | None:
        if not sealed or len(sealed) > 2048:
            return None
        try:
            data = json.loads(self._fernet.decrypt(sealed.encode(), ttl=MESSAGE_SECONDS))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict) or data.get("k") not in ("notice", "error"):
            return None
        if data.get("s") != session_id or data.get("p") != path:
            return None
        return str(data["k"]), str(data.get("t", ""))

    def _open(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.max_age))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        session_id, csrf = data.get("s"), data.get("c")
        if not isinstance(session_id, str) or not isinstance(csrf, str):
            return None
        return session_id, csrf
