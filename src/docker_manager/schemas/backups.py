"""Backups of this service's state: a request for one, and what the scheduled ones did."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, SecretStr

from docker_manager.adapters.backup_cipher import MIN_PASSPHRASE
from docker_manager.schemas.common import StrictModel


class BackupRequest(StrictModel):
    passphrase: SecretStr | None = Field(
        None,
        min_length=MIN_PASSPHRASE,
        max_length=1024,
        description=(
            f"Seals the archive (at least {MIN_PASSPHRASE} characters); none: DM_BACKUP_PASSPHRASE_FILE's."
        ),
    )


class BackupFile(BaseModel):
    name: str
    size: int
    created_at: datetime


class BackupStatus(BaseModel):
    enabled: bool = Field(
        description="Scheduled backups are made (DM_BACKUP_DIR and a passphrase file are set)."
    )
    directory: str | None
    interval_seconds: float
    keep: int
    last_at: datetime | None = Field(None, description="When the last scheduled backup was written.")
    last_file: str | None = None
    last_size_bytes: int | None = None
    last_duration_seconds: float | None = None
    last_error: str | None = Field(None, description="Why the last attempt failed (None after a success).")
    last_error_at: datetime | None = None
    next_at: datetime | None = None
    files: list[BackupFile] = Field(
        default_factory=list, description="The backups in the folder, newest first."
    )
