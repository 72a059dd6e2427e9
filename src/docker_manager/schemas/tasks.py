"""Answers of the task routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from docker_manager.schemas.common import ResponseModel


class TaskStatus(ResponseModel):
    task_id: str
    task_type: str
    status: str = Field(description="queued, running, completed, error, cancelled or interrupted")
    stage: str | None
    app_id: str | None
    events: list[dict[str, Any]] = Field(description="Steps of the task (output lines are not listed).")
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = Field(None, description="1 = next to run; only while queued.")
    request_id: str | None = Field(None, description="The request that started it (its X-Request-ID).")


class TaskSummary(ResponseModel):
    task_id: str
    task_type: str
    status: str
    stage: str | None
    app_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


class TaskPage(ResponseModel):
    tasks: list[TaskSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class TaskLogs(ResponseModel):
    task_id: str
    status: str | None = Field(
        description="The task's status when this service knows the task, else build.info.json's status."
    )
    task_status: str | None = Field(description="The task's own status, when this service ran it.")
    build_status: str | None = Field(
        None, description="build.info.json's status (building, successful, failed, error)."
    )
    stage: str | None
    server: str = Field(description="build or runtime: which root the folder was read from.")
    build_logs: dict[str, Any] = Field(
        description="raw, events, error (last lines), structured (parsed build.jsonl), and *_bytes sizes"
    )
    build_metadata: dict[str, Any] = Field(description="summary (build.info.json) and dockerfile_parsed")
    files_available: list[str]
    warnings: list[str]
    healthcheck: bool | None = None
    healthchecksstatus: str | None = None
    isChecking: bool | None = None
    healthcheck_time: int | None = None
    start_check_time: str | None = None
    end_check_time: str | None = None
