"""Persistence of certificates: one row per domain (the files themselves are in the cert dir)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.db.tables import certificates
from docker_manager.util.clock import as_utc, utcnow

Source = Literal["acme", "custom"]
Status = Literal["pending", "valid", "renewing", "error", "expired"]


@dataclass(frozen=True)
class CertificateRecord:
    domain: str
    source: str  # Source
    status: str  # Status (`expired` is also derived when read: see `shown_status`)
    not_before: datetime | None = None
    not_after: datetime | None = None
    serial: str | None = None
    issuer: str | None = None
    sans: list[str] | None = None
    renew_at: datetime | None = None
    last_error_type: str | None = None
    last_error: str | None = None
    permanent: bool = False
    failures: int = 0
    next_attempt_at: datetime | None = None
    task_id: str | None = None
    directory: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def with_(self, **values: Any) -> CertificateRecord:
        return replace(self, **values, updated_at=utcnow())

    def shown_status(self, now: datetime) -> str:
        """`expired` once its end has passed, whatever was stored."""
        if self.not_after is not None and self.not_after <= now and self.status in ("valid", "renewing"):
            return "expired"
        return self.status


_TIMES = ("not_before", "not_after", "renew_at", "next_attempt_at", "created_at", "updated_at")


def _record(row: Any) -> CertificateRecord:
    values = dict(row._mapping)
    for name in _TIMES:
        values[name] = as_utc(values[name])
    return CertificateRecord(**values)


class CertificateStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, domain: str) -> CertificateRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(certificates).where(certificates.c.domain == domain))).first()
        return _record(row) if row is not None else None

    async def list(self) -> list[CertificateRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(certificates).order_by(certificates.c.domain))).all()
        return [_record(row) for row in rows]

    async def put(self, record: CertificateRecord) -> CertificateRecord:
        """Insert or replace the domain's row (persisted before anyone is told)."""
        values = asdict(record)
        async with self._engine.begin() as conn:
            await conn.execute(certificates.delete().where(certificates.c.domain == record.domain))
            await conn.execute(certificates.insert().values(**values))
        return record

    async def delete(self, domain: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(certificates.delete().where(certificates.c.domain == domain))
        return bool(result.rowcount)
