"""Looking at tasks: status, pages, cancel, and the per-task log files (`/tasks/logs`)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from docker_manager.auth import Principal, Scope
from docker_manager.config import Roots
from docker_manager.errors import InsufficientScope, NotFound
from docker_manager.runner import LOG, Status, TaskEvent, TaskRecord, TaskRunner, follow
from docker_manager.runner.files import (
    BUILD_JSONL,
    BUILD_LOG,
    DOCKERFILE_PARSED,
    ERROR_LOG,
    EVENTS_LOG,
    INFO_JSON,
    read_json,
)
from docker_manager.schemas.tasks import TaskLogs, TaskPage, TaskStatus, TaskSummary
from docker_manager.util.paths import plain_dir
from docker_manager.util.tail import TailSpan, read_span, tail_span

Server = Literal["build", "runtime"]

# build.info.json fields the API README promises at the top level of /tasks/logs.
HEALTH_FIELDS = (
    "healthcheck",
    "healthchecksstatus",
    "isChecking",
    "healthcheck_time",
    "start_check_time",
    "end_check_time",
)
# Task types whose argv and output only admin may see: host commands run as root.
ADMIN_ONLY_TYPES = frozenset({"generic_task"})
# Summary fields that hold a container's own output (shown to `exec` tokens only).
CONTAINER_OUTPUT_KEYS = frozenset({"last_lines"})
# What one /tasks/logs request reads at most: 4 files of up to 4 MiB each, whatever `tail` asks.
TAIL_BYTES_PER_FILE = 4 << 20
FINAL_JSON_CACHE = 1024
_SECRET_KEYS = frozenset({"env", "password", "sftp_password", "dockerhub_password", "build_args"})
_COMMAND_KEYS = frozenset({"command"})


def redact_summary(value: Any, *, with_command: bool = False) -> Any:
    """Hide values that may be secrets (environment values, passwords) in stored summaries; a
    container's command line too (`--password=...`) unless `with_command` (an exec token, which
    sees it in the container's inspect as well)."""
    hidden = _SECRET_KEYS if with_command else _SECRET_KEYS | _COMMAND_KEYS
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if key in hidden and isinstance(item, dict):
                result[key] = dict.fromkeys(item, "<redacted>")
            elif key in hidden and item not in (None, "", []):
                result[key] = "<redacted>"
            else:
                result[key] = redact_summary(item, with_command=with_command)
        return result
    if isinstance(value, list):
        return [redact_summary(item, with_command=with_command) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class EventView:
    """One event as followers get it: its number, its kind (`log` lines, a `step`, the `end`)."""

    seq: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: TaskEvent) -> EventView:
        kind = "log" if event.status == LOG else ("end" if event.data.get("final") else "step")
        return cls(event.seq, kind, {"task_id": event.task_id, **event.as_dict()})


def find_task_dir(roots: Roots, task_id: str, server: Server | None = None) -> Path:
    """The folder holding a task: the runtime (upload) root first, the README's order, then builds.

    Without `server`, the first root that has this task; if none has it, the last candidate.
    Blocking (it stats the filesystem).
    """
    candidates = {"build": [roots.builds_path], "runtime": [roots.upload_path]}.get(
        server or "", [roots.upload_path, roots.builds_path]
    )
    for root in candidates:
        candidate = root / task_id
        # A task folder is a real directory, never a symlink planted into a shared root.
        if candidate.is_dir() and not candidate.is_symlink():
            return candidate
    # None has it: the last candidate, which must not be a symlink either (it may get written).
    return plain_dir(candidates[-1] / task_id, create=False)


def _status_of(record: TaskRecord, position: int | None) -> TaskStatus:
    return TaskStatus(
        task_id=record.id,
        task_type=record.type,
        status=record.status.value,
        stage=record.stage,
        app_id=record.app_id,
        events=[event.as_dict() for event in record.events],
        result=record.result,
        error=record.error,
        created_at=record.created_at,
        updated_at=record.updated_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        queue_position=position if record.status is Status.QUEUED else None,
        request_id=record.request_id,
    )


