"""Which Docker objects this service created: the record ownership is decided by.

Labels (`docker-manager.managed=true`) are for people and `docker ps` filters: an image can carry
any label, so a container anyone starts by hand from such an image would look managed. Ownership
is therefore this table: every container, image, volume and network the service creates is
recorded here when it is created (with its app, its task, who asked, and whether an admin gave it
host-level options), and forgotten when the service removes it.

The table is small and only this process writes it, so it is read once at start and answered from
memory; every change is written through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.db.tables import owned_objects
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)


class Kind(StrEnum):
    CONTAINER = "container"
    IMAGE = "image"
    VOLUME = "volume"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class Owned:
    kind: Kind
    ref: str  # the engine's id (containers, images, networks) or the name (volumes)
    name: str | None
    app_id: str | None
    task_id: str | None
    host_level: bool  # created by an admin with options that reach the host: admin only from then on
    created_by: str | None  # token id
    created_at: datetime


class Ownership:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._known: dict[tuple[Kind, str], Owned] = {}

    async def load(self) -> None:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(owned_objects))).all()
        self._known = {
            (Kind(r.kind), r.ref): Owned(
                kind=Kind(r.kind),
                ref=r.ref,
                name=r.name,
                app_id=r.app_id,
                task_id=r.task_id,
                host_level=bool(r.host_level),
                created_by=r.created_by,
                created_at=r.created_at,
            )
            for r in rows
        }

    def get(self, kind: Kind, ref: str) -> Owned | None:
        return self._known.get((kind, ref))

    def owns(self, kind: Kind, ref: str) -> bool:
        return (kind, ref) in self._known

    def refs(self, kind: Kind) -> set[str]:
        return {ref for (k, ref) in self._known if k is kind}

    async def record(
        self,
        kind: Kind,
        ref: str,
        *,
        name: str | None = None,
        app_id: str | None = None,
        task_id: str | None = None,
        host_level: bool = False,
        created_by: str | None = None,
    ) -> Owned:
        owned = Owned(
            kind=kind,
            ref=ref,
            name=name,
            app_id=app_id,
            task_id=task_id,
            host_level=host_level,
            created_by=created_by,
            created_at=utcnow(),
        )
        values = {
            "kind": kind.value,
            "ref": ref,
            "name": name,
            "app_id": app_id,
            "task_id": task_id,
            "host_level": host_level,
            "created_by": created_by,
            "created_at": owned.created_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(
                owned_objects.delete().where(owned_objects.c.kind == kind.value, owned_objects.c.ref == ref)
            )
            await conn.execute(owned_objects.insert().values(**values))
        self._known[(kind, ref)] = owned
        return owned

    async def forget(self, kind: Kind, ref: str) -> None:
        if self._known.pop((kind, ref), None) is None:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                owned_objects.delete().where(owned_objects.c.kind == kind.value, owned_objects.c.ref == ref)
            )
