"""Delivery of task events to the external log stream (`log_stream_endpoint`).

Events are written to the `outbox` table in the same transaction as the event itself, so the
work never waits for the network. One dispatcher posts them in order (oldest first: hence in
order per task) and retries with capped exponential backoff and jitter. A 4xx other than 408/429
is not retried. After `max_attempts` a payload (or batch) is set aside as `dead`.

Body of a POST (the default, as the original):  payload                     (one POST per payload)
Body with `log_stream_batch` true:               {"events": [payload, ...]}

One by one, payloads go out over one kept-alive connection, a page of them after another; the
delivered ones leave the table in one transaction per page, never one per payload.

Each payload keeps the original service's fields at its top level: `task` (task type),
`task_id`, `app_id`, `stage`, `status`, `ts`, plus `line`, `stream` and (for build output)
`chunk` for output lines, `exit_code` in a host command's final payload, and the step's fields.
`seq` numbers the task's payloads (unique, increasing); `event_seq` is the task event a payload
came from. Requests carry the configured `auth_header` headers and an `Idempotency-Key`
(delivery is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager import metrics
from docker_manager.adapters.webhook import WebhookClient, WebhookError
from docker_manager.db.tables import outbox
from docker_manager.util.clock import as_utc, utcnow

log = logging.getLogger(__name__)

IDLE_POLL = 0.25
BACKLOG_EVERY = 5.0
MAX_BACKOFF = 60.0


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): 0.5, 1, 2, 4... capped, with jitter."""
    base: float = min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1))
    return base * random.uniform(0.75, 1.25)  # noqa: S311 (jitter, not security)


def retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class OutboxDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        url: str,
        headers: dict[str, str],
        batch: bool = False,
        batch_size: int = 100,
        timeout: float = 5.0,
        max_attempts: int = 8,
        max_pending: int = 100_000,
    ) -> None:
        self._engine = engine
        self._batch = batch
        self._page = batch_size
        self._max_attempts = max_attempts
        self._max_pending = max_pending
        self._client = WebhookClient(url, headers=headers, timeout=timeout)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0
        # Measured every BACKLOG_EVERY seconds, for /metrics: pending payloads and the oldest's time.
        self._backlog: tuple[int, datetime | None] = (0, None)
        self._backlog_at = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.close()

    async def _loop(self) -> None:
        rounds = 0
        while True:
            try:
                rounds += 1
                if rounds % 200 == 1:
                    await self._trim()
                if time.monotonic() - self._backlog_at > BACKLOG_EVERY:
                    await self._measure_backlog()
                if not await self._deliver_once():
                    await asyncio.sleep(IDLE_POLL)
            except asyncio.CancelledError:
                raise
            except Exception:  # the dispatcher must outlive any single failure
                log.exception("outbox dispatcher failed; retrying")
                await asyncio.sleep(1.0)

    async def _deliver_once(self) -> bool:
        """Send the oldest due payloads. Returns False when there was nothing to send now."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(outbox.c.id, outbox.c.payload, outbox.c.attempts, outbox.c.next_attempt_at)
                    .where(outbox.c.state == "pending")
                    .order_by(outbox.c.id)
                    .limit(self._page)
                )
            ).all()
        if not rows:
            return False
        head_due = rows[0].next_attempt_at
        if head_due.tzinfo is None:
            head_due = head_due.replace(tzinfo=utcnow().tzinfo)
        if head_due > utcnow():
            return False  # the head is waiting for its retry: keep order, wait
        if self._batch:
            # Only items that share the head's retry history travel together.
            batch = [r for r in rows if r.attempts == rows[0].attempts]
            ids = [r.id for r in batch]
            error = await self._post({"events": [r.payload for r in batch]}, key=f"{ids[0]}-{ids[-1]}")
            await self._settle(delivered=ids if error is None else [], failed=(batch, error))
            return True
        delivered: list[int] = []
        for row in rows:
            if row.attempts and row is not rows[0]:
                break  # a later item with its own retry history: it starts the next page
            error = await self._post(row.payload, key=str(row.id))
            if error is not None:
                await self._settle(delivered=delivered, failed=([row], error))
                return True
            delivered.append(row.id)
        await self._settle(delivered=delivered, failed=None)
        return True

    async def _settle(self, *, delivered: list[int], failed: tuple[list[Any], Any] | None) -> None:
        """Record a page's outcome in one transaction: delivered rows go, a failed one waits."""
        async with self._engine.begin() as conn:
            if delivered:
                await conn.execute(outbox.delete().where(outbox.c.id.in_(delivered)))
                self.delivered += len(delivered)
                metrics.LOG_STREAM_DELIVERIES.labels(result="delivered").inc(len(delivered))
            if failed is None or failed[1] is None:
                return
            rows, (message, can_retry) = failed
            ids = [r.id for r in rows]
            attempts = rows[0].attempts + 1
            if can_retry and attempts < self._max_attempts:
                metrics.LOG_STREAM_DELIVERIES.labels(result="retried").inc(len(ids))
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "next_attempt_at": utcnow() + timedelta(seconds=backoff(attempts)),
                    "last_error": message,
                }
            else:
                values = {"attempts": attempts, "state": "dead", "last_error": message}
                metrics.LOG_STREAM_DELIVERIES.labels(result="dead").inc(len(ids))
                log.warning("log stream: gave up on %d events: %s", len(ids), message)
            await conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(**values))

    async def _post(self, body: Any, *, key: str) -> tuple[str, bool] | None:
        data = json.dumps(body, default=str, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            status = await self._client.post(data, extra_headers={"Idempotency-Key": key})
        except WebhookError as exc:
            return str(exc), True
        if status < 300:
            return None
        return f"HTTP {status}", retryable(status)

    async def _measure_backlog(self) -> None:
        self._backlog_at = time.monotonic()
        query = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
            outbox.c.state == "pending"
        )
        async with self._engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        self._backlog = (int(count or 0), as_utc(oldest))

    def backlog(self) -> tuple[int, float]:
        """Pending payloads and the age of the oldest, in seconds (as last measured)."""
        count, oldest = self._backlog
        return count, (utcnow() - oldest).total_seconds() if oldest is not None and count else 0.0

    async def _trim(self) -> None:
        """Keep the backlog bounded: drop the oldest pending items beyond `max_pending`."""
        async with self._engine.begin() as conn:
            newest = await conn.scalar(sa.select(sa.func.max(outbox.c.id)))
            if newest is None:
                return
            result = await conn.execute(
                outbox.delete().where(outbox.c.state == "pending", outbox.c.id <= newest - self._max_pending)
            )
            if result.rowcount:
                self.dropped += result.rowcount
                log.warning("log stream backlog too long: dropped %d oldest events", result.rowcount)
