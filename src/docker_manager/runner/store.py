"""Persistence of tasks, events and outbox items (SQLAlchemy Core, async)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import OrderedDict, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from docker_manager.db.tables import outbox, task_events, tasks
from docker_manager.errors import Conflict, InvalidInput, NotFound
from docker_manager.runner.models import FINAL, LOG, Status, TaskEvent, TaskRecord
from docker_manager.util.clock import as_utc, utcnow


def _record(row: Any) -> TaskRecord:
    return TaskRecord(
        id=row.id,
        type=row.type,
        status=Status(row.status),
        stage=row.stage,
        app_id=row.app_id,
        result=row.result,
        error=row.error,
        files_dir=row.files_dir,
        request_id=row.request_id,
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
    )


def _event(row: Any) -> TaskEvent:
    return TaskEvent(
        task_id=row.task_id,
        seq=row.seq,
        ts=as_utc(row.ts) or utcnow(),
        stage=row.stage,
        status=row.status,
        data=row.data or {},
    )


def encode_cursor(record: TaskRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, task_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), task_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid cursor", field="cursor") from exc


@dataclass(frozen=True, slots=True)
class StateChange:
    """Task fields to set together with an event (None = leave as is)."""

    status: Status | None = None
    stage: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


RECENT_CACHE = 2000


class TaskStore:
    """Tasks and their numbered events. An event and the task change it reports commit together.

    Only this process writes tasks, so it keeps a write-through copy of the tasks it is running
    and of recently read finished ones: status reads (polled by dashboards) need no query.
    """

    def __init__(self, engine: AsyncEngine, *, boot_id: str) -> None:
        self._engine = engine
        self.boot_id = boot_id
        self._live: dict[str, TaskRecord] = {}
        self._recent: OrderedDict[str, TaskRecord] = OrderedDict()
        self._next_seq: dict[str, int] = {}
        # Events of one task are numbered and committed one at a time, so a reader that has seen
        # event N has seen every event before it.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def new_record(
        self,
        *,
        task_id: str,
        task_type: str,
        app_id: str | None,
        files_dir: str | None,
        request_id: str | None = None,
    ) -> TaskRecord:
        now = utcnow()
        return TaskRecord(
            id=task_id,
            type=task_type,
            status=Status.QUEUED,
            stage=None,
            app_id=app_id,
            result=None,
            error=None,
            files_dir=files_dir,
            created_at=now,
            updated_at=now,
            request_id=request_id,
        )

    async def create(
        self,
        record: TaskRecord,
        *,
        first_event: dict[str, Any],
        outbox_payloads: list[dict[str, Any]] | None = None,
    ) -> TaskEvent:
        """Insert a queued task and its first event (and its outbox payloads) in one transaction:
        a task is never recorded without the event that says it was queued."""
        now = record.created_at
        event = TaskEvent(
            task_id=record.id, seq=1, ts=now, stage=None, status=record.status.value, data=first_event
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    tasks.insert().values(
                        id=record.id,
                        type=record.type,
                        status=record.status.value,
                        app_id=record.app_id,
                        files_dir=record.files_dir,
                        request_id=record.request_id,
                        boot_id=self.boot_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await self._insert_event(conn, event, outbox_payloads)
        except IntegrityError as exc:
            raise Conflict(f"task id {record.id!r} is already in use", field="task_id") from exc
        self._next_seq[record.id] = 2
        self._live[record.id] = replace(record, events=[event])
        return event

    async def _insert_event(
        self, conn: AsyncConnection, event: TaskEvent, outbox_payloads: list[dict[str, Any]] | None
    ) -> None:
        await conn.execute(
            task_events.insert().values(
                task_id=event.task_id,
                seq=event.seq,
                ts=event.ts,
                stage=event.stage,
                status=event.status,
                data=event.data,
            )
        )
        if outbox_payloads:
            await conn.execute(
                outbox.insert(),
                [
                    {
                        "task_id": event.task_id,
                        "payload": {**payload, "event_seq": event.seq},
                        "attempts": 0,
                        "next_attempt_at": event.ts,
                        "state": "pending",
                        "created_at": event.ts,
                    }
                    for payload in outbox_payloads
                ],
            )

    async def get(self, task_id: str, *, with_events: bool = True) -> TaskRecord:
        cached = self._live.get(task_id) or self._recent.get(task_id)
        if cached is not None:
            return replace(cached, events=list(cached.events) if with_events else [])
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one_or_none()
            if row is None:
                raise NotFound(f"no task {task_id!r}")
            record = _record(row)
            if with_events:
                query = (
                    sa.select(task_events)
                    .where(task_events.c.task_id == task_id, task_events.c.status != LOG)
                    .order_by(task_events.c.seq)
                )
                record.events = [_event(r) for r in (await conn.execute(query)).all()]
        if with_events and record.status.final:
            self._remember(record)
        return replace(record, events=list(record.events))

    def _remember(self, record: TaskRecord) -> None:
        self._recent[record.id] = record
        self._recent.move_to_end(record.id)
        while len(self._recent) > RECENT_CACHE:
            self._recent.popitem(last=False)

    async def find(self, task_id: str) -> TaskRecord | None:
        try:
            return await self.get(task_id, with_events=False)
        except NotFound:
            return None

    async def page(
        self,
        *,
        status: Status | None = None,
        task_type: str | None = None,
        app_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        hidden_types: tuple[str, ...] = (),
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first; `cursor` continues after the last task of the previous page."""
        query = sa.select(tasks).order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit + 1)
        if hidden_types:
            query = query.where(tasks.c.type.not_in(hidden_types))
        if status is not None:
            query = query.where(tasks.c.status == status.value)
        if task_type is not None:
            query = query.where(tasks.c.type == task_type)
        if app_id is not None:
            query = query.where(tasks.c.app_id == app_id)
        if cursor:
            created_at, task_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    tasks.c.created_at < created_at,
                    sa.and_(tasks.c.created_at == created_at, tasks.c.id < task_id),
                )
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        records = [_record(r) for r in rows[:limit]]
        next_cursor = encode_cursor(records[-1]) if len(rows) > limit else None
        return records, next_cursor

    async def record(
        self,
        task_id: str,
        *,
        stage: str | None,
        status: str,
        data: dict[str, Any] | None = None,
        change: StateChange | None = None,
        outbox_payloads: list[dict[str, Any]] | None = None,
    ) -> TaskEvent:
        """Append one event (and apply `change` to the task) in one transaction."""
        async with self._locks[task_id]:
            async with self._engine.begin() as conn:
                seq = await self._allocate_seq(conn, task_id)
                now = utcnow()
                event = TaskEvent(
                    task_id=task_id, seq=seq, ts=now, stage=stage, status=status, data=data or {}
                )
                await self._insert_event(conn, event, outbox_payloads)
                if change is not None:
                    await conn.execute(
                        tasks.update().where(tasks.c.id == task_id).values(**_change_values(change, now))
                    )
            self._next_seq[task_id] = seq + 1
            self._mirror(event, change)
        return event

    def _mirror(self, event: TaskEvent, change: StateChange | None) -> None:
        """Apply a committed event to the in-memory copy (if this process holds one)."""
        self._recent.pop(event.task_id, None)
        record = self._live.get(event.task_id)
        if record is None:
            return
        if event.status != LOG:
            record.events.append(event)
        record.updated_at = event.ts
        if change is not None:
            if change.status is not None:
                record.status = change.status
                if change.status is Status.RUNNING:
                    record.started_at = event.ts
                elif change.status.final:
                    record.finished_at = event.ts
            if change.stage is not None:
                record.stage = change.stage
            if change.result is not None:
                record.result = change.result
            if change.error is not None:
                record.error = change.error

    async def _allocate_seq(self, conn: AsyncConnection, task_id: str) -> int:
        known = self._next_seq.get(task_id)
        if known is not None:
            return known
        current = await conn.scalar(
            sa.select(sa.func.max(task_events.c.seq)).where(task_events.c.task_id == task_id)
        )
        return int(current or 0) + 1

    async def events_after(self, task_id: str, after: int, *, limit: int = 500) -> list[TaskEvent]:
        query = (
            sa.select(task_events)
            .where(task_events.c.task_id == task_id, task_events.c.seq > after)
            .order_by(task_events.c.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    async def leftovers(self) -> list[TaskRecord]:
        """Tasks an earlier process left queued or running."""
        query = sa.select(tasks).where(
            tasks.c.status.in_([Status.QUEUED.value, Status.RUNNING.value]), tasks.c.boot_id != self.boot_id
        )
        async with self._engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def final_before(
        self, cutoff: datetime, *, exclude: Collection[str] = (), limit: int = 500
    ) -> list[TaskRecord]:
        """Final tasks that ended before `cutoff` (but those in `exclude`), oldest first."""
        ended = sa.func.coalesce(tasks.c.finished_at, tasks.c.updated_at)
        query = (
            sa.select(tasks)
            .where(tasks.c.status.in_([s.value for s in FINAL]), ended < cutoff)
            .order_by(ended, tasks.c.id)
            .limit(limit)
        )
        if exclude:
            query = query.where(tasks.c.id.not_in(list(exclude)))
        async with self._engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def folders_in_use(self, *, excluding: Collection[str]) -> set[str]:
        """The folders of every task but those in `excluding` (several tasks may share one)."""
        query = sa.select(tasks.c.files_dir).where(tasks.c.files_dir.is_not(None)).distinct()
        if excluding:
            query = query.where(tasks.c.id.not_in(list(excluding)))
        async with self._engine.connect() as conn:
            return {str(row.files_dir) for row in (await conn.execute(query)).all()}

    async def purge(self, task_ids: list[str]) -> None:
        """Delete tasks with their events and outbox rows, in one transaction."""
        if not task_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(outbox.delete().where(outbox.c.task_id.in_(task_ids)))
            await conn.execute(task_events.delete().where(task_events.c.task_id.in_(task_ids)))
            await conn.execute(tasks.delete().where(tasks.c.id.in_(task_ids)))
        for task_id in task_ids:
            self._recent.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        """Drop per-task bookkeeping once a task is final (its record moves to the recent cache)."""
        self._next_seq.pop(task_id, None)
        record = self._live.pop(task_id, None)
        if record is not None and record.status.final:
            self._remember(record)
        lock = self._locks.get(task_id)
        if lock is not None and not lock.locked():
            del self._locks[task_id]


def _change_values(change: StateChange, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"updated_at": now}
    if change.status is not None:
        values["status"] = change.status.value
        if change.status is Status.RUNNING:
            values["started_at"] = now
        elif change.status.final:
            values["finished_at"] = now
    if change.stage is not None:
        values["stage"] = change.stage
    if change.result is not None:
        values["result"] = change.result
    if change.error is not None:
        values["error"] = change.error
    return values
