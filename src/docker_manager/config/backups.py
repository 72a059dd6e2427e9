"""Settings of the service's own backups (the archive format: docs/backups.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class BackupFields(BaseModel):
    # --- backups of this service's state -----------------------------------------------------
    backup_dir: Path | None = Field(
        None,
        description=(
            "Where scheduled backups are written (`docker-manager-<time>.dmbackup`, 0600), every "
            "`DM_BACKUP_INTERVAL` seconds. None: no scheduled backups (`docker-manager backup` and "
            "`POST /system/backup` still work). Best on another disk or a mount of another host."
        ),
    )
    backup_interval: float = Field(
        86400.0,
        ge=60,
        le=30 * 86400,
        description=(
            "Seconds between scheduled backups (the first one once the newest in the folder is this "
            "old, at once when there is none)."
        ),
    )
    backup_keep: int = Field(
        7, ge=1, le=1000, description="Scheduled backups kept in `DM_BACKUP_DIR` (newest)."
    )
    backup_passphrase_file: Path | None = Field(
        None,
        description=(
            "A file holding the passphrase scheduled backups (and `POST /system/backup` without one) "
            "are sealed with; at least 12 characters, the file readable by this service only."
        ),
    )
