"""Delivery of task events to the external log stream (`log_stream_endpoint`).

Events are written to the `outbox` table in the same transaction as the event itself, so the
work never waits for the network. One dispatcher posts them in order (oldest first: hence in
order per task), in batches, and retries with capped exponential backoff and jitter. A 4xx other
than 408/429 is not retried. After `max_attempts` a batch is set aside as `dead`.

Body of a batched POST (the default):   {"events": [payload, ...]}
Body with `log_stream_batch` false:     payload                     (one POST per payload)

Each payload keeps the original service's fields: `task` (task type), `task_id`, `app_id`,
`stage`, `status`, `ts`, `seq`, plus `line` and `stream` for output lines (and `chunk`, the
engine's raw record, for build output), `exit_code` for finished commands, and the step's fields.
Requests carry the configured `auth_header` headers and an `Idempotency-Key` (delivery is at
least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta
from typing import Any

import httpx2
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.db.tables import outbox
from docker_manager.tasks.store import utcnow

log = logging.getLogger(__name__)

IDLE_POLL = 0.25
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
        batch: bool = True,
        batch_size: int = 100,
        timeout: float = 5.0,
        max_attempts: int = 8,
        max_pending: int = 100_000,
    ) -> None:
        self._engine = engine
        self._url = url
        self._headers = {**headers, "Content-Type": "application/json"}
        self._batch = batch
        self._batch_size = batch_size if batch else 1
        self._max_attempts = max_attempts
        self._max_pending = max_pending
        self._client = httpx2.AsyncClient(timeout=httpx2.Timeout(timeout), trust_env=False)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _loop(self) -> None:
        rounds = 0
        while True:
            try:
                rounds += 1
                if rounds % 200 == 1:
                    await self._trim()
                if not await self._deliver_once():
                    await asyncio.sleep(IDLE_POLL)
            except asyncio.CancelledError:
                raise
            except Exception:  # the dispatcher must outlive any single failure
                log.exception("outbox dispatcher failed; retrying")
                await asyncio.sleep(1.0)

    async def _deliver_once(self) -> bool:
        """Send the oldest due batch. Returns False when there was nothing to send now."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(outbox.c.id, outbox.c.payload, outbox.c.attempts, outbox.c.next_attempt_at)
                    .where(outbox.c.state == "pending")
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return False
        head_due = rows[0].next_attempt_at
        if head_due.tzinfo is None:
            head_due = head_due.replace(tzinfo=utcnow().tzinfo)
        if head_due > utcnow():
            return False  # the head is waiting for its retry: keep order, wait
        # Only items that share the head's retry history travel together.
        batch = [r for r in rows if r.attempts == rows[0].attempts]
        ids = [r.id for r in batch]
        error = await self._post([r.payload for r in batch], key=f"{ids[0]}-{ids[-1]}")
        async with self._engine.begin() as conn:
            if error is None:
                await conn.execute(outbox.delete().where(outbox.c.id.in_(ids)))
                self.delivered += len(ids)
                return True
            message, can_retry = error
            attempts = rows[0].attempts + 1
            if can_retry and attempts < self._max_attempts:
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "next_attempt_at": utcnow() + timedelta(seconds=backoff(attempts)),
                    "last_error": message,
                }
            else:
                values = {"attempts": attempts, "state": "dead", "last_error": message}
                log.warning("log stream: gave up on %d events: %s", len(ids), message)
            await conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(**values))
        return True

    async def _post(self, payloads: list[dict[str, Any]], *, key: str) -> tuple[str, bool] | None:
        body: Any = {"events": payloads} if self._batch else payloads[0]
        try:
            response = await self._client.post(
                self._url, json=body, headers={**self._headers, "Idempotency-Key": key}
            )
        except httpx2.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", True
        if response.status_code < 300:
            return None
        return f"HTTP {response.status_code}", retryable(response.status_code)

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
