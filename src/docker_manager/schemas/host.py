"""The host: what `/healthz` and `/system/*` answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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
    cmdline: list[str] = Field(
        description="The command line as a list; empty unless the token is admin (it may hold secrets)."
    )


class TopResult(ResponseModel):
    sort: str = Field(description="cpu, or memory (any other value asked for means memory, as before)")
    limit: int
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


class CpuCount(ResponseModel):
    logical: int | None
    physical: int | None


class MemoryTotal(ResponseModel):
    total: int
    available: int


class LoadAverage(ResponseModel):
    model_config = {"populate_by_name": True}

    one: float = Field(alias="1m", serialization_alias="1m")
    five: float = Field(alias="5m", serialization_alias="5m")
    fifteen: float = Field(alias="15m", serialization_alias="15m")


class SystemInfo(ResponseModel):
    hostname: str
    platform: str
    python: str
    uptime_seconds: float
    cpu: CpuCount
    memory: MemoryTotal
    loadavg: LoadAverage | None
    os: str
    kernel: str
    architecture: str
    cpu_count: int | None
    memory_total: int
    boot_time: float
    docker: DockerFacts


class MemoryUsage(ResponseModel):
    total: int
    available: int | None = None
    used: int
    free: int | None = None
    percent: float


class RootDisk(ResponseModel):
    total: int
    used: int
    free: int
    percent: float


class NetIo(ResponseModel):
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int


class DiskUsage(ResponseModel):
    path: str
    total: int
    used: int
    free: int
    percent: float


class SystemUsage(ResponseModel):
    cpu_percent: float
    memory: MemoryUsage
    swap: MemoryUsage
    disk_root: RootDisk
    net_io: NetIo | None
    cpu_count: int | None
    load_average: list[float]
    disk: list[DiskUsage] = Field(description="/ and the data directory, with their paths.")
    network: dict[str, int] | None
    sampled_at: float | None


class FilesystemUsage(BaseModel):
    name: str = Field(description="data, builds, upload or engine.")
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    min_free_bytes: int = Field(description="What an operation must leave free here.")


class EngineUsage(BaseModel):
    count: int
    size_bytes: int
    reclaimable_bytes: int


class DiskReport(BaseModel):
    filesystems: list[FilesystemUsage]
    engine: dict[str, EngineUsage] = Field(description="images, containers, volumes, build_cache.")


class GcReport(BaseModel):
    releases_pruned: list[str] = Field(default_factory=list, description="`app_id#number` of each.")
    containers: list[str] = Field(default_factory=list, description="Removed containers (names).")
    images: list[str] = Field(default_factory=list, description="Removed images (ids).")
    artefacts: list[str] = Field(default_factory=list, description="Removed .tar.lz4 files.")
    tasks: list[str] = Field(default_factory=list, description="Removed tasks (ids).")
    task_folders: list[str] = Field(default_factory=list)
    audit_entries: int = Field(0, description="Audit entries older than DM_AUDIT_RETENTION_DAYS removed.")
    bytes_reclaimed: int = 0
    errors: list[str] = Field(default_factory=list, description="What could not be removed, and why.")


class DoctorCheck(BaseModel):
    name: str = Field(
        description="engine, nginx, folders, disk <root>, data folder, database, clock, port N..."
    )
    ok: bool
    detail: str = Field(description="What was seen.")
    fix: str | None = Field(None, description="For a problem: what to do about it.")


class DoctorReport(BaseModel):
    ok: bool = Field(description="Whether every check passed.")
    checks: list[DoctorCheck]
