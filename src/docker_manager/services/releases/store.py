"""Persistence of releases: one row per successful deploy of an app, numbered per app."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.db.tables import releases
from docker_manager.util.clock import as_utc, utcnow


@dataclass(frozen=True)
class Release:
    app_id: str
    number: int
    source: str  # deploy, swarm, localrun, run, pipeline, update_port, rollback, imported
    image_id: str
    config: dict[str, Any]  # the engine create body (a swarm app's: {"swarm": spec}), without env values
    created_at: datetime = field(default_factory=utcnow)
    task_id: str | None = None
    origin_task_id: str | None = None  # the build whose folder holds the artefact
    tag: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    host_port: int | None = None
    env_sealed: str | None = None
    artefact: str | None = None
    health: dict[str, Any] | None = None
    restored_from: int | None = None
    deployed_by: str | None = None
    deployed_by_name: str | None = None
    pruned_at: datetime | None = None

    @property
    def on_swarm(self) -> bool:
        """A swarm app's release: its config is the service spec (`{"swarm": spec}`)."""
        return "swarm" in self.config

    @property
    def task_ids(self) -> set[str]:
        return {t for t in (self.task_id, self.origin_task_id) if t}


def _release(row: Any) -> Release:
    values = dict(row._mapping)
    values["created_at"] = as_utc(values["created_at"])
    values["pruned_at"] = as_utc(values["pruned_at"])
    return Release(**values)


class ReleaseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, release: Release) -> Release:
        """Store `release` under the app's next number (the caller holds the app's lock)."""
        async with self._engine.begin() as conn:
            top = await conn.scalar(
                sa.select(sa.func.max(releases.c.number)).where(releases.c.app_id == release.app_id)
            )
            numbered = Release(**{**release.__dict__, "number": int(top or 0) + 1})
            await conn.execute(releases.insert().values(**numbered.__dict__))
        return numbered

    async def list(self, app_id: str | None = None, *, limit: int | None = None) -> list[Release]:
        """Newest first (per app); every app's when `app_id` is None."""
        query = sa.select(releases).order_by(releases.c.app_id, releases.c.number.desc())
        if app_id is not None:
            query = query.where(releases.c.app_id == app_id)
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            return [_release(row) for row in (await conn.execute(query)).all()]

    async def get(self, app_id: str, number: int) -> Release | None:
        query = sa.select(releases).where(releases.c.app_id == app_id, releases.c.number == number)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _release(row) if row is not None else None

    async def update(self, app_id: str, number: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                releases.update()
                .where(releases.c.app_id == app_id, releases.c.number == number)
                .values(**values)
            )

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(releases)) or 0)
