"""What a task and its events are. Nothing here knows what the work is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


FINAL = frozenset(s for s in Status if s.final)


class TaskKind(StrEnum):
    """Concurrency classes: tasks of a kind share its limit (`DM_MAX_CONCURRENT_*`). The runner is
    given a limit for every kind, or refuses to start: a kind without one would run unbounded."""

    BUILD = "build"
    LOCALRUN = "localrun"
    ROLLBACK = "rollback"
    PIPELINE = "pipeline"
    COMMAND = "command"
    DEPLOY = "deploy"
    CERTIFICATE = "certificate"


# An event whose status is LOG carries output lines; every other event is a step of the task.
LOG = "log"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    task_id: str
    seq: int
    ts: datetime
    stage: str | None
    status: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "stage": self.stage,
            "status": self.status,
            **self.data,
        }


@dataclass(slots=True)
class TaskRecord:
    id: str
    type: str
    status: Status
    stage: str | None
    app_id: str | None
    result: dict[str, Any] | None
    error: str | None
    files_dir: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[TaskEvent] = field(default_factory=list)
    request_id: str | None = None  # the request that started it (X-Request-ID)