class TaskService:
    def __init__(self, *, runner: TaskRunner, roots: Roots) -> None:
        self._runner = runner
        self._roots = roots
        # A finished task's status never changes: its JSON is encoded once (polled hard by
        # control planes). Keyed by id, checked against the record's last update.
        self._final_json: OrderedDict[str, tuple[datetime, bytes]] = OrderedDict()

    @staticmethod
    def check_access(record: TaskRecord, principal: Principal) -> None:
        """A host command's argv and output are admin's: other tokens cannot see or stop it; a token
        limited to apps sees the tasks of those apps only."""
        if record.type in ADMIN_ONLY_TYPES and not principal.is_admin:
            raise InsufficientScope(f"task {record.id!r} is a host command: it needs an admin token")
        principal.require_app(record.app_id, f"task {record.id!r}")

    async def status(self, task_id: str, principal: Principal) -> TaskStatus:
        record = await self._runner.store.get(task_id)
        self.check_access(record, principal)
        return _status_of(record, self._runner.queue_position(task_id))

    async def status_json(self, task_id: str, principal: Principal) -> bytes:
        """`status` as the JSON the route sends."""
        record = await self._runner.store.get(task_id, with_events=False)
        self.check_access(record, principal)
        cached = self._final_json.get(task_id)
        if cached is not None and record.status.final and cached[0] == record.updated_at:
            self._final_json.move_to_end(task_id)  # the polled ones stay
            return cached[1]
        record = await self._runner.store.get(task_id)  # now with its steps
        body = _status_of(record, self._runner.queue_position(task_id)).model_dump_json().encode()
        if record.status.final:
            self._final_json[task_id] = (record.updated_at, body)
            while len(self._final_json) > FINAL_JSON_CACHE:
                self._final_json.popitem(last=False)
        return body

    async def events(
        self, task_id: str, principal: Principal, *, after: int
    ) -> AsyncIterator[EventView | None]:
        """The task's events live, from `after` on, until the final one (None: a quiet spell, for
        keep-alives). Checked (404, 403) before the first event: call it before a stream starts."""
        self.check_access(await self._runner.store.get(task_id, with_events=False), principal)
        events = follow(self._runner.store, self._runner.bus, task_id, after=after, stop=self._runner.closing)

        async def views() -> AsyncIterator[EventView | None]:
            async for event in events:
                yield None if event is None else EventView.of(event)

        return views()

    async def page(
        self,
        *,
        status: Status | None,
        task_type: str | None,
        app_id: str | None,
        limit: int,
        cursor: str | None,
        principal: Principal,
    ) -> TaskPage:
        hidden = () if principal.is_admin else tuple(ADMIN_ONLY_TYPES)
        records, next_cursor = await self._runner.store.page(
            status=status, task_type=task_type, app_id=app_id, limit=limit, cursor=cursor, hidden_types=hidden
        )
        if principal.apps is not None:  # (a limited token's page may hold fewer than `limit`)
            records = [r for r in records if principal.allows_app(r.app_id)]
        return TaskPage(
            tasks=[
                TaskSummary(
                    task_id=r.id,
                    task_type=r.type,
                    status=r.status.value,
                    stage=r.stage,
                    app_id=r.app_id,
                    error=r.error,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                )
                for r in records
            ],
            next_cursor=next_cursor,
        )

    async def cancel(self, task_id: str, principal: Principal) -> TaskStatus:
        self.check_access(await self._runner.store.get(task_id, with_events=False), principal)
        record = await self._runner.cancel(task_id)
        return _status_of(record, None)

    # --- log files -------------------------------------------------------------------------
    def task_dir(self, task_id: str, server: Server | None) -> Path:
        return find_task_dir(self._roots, task_id, server)

    async def logs(self, task_id: str, principal: Principal, *, server: Server | None, tail: int) -> TaskLogs:
        """The whole answer at once (the dashboard's short tails)."""
        document, spans = await self._logs_document(task_id, principal, server=server, tail=tail)
        document["build_logs"] = await asyncio.to_thread(_collect, spans)
        return TaskLogs.model_validate(document)

    async def logs_json(
        self, task_id: str, principal: Principal, *, server: Server | None, tail: int
    ) -> AsyncIterator[bytes]:
        """The same answer as JSON, made as it is sent: the log lines are read in blocks as the
        client takes them, so a caller that reads slowly (or never) holds a block, not 16 MiB.
        Checked (404, 403) before it returns: call it before a response starts."""
        document, spans = await self._logs_document(task_id, principal, server=server, tail=tail)
        document["build_logs"] = {}
        return _json_with_logs(TaskLogs.model_validate(document).model_dump(mode="json"), spans)

    async def _logs_document(
        self, task_id: str, principal: Principal, *, server: Server | None, tail: int
    ) -> tuple[dict[str, Any], list[tuple[str, TailSpan]]]:
        record = await self._runner.store.find(task_id)
        if record is not None:
            self.check_access(record, principal)
        else:
            principal.require_app(None, f"the folder of {task_id!r}")  # (files of no known task)
        folder = await asyncio.to_thread(self.task_dir, task_id, server)
        if (
            record is not None
            and record.files_dir
            and server is None
            and not await asyncio.to_thread(folder.is_dir)
        ):
            # No folder named after it: the one it wrote into (a localrun writes into its
            # artefact's folder, which is named after the build that made it).
            folder = Path(record.files_dir)
        found = await asyncio.to_thread(_read_folder, folder, tail, principal.has(Scope.EXEC))
        if record is None and found is None:
            raise NotFound(f"no task {task_id!r} and no log folder for it")
        body, spans = found or (
            {"build_logs": {}, "build_metadata": {}, "files_available": [], "warnings": []},
            [],
        )
        summary = body["build_metadata"].get("summary") or {}
        task_status = record.status.value if record else None
        result: dict[str, Any] = {
            "task_id": task_id,
            # The task's status when this service knows the task (as the original's registry
            # status), else the summary's; the summary keeps its own inside build_metadata.
            "status": task_status or summary.get("status") or summary.get("stage"),
            "task_status": task_status,
            "build_status": summary.get("status"),
            "stage": summary.get("stage") or (record.stage if record else None),
            "server": server or ("runtime" if folder.parent == self._roots.upload_path else "build"),
        }
        result.update({key: summary[key] for key in HEALTH_FIELDS if key in summary})
        result.update(body)
        if record is None:
            result["warnings"].append("this task is not in this service's records; showing its files only")
        return result, spans


