"""What a task's work sees: its ids, its folder, and ways to report steps and output.

Every step (`event`) is written to the task's files, then persisted with its outbox payloads in
one transaction, then published to live followers. Output lines are buffered and written in
batches (`FLUSH_INTERVAL`, `FLUSH_LINES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from docker_manager import metrics
from docker_manager.runner.bus import EventBus
from docker_manager.runner.files import LogBatch, TaskFiles
from docker_manager.runner.models import LOG, Status, TaskEvent, TaskRecord
from docker_manager.runner.store import StateChange, TaskStore
from docker_manager.util.clock import timestamp

FLUSH_INTERVAL = 0.2
FLUSH_LINES = 200


class TaskContext:
    """What the work sees: its ids, its folder, and ways to report steps and output."""

    def __init__(
        self,
        *,
        record: TaskRecord,
        store: TaskStore,
        bus: EventBus,
        files: TaskFiles | None,
        stream_fields: dict[str, Any],
        outbox_enabled: bool,
        db_line_cap: int,
    ) -> None:
        self._record = record
        self.task_id = record.id
        self.task_type = record.type
        self.app_id = record.app_id
        self.files = files
        self.stage: str | None = None
        self._store = store
        self._bus = bus
        self._stream_fields = stream_fields
        self._outbox = outbox_enabled
        self._db_line_cap = db_line_cap
        self._db_lines = 0
        self._payloads = 0
        self._pending: list[dict[str, Any]] = []
        self._flush_lock = asyncio.Lock()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._stage_started: float | None = None
        # The request that started the task (X-Request-ID), if one did.
        self.request_id = record.request_id

    # --- steps -------------------------------------------------------------------------------
    async def event(
        self,
        stage: str | None,
        status: str,
        *,
        message: str | None = None,
        level: str = "info",
        change: StateChange | None = None,
        payload_extra: dict[str, Any] | None = None,
        **data: Any,
    ) -> TaskEvent:
        """Record one step of the task (persisted, then published). Output so far goes first.

        `payload_extra` goes only into the external log stream's payload for this event.
        """
        await self.flush()
        if stage is not None and stage != self.stage:
            self.end_stage()
            self.stage = stage
            self._stage_started = time.monotonic()
            change = StateChange(
                status=change.status if change else None,
                stage=stage,
                result=change.result if change else None,
                error=change.error if change else None,
            )
        if message is not None:
            data["message"] = message
        if self.files is not None:
            text = " ".join(part for part in (stage, status, message) if part)
            await self.files.append(
                LogBatch(
                    events=[text],
                    jsonl=[{"level": level, "event": f"{stage or 'task'}_{status}", **data}],
                    errors=[message or status] if level == "error" else [],
                )
            )
        event = await self._store.record(
            self.task_id,
            stage=stage,
            status=status,
            data=data,
            change=change,
            outbox_payloads=(
                [{**self._payload(stage, status, data), **(payload_extra or {})}] if self._outbox else None
            ),
        )
        self._bus.publish(event)
        return event

    def end_stage(self) -> None:
        """The current stage is over: its time goes to the stage histogram."""
        if self.stage is not None and self._stage_started is not None:
            elapsed = time.monotonic() - self._stage_started
            metrics.STAGE_DURATION.labels(type=self.task_type, stage=self.stage).observe(elapsed)
        self._stage_started = None

    async def first_event(self, *, position: int) -> TaskEvent:
        """Record the task itself with its first event, `queued` (one transaction), then log it."""
        data: dict[str, Any] = {"position": position}
        if self.request_id:
            data["request_id"] = self.request_id
        payloads = [self._payload(None, Status.QUEUED.value, data)] if self._outbox else None
        event = await self._store.create(self._record, first_event=data, outbox_payloads=payloads)
        if self.files is not None:
            await self.files.append(
                LogBatch(events=["queued"], jsonl=[{"level": "info", "event": "task_queued", **data}])
            )
        return event

    async def merge_summary(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Merge fields into the task's summary, build.info.json (no-op for tasks without a folder)."""
        if self.files is None:
            return {}
        return await self.files.merge_info(fields)

    # --- output ------------------------------------------------------------------------------
    async def output(self, items: Iterable[dict[str, Any]]) -> None:
        """Buffer output lines, each `{stream, text, ...}`; they are written and published in batches.

        An item's optional `raw` is what build.log gets for it (default: its text and a newline).
        """
        self._pending.extend(items)
        if len(self._pending) >= FLUSH_LINES:
            await self.flush()
        elif self._pending and self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(FLUSH_INTERVAL, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self.flush(), name=f"flush-{self.task_id}")

    async def flush(self) -> None:
        """Write buffered output to the files, then record and publish it as one log event."""
        async with self._flush_lock:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            if not self._pending:
                return
            items, self._pending = self._pending, []
            raw = [item.pop("raw", None) or item.get("text", "") + "\n" for item in items]
            # An item's `chunk` is for the external log stream only (the engine's record, as the
            # original posted it); the files and the database keep the line without it.
            chunks = [item.pop("chunk", None) for item in items]
            if self.files is not None:
                await self.files.append(
                    LogBatch(raw=raw, jsonl=[{"event": "output", **item} for item in items])
                )
            room = self._db_line_cap - self._db_lines
            if room <= 0:
                return  # the files keep everything; the database keeps the first lines only
            kept = items[:room]
            self._db_lines += len(kept)
            data: dict[str, Any] = {"lines": kept}
            if len(kept) < len(items) or self._db_lines >= self._db_line_cap:
                data["capped"] = True
            payloads = None
            if self._outbox:
                payloads = [
                    self._payload(self.stage, LOG, _line_payload(item, chunk))
                    for item, chunk in zip(kept, chunks, strict=False)
                ]
            event = await self._store.record(
                self.task_id, stage=self.stage, status=LOG, data=data, outbox_payloads=payloads
            )
            self._bus.publish(event)

    def _payload(self, stage: str | None, status: str, data: dict[str, Any]) -> dict[str, Any]:
        self._payloads += 1
        return {
            "task": self.task_type,
            "task_id": self.task_id,
            "app_id": self.app_id,
            "stage": stage,
            "status": status,
            "ts": timestamp(),
            "seq": self._payloads,
            **self._stream_fields,
            **data,
        }

    async def close(self) -> None:
        await self.flush()
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task


def _line_payload(item: dict[str, Any], chunk: Any) -> dict[str, Any]:
    payload = {"line": item.get("text", ""), "stream": item.get("stream")}
    if chunk is not None:
        payload["chunk"] = chunk
    return payload
