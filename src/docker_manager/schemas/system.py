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


class DockerFacts(ResponseModel):
    reachable: bool
    version: str | None = None
    api_version: str | None = None
    containers: int | None = None
    containers_running: int | None = None
    images: int | None = None
    storage_driver: str | None = None
    root_dir: str | None = None
    error: str | None = None


class SystemInfo(ResponseModel):
    hostname: str
    os: str
    kernel: str
    architecture: str
    python: str
    cpu_count: int | None
    memory_total: int
    boot_time: float
    docker: DockerFacts


class MemoryUsage(ResponseModel):
    total: int
    available: int | None = None
    used: int
    percent: float


class DiskUsage(ResponseModel):
    path: str
    total: int
    used: int
    free: int
    percent: float


class SystemUsage(ResponseModel):
    cpu_percent: float
    cpu_count: int | None
    load_average: list[float]
    memory: MemoryUsage
    swap: MemoryUsage
    disk: list[DiskUsage]
    network: dict[str, int] | None
    sampled_at: float | None