# build.log, events.log, error.log as text lines; build.jsonl as parsed objects ("structured").
_LOG_FILES = (("raw", BUILD_LOG), ("events", EVENTS_LOG), ("error", ERROR_LOG), ("structured", BUILD_JSONL))


def _read_folder(
    folder: Path, tail: int, with_output: bool
) -> tuple[dict[str, Any], list[tuple[str, TailSpan]]] | None:
    """The folder's small files, and where the last `tail` lines of each log are. Blocking."""
    if not folder.is_dir() or folder.is_symlink():
        return None
    spans = []
    for key, name in _LOG_FILES:
        span = tail_span(folder / name, tail, max_bytes=TAIL_BYTES_PER_FILE)
        if span is not None:
            spans.append((key, span))
    warnings: list[str] = []
    summary = read_json(folder / INFO_JSON)
    if summary is None and (folder / INFO_JSON).exists():
        warnings.append(f"{INFO_JSON} is not valid JSON")
    if summary is not None and not with_output:
        # The container's own output (the health check's last lines) is for exec tokens.
        summary = {k: v for k, v in summary.items() if k not in CONTAINER_OUTPUT_KEYS}
    body = {
        "build_logs": {},
        "build_metadata": {
            "summary": redact_summary(summary, with_command=with_output) if summary is not None else None,
            "dockerfile_parsed": read_json(folder / DOCKERFILE_PARSED),
        },
        "files_available": sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
        ),
        "warnings": warnings,
    }
    return body, spans


def _as_item(key: str, line: str) -> Any:
    return _parse_json_line(line) if key == "structured" else line


def _collect(spans: list[tuple[str, TailSpan]]) -> dict[str, Any]:
    """Every span's lines at once. Blocking."""
    logs: dict[str, Any] = {}
    for key, span in spans:
        logs[key] = [_as_item(key, line) for batch in read_span(span) for line in batch]
        logs[f"{key}_bytes"] = span.size
    return logs


class _SpanReader:
    """A span's lines for a streamed answer, a small batch per thread hop. Closing it from the loop
    while a read runs in its thread (the client went away) leaves the closing to that thread."""

    BATCH = 16 << 10  # small pieces: a hundred slow readers each hold one, not a megabyte

    def __init__(self, span: TailSpan) -> None:
        self._batches = read_span(span, batch_bytes=self.BATCH, block=self.BATCH)
        self._lock = threading.Lock()
        self._closed = False

    def next_batch(self) -> list[str] | None:
        """Blocking: runs in a worker thread."""
        with self._lock:
            if self._closed:
                return None
            batch = next(self._batches, None)
            if self._closed:
                self._batches.close()
            return batch

    def close(self) -> None:
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._batches.close()
            finally:
                self._lock.release()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


async def _json_with_logs(
    document: dict[str, Any], spans: list[tuple[str, TailSpan]]
) -> AsyncIterator[bytes]:
    """`document` as JSON, its `build_logs` filled from `spans` a batch of lines at a time."""
    yield b"{"
    for index, (name, value) in enumerate(document.items()):
        yield (b"," if index else b"") + _dumps(name) + b":"
        if name != "build_logs":
            yield _dumps(value)
            continue
        yield b"{"
        for number, (key, span) in enumerate(spans):
            yield (b"," if number else b"") + _dumps(key) + b":["
            lines = _SpanReader(span)
            try:
                first = True
                while (batch := await asyncio.to_thread(lines.next_batch)) is not None:
                    yield (b"" if first else b",") + b",".join(_dumps(_as_item(key, line)) for line in batch)
                    first = False
            finally:
                lines.close()  # its file, whether or not the client read to the end
            yield b"]," + _dumps(f"{key}_bytes") + b":" + _dumps(span.size)
        yield b"}"
    yield b"}"


def _parse_json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {"text": line}
