"""Running tasks: queueing, per-app order, concurrency limits, cancel, restart recovery.

A task's work is an async function of a `TaskContext`. The runner persists every state change
and event before anyone can see it, keeps a strong reference to each asyncio task, and always
ends a task in a final state: `completed` only when the work returned normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from docker_manager import metrics
from docker_manager.errors import Conflict, DiskFull, DockerManagerError, QueueFull, StorageError
from docker_manager.runner.bus import EventBus
from docker_manager.runner.context import TaskContext
from docker_manager.runner.files import LogBatch, TaskFiles
from docker_manager.runner.models import Status, TaskKind, TaskRecord
from docker_manager.runner.store import StateChange, TaskStore
from docker_manager.util.locks import KeyedLocks
from docker_manager.util.requestctx import REQUEST_ID, TASK_ID

log = logging.getLogger(__name__)

FINAL_ATTEMPTS = 12  # about 80 s of retries for a task's final state

Work = Callable[["TaskContext"], Awaitable[dict[str, Any] | None]]


def new_task_id(task_type: str) -> str:
    """`{task_type}-{10 hex}`, like the original's ids."""
    return f"{task_type}-{secrets.token_hex(5)}"


@dataclass
class TaskSpec:
    """What to run, and under which rules."""

    task_type: str
    work: Work
    app_id: str | None = None
    task_id: str | None = None
    files_dir: Path | None = None
    # Concurrency class: tasks of a kind share its limit; None = no limit (work that only waits).
    kind: TaskKind | None = None
    # Fields added to every payload sent to the external log stream (tag, cmd...).
    stream_fields: dict[str, Any] = field(default_factory=dict)
    # Fields for the final payload of the external log stream, from the final status and result
    # (a host command's `exit_code`, as the original's clients read it).
    final_payload: Callable[[Status, dict[str, Any] | None], dict[str, Any]] | None = None


