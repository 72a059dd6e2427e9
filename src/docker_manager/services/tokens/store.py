"""API tokens: made, listed, revoked, and checked on every request.

Tokens are opaque random strings shown once; only their sha256 is stored. A presented token is
hashed and looked up by digest, then the digests are compared with `hmac.compare_digest`, so the
comparison never depends on how many characters of a guess were right."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.auth import Principal, Scope
from docker_manager.db.tables import api_tokens
from docker_manager.errors import InvalidInput, NotFound
from docker_manager.util.clock import as_utc, utcnow

log = logging.getLogger(__name__)

# How long a checked token is trusted without asking the database again. Revocations made through
# this service take effect at once; ones made by the CLI (another process) within this time plus
# AUTH_STALE_SECONDS, in which the token is still accepted while one look-up refreshes it.
AUTH_CACHE_SECONDS = 2.0
AUTH_STALE_SECONDS = 2.0
TOKEN_PREFIX = "dm_"  # noqa: S105 (a marker for secret scanners, not a secret)
BOOTSTRAP_NAME = "bootstrap-admin"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token as `token list` shows it (never the secret)."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    apps: list[str] | None = None  # the apps it is limited to; None: not limited


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(slots=True)
class _Checked:
    """A token found valid: trusted until `fresh_until`, then refreshed in the background."""

    fresh_until: float
    principal: Principal
    expires_at: datetime | None
    refreshing: bool = False


class TokenStore:
    """Creates, lists, revokes and checks tokens in the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._cache: dict[str, _Checked] = {}
        self._generation = 0  # bumped by every revocation: a look-up begun before it is not kept
        self._refreshes: set[asyncio.Task[Principal | None]] = set()

    async def create(
        self,
        *,
        name: str,
        scopes: frozenset[Scope],
        expires_at: datetime | None = None,
        apps: tuple[str, ...] | None = None,
    ) -> tuple[TokenInfo, str]:
        """Store a new token; returns its info and the secret, which is never available again.
        `apps`: the apps it is limited to (an admin token cannot be: it reaches the host)."""
        if apps is not None and Scope.ADMIN in scopes:
            raise InvalidInput("an admin token reaches the host: it cannot be limited to apps", field="apps")
        token = new_token()
        info = await self._insert(name=name, scopes=scopes, token=token, expires_at=expires_at, apps=apps)
        return info, token

    async def _insert(
        self,
        *,
        name: str,
        scopes: frozenset[Scope],
        token: str,
        expires_at: datetime | None,
        apps: tuple[str, ...] | None = None,
    ) -> TokenInfo:
        info = TokenInfo(
            id=secrets.token_hex(8),
            name=name,
            prefix=token[:10],
            scopes=sorted(s.value for s in scopes),
            created_at=utcnow(),
            expires_at=expires_at,
            revoked_at=None,
            apps=list(apps) if apps is not None else None,
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                api_tokens.insert().values(
                    id=info.id,
                    name=info.name,
                    digest=digest_of(token),
                    prefix=info.prefix,
                    scopes=",".join(info.scopes),
                    created_at=info.created_at,
                    expires_at=expires_at,
                    apps=",".join(apps) if apps is not None else None,
                )
            )
        return info

    async def list(self) -> list[TokenInfo]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_tokens).order_by(api_tokens.c.created_at))).all()
        return [
            TokenInfo(
                id=r.id,
                name=r.name,
                prefix=r.prefix,
                scopes=r.scopes.split(","),
                created_at=as_utc(r.created_at) or utcnow(),
                expires_at=as_utc(r.expires_at),
                revoked_at=as_utc(r.revoked_at),
                apps=r.apps.split(",") if r.apps else None,
            )
            for r in rows
        ]

    async def revoke(self, token_id: str) -> None:
        self._forget_all()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        self._forget_all()  # and again: a look-up may have read the row before the update
        if result.rowcount == 0:
            raise NotFound(f"no active token with id {token_id!r}")

    async def close(self) -> None:
        """Cancel the refreshes still in flight (at shutdown)."""
        for refresh in list(self._refreshes):
            refresh.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)

    def _forget_all(self) -> None:
        self._cache.clear()
        self._generation += 1

    async def principal_by_id(self, token_id: str) -> Principal | None:
        """The principal of a token still valid (a dashboard session refers to its token by id:
        revoking the token ends the session)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id))).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        expires_at = as_utc(row.expires_at)
        if expires_at is not None and expires_at <= utcnow():
            return None
        return _principal(row)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal for a presented token, or None if it is unknown, expired or revoked."""
        if not token or len(token) > 512:
            return None
        digest = digest_of(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached.expires_at is not None and cached.expires_at <= utcnow():
                self._cache.pop(digest, None)
                return None
            if now < cached.fresh_until:
                return cached.principal
            # Past its time: one look-up in the background refreshes it while the callers go on
            # (under load, every caller waiting on the database at once made the slowest 1 %).
            if now < cached.fresh_until + AUTH_STALE_SECONDS:
                if not cached.refreshing:
                    cached.refreshing = True
                    refresh = asyncio.create_task(self._look_up(digest), name="token-refresh")
                    self._refreshes.add(refresh)
                    refresh.add_done_callback(self._refreshed)
                return cached.principal
        return await self._look_up(digest)

    def _refreshed(self, refresh: asyncio.Task[Principal | None]) -> None:
        self._refreshes.discard(refresh)
        if not refresh.cancelled() and refresh.exception() is not None:
            # The entry stays until its stale time is over; then callers ask the database themselves.
            log.warning("token refresh failed: %s", refresh.exception())

    async def _look_up(self, digest: str) -> Principal | None:
        generation = self._generation
        now = time.monotonic()
        try:
            principal, expires_at = await self._principal_of(digest)
        finally:
            cached = self._cache.get(digest)
            if cached is not None:
                cached.refreshing = False
        if generation != self._generation:
            return principal  # a revocation happened meanwhile: answer, but keep nothing
        if principal is None:
            self._cache.pop(digest, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = _Checked(now + AUTH_CACHE_SECONDS, principal, expires_at)
        return principal

    async def _principal_of(self, digest: str) -> tuple[Principal | None, datetime | None]:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(api_tokens).where(api_tokens.c.digest == digest))
            ).one_or_none()
        if row is None or not hmac.compare_digest(row.digest, digest) or row.revoked_at is not None:
            return None, None
        expires_at = as_utc(row.expires_at)
        if expires_at is not None and expires_at <= utcnow():
            return None, None
        return _principal(row), expires_at

    async def bootstrap_admin(self, *, configured: str | None, token_file: Path) -> str | None:
        """Make sure an admin can get in.

        With `DM_ADMIN_TOKEN` that token is (re)registered as the bootstrap admin. Otherwise, on the
        very first start (no active admin token at all), one is generated, stored as a hash and
        written once to a 0600 file. Returns the path-worthy message for the log, or None.
        """
        if configured:
            self._forget_all()
            async with self._engine.begin() as conn:
                await conn.execute(api_tokens.delete().where(api_tokens.c.name == BOOTSTRAP_NAME))
            await self._insert(
                name=BOOTSTRAP_NAME, scopes=frozenset({Scope.ADMIN}), token=configured, expires_at=None
            )
            return None
        if any(t.revoked_at is None and "admin" in t.scopes for t in await self.list()):
            return None
        _, token = await self.create(name=BOOTSTRAP_NAME, scopes=frozenset({Scope.ADMIN}))
        token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A stale file (or a symlink planted in its place) goes; the new one is created 0600 from
        # its first byte, exclusively and without following links, so nobody else can read it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(token_file)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return str(token_file)


def _principal(row: Any) -> Principal:
    return Principal(
        token_id=row.id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes.split(",")),
        apps=tuple(row.apps.split(",")) if row.apps else None,
    )
