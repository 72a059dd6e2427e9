"""Answers of the host routes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from docker_manager.schemas.common import ResponseModel


class HealthResult(ResponseModel):
    status: str
    docker: dict[str, Any]


class ProcessInfo(ResponseModel):
    pid: int
    name: str
    username: str | None
    cpu_percent: float
    memory_percent: float
    rss: int
    cmdline: str | None = Field(None, description="Only shown to admin tokens (may hold secrets).")


class TopResult(ResponseModel):
    sort: str
    sampled_at: float | None
    processes: list[ProcessInfo]