class TaskRunner:
    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        *,
        limits: dict[TaskKind, int],
        max_queued: int,
        outbox_enabled: bool,
        db_line_cap: int = 20_000,
    ) -> None:
        self.store = store
        self.bus = bus
        unlimited = set(TaskKind) - set(limits)
        if unlimited:
            raise ValueError(f"no concurrency limit for task kinds {sorted(unlimited)}")
        self._slots = {kind: asyncio.Semaphore(limit) for kind, limit in limits.items()}
        self._max_queued = max_queued
        self._outbox = outbox_enabled
        self._db_line_cap = db_line_cap
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._queued: list[str] = []
        self._app_locks = KeyedLocks()
        self._shutting_down = False
        self._waited: dict[str, BaseException | None] = {}
        # Set when the service stops: live followers end their streams.
        self.closing = asyncio.Event()

    # --- submitting --------------------------------------------------------------------------
    async def submit(self, spec: TaskSpec) -> TaskRecord:
        """Persist the task as queued and start it in the background."""
        if self._shutting_down:
            raise Conflict("the service is shutting down")
        if len(self._queued) >= self._max_queued:
            raise QueueFull(f"{len(self._queued)} tasks are already waiting; try again later")
        task_id = spec.task_id or new_task_id(spec.task_type)
        files_dir = spec.files_dir
        # The folder first, then the task's row with its first event in one transaction: if either
        # fails there is neither (no row without its folder, no new folder without its row).
        files, created = await self._open_folder(files_dir)
        record = self.store.new_record(
            task_id=task_id,
            task_type=spec.task_type,
            app_id=spec.app_id,
            files_dir=str(files_dir) if files_dir else None,
            request_id=REQUEST_ID.get(),
        )
        context = TaskContext(
            record=record,
            store=self.store,
            bus=self.bus,
            files=files,
            stream_fields=spec.stream_fields,
            outbox_enabled=self._outbox,
            db_line_cap=self._db_line_cap,
        )
        position = len(self._queued) + 1
        try:
            event = await context.first_event(position=position)
        except BaseException:
            if created and files_dir is not None:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(shutil.rmtree, files_dir)
            raise
        self._queued.append(task_id)
        metrics.TASKS_CREATED.labels(type=spec.task_type).inc()
        metrics.TASKS_QUEUED.labels(kind=spec.kind or "other").inc()
        self.bus.publish(event)
        self._tasks[task_id] = asyncio.create_task(self._run(context, spec), name=f"task-{task_id}")
        return replace(record, events=[])

    @staticmethod
    async def _open_folder(files_dir: Path | None) -> tuple[TaskFiles | None, bool]:
        """The task's folder (made if missing) and whether it was made now."""
        if files_dir is None:
            return None, False
        existed = await asyncio.to_thread(files_dir.exists)
        try:
            files = await TaskFiles.open(files_dir)
        except OSError as exc:
            raise StorageError(f"cannot create the task folder: {exc.strerror or exc}") from exc
        return files, not existed

    async def run_and_wait(self, spec: TaskSpec) -> TaskRecord:
        """Run a task and wait for its end; the work's own error is raised again here.

        For synchronous routes: the caller gets the precise error (409 port_in_use...), and the
        work is still a task with events, files and a final state.
        """
        task_id = spec.task_id or new_task_id(spec.task_type)
        self._waited[task_id] = None
        try:
            await self.submit(replace(spec, task_id=task_id))
            task = self._tasks.get(task_id)
            if task is not None:
                await asyncio.shield(task)
            error = self._waited.get(task_id)
        finally:
            self._waited.pop(task_id, None)
        record = await self.store.get(task_id)
        if error is not None:
            raise error
        if record.status is not Status.COMPLETED:
            raise Conflict(f"the task ended {record.status.value}: {record.error or ''}".rstrip(": "))
        return record

    def queue_position(self, task_id: str) -> int | None:
        try:
            return self._queued.index(task_id) + 1
        except ValueError:
            return None

    def running_count(self) -> int:
        """Tasks of this process not yet ended (queued ones included)."""
        return sum(1 for task in self._tasks.values() if not task.done())

    def is_live(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        return task is not None and not task.done()

    async def _run(self, context: TaskContext, spec: TaskSpec) -> None:
        TASK_ID.set(context.task_id)  # this asyncio task's own context: for its log lines
        started = time.monotonic()
        kind = spec.kind or "other"
        status, result, error = Status.ERROR, None, None
        running, begun = False, started
        try:
            async with self._app_locks.hold(spec.app_id), self._slot(spec.kind):
                self._queued.remove(context.task_id)
                metrics.TASKS_QUEUED.labels(kind=kind).dec()
                metrics.TASK_QUEUE_WAIT.labels(type=spec.task_type).observe(time.monotonic() - started)
                metrics.TASKS_RUNNING.labels(kind=kind).inc()
                running, begun = True, time.monotonic()
                await context.event(None, Status.RUNNING.value, change=StateChange(status=Status.RUNNING))
                result = await spec.work(context)
            status = Status.COMPLETED
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            status = Status.INTERRUPTED if self._shutting_down else Status.CANCELLED
            error = (
                "the service stopped while this task ran" if self._shutting_down else "cancelled on request"
            )
        except Exception as exc:
            known = DiskFull.from_error(exc) or exc
            if isinstance(known, DockerManagerError):
                error = known.detail
                result = {"code": known.code, **known.extra}
                if context.task_id in self._waited:
                    self._waited[context.task_id] = known
            else:
                log.exception("task %s failed unexpectedly", context.task_id)
                error = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(ValueError):
                self._queued.remove(context.task_id)
                metrics.TASKS_QUEUED.labels(kind=kind).dec()  # it never got its slot
            if running:
                metrics.TASKS_RUNNING.labels(kind=kind).dec()
        context.end_stage()
        metrics.TASKS_FINISHED.labels(type=spec.task_type, status=status.value).inc()
        metrics.TASK_DURATION.labels(type=spec.task_type).observe(time.monotonic() - begun)
        extra = spec.final_payload(status, result) if spec.final_payload is not None else None
        await self._finish(
            context, status, result=result, error=error, duration=time.monotonic() - started, payload=extra
        )

    @contextlib.asynccontextmanager
    async def _slot(self, kind: TaskKind | None) -> AsyncIterator[None]:
        semaphore = self._slots.get(kind) if kind else None
        if semaphore is None:
            yield
            return
        async with semaphore:
            yield

    async def _finish(
        self,
        context: TaskContext,
        status: Status,
        *,
        result: dict[str, Any] | None,
        error: str | None,
        duration: float,
        payload: dict[str, Any] | None = None,
    ) -> None:
        try:
            with contextlib.suppress(OSError):  # files are best effort; the final state is not
                await context.close()
                if status is not Status.COMPLETED and context.files is not None:
                    # Whatever the work wrote, the summary must not claim it is still building.
                    await context.merge_summary(
                        {
                            "status": "error",
                            "task_status": status.value,
                            "error": error,
                            "stage": context.stage,
                        }
                    )
            extra = {"log_truncated": True} if context.files is not None and context.files.truncated else {}
            final: dict[str, Any] = {
                "message": error,
                "level": "error" if status is not Status.COMPLETED else "info",
                "change": StateChange(status=status, result=result or {}, error=error),
                "payload_extra": payload,
                "final": True,
                "duration_sec": round(duration, 3),
                **extra,
            }
            # The final state must be recorded: a database held by another process (a backup,
            # an open sqlite3) is waited for, with backoff, for a bounded time.
            for attempt in range(FINAL_ATTEMPTS):
                try:
                    await context.event(context.stage, status.value, **final)
                    break
                except (DBAPIError, PoolTimeout) as exc:
                    if attempt + 1 == FINAL_ATTEMPTS:
                        raise
                    log.warning("recording the end of %s waits for the database: %s", context.task_id, exc)
                    await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
        except Exception:
            log.exception("could not record the end of task %s", context.task_id)
        finally:
            self.bus.close(context.task_id)
            self.store.forget(context.task_id)
            self._tasks.pop(context.task_id, None)

    # --- cancelling, shutdown, recovery ------------------------------------------------------
    async def cancel(self, task_id: str) -> TaskRecord:
        record = await self.store.get(task_id, with_events=False)
        task = self._tasks.get(task_id)
        if record.status.final or task is None:
            raise Conflict(f"task {task_id!r} is already {record.status.value}")
        task.cancel()
        await asyncio.wait({task}, timeout=30)
        return await self.store.get(task_id)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop every task; they end as `interrupted`."""
        self._shutting_down = True
        self.closing.set()
        running = list(self._tasks.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=grace)

    async def recover(self) -> list[str]:
        """Mark tasks an earlier process left queued or running as interrupted."""
        recovered = []
        for record in await self.store.leftovers():
            message = f"the service restarted while this task was {record.status.value}"
            if record.files_dir:
                files = TaskFiles(Path(record.files_dir))
                if await _exists(files.directory):
                    await files.append(LogBatch(events=[f"interrupted: {message}"], errors=[message]))
                    await files.merge_info(
                        {"status": "error", "task_status": Status.INTERRUPTED.value, "error": message}
                    )
            await self.store.record(
                record.id,
                stage=record.stage,
                status=Status.INTERRUPTED.value,
                data={"message": message, "final": True},
                change=StateChange(status=Status.INTERRUPTED, error=message),
            )
            self.store.forget(record.id)
            recovered.append(record.id)
        return recovered


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.is_dir)
