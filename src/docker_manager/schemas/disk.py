"""Answers of `/system/disk` and `/system/gc`."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
