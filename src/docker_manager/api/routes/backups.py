"""Backups of this service's state: `POST /system/backup` streams one (admin), `GET
/system/backups` says what the scheduled ones did (read). Restore is a host command (the service
stopped): `docker-manager restore` (docs/backups.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import AdminAccess, BackupsDep, ReadAccess
from docker_manager.schemas.backups import BackupRequest, BackupStatus

router = APIRouter(prefix="/system", tags=["backups"])


@router.post(
    "/backup",
    responses={200: {"content": {"application/octet-stream": {}}}},
    response_class=StreamingResponse,
)
async def backup(backups: BackupsDep, _: AdminAccess, body: BackupRequest | None = None) -> StreamingResponse:
    """This host's state as one sealed archive, streamed as it is written (what `docker-manager
    backup` writes: restore it with `docker-manager restore`). The passphrase is the body's, else
    DM_BACKUP_PASSPHRASE_FILE's."""
    given = body.passphrase.get_secret_value() if body and body.passphrase else None
    passphrase = await backups.passphrase(given)
    name = backups.file_name()
    return StreamingResponse(
        await backups.stream(passphrase),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/backups", response_model=BackupStatus)
async def backups_status(backups: BackupsDep, _: ReadAccess) -> BackupStatus:
    """Scheduled backups: when the last one was written, its size, the last failure, the files."""
    return await backups.status()
