"""The host: `/system/info`, `/system/usage`, `/system/top`, `/system/disk`, `/system/doctor`,
`/system/gc`, and
`/healthz` (the one route without a token: whether the engine answers, nothing more)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from docker_manager.api.deps import (
    AdminAccess,
    DiskDep,
    DoctorDep,
    HostDep,
    ReadAccess,
    RetentionDep,
)
from docker_manager.schemas.host import (
    DiskReport,
    DoctorReport,
    GcReport,
    HealthResult,
    SystemInfo,
    SystemUsage,
    TopResult,
)

router = APIRouter(prefix="/system", tags=["system"])
# Listed apart from `router` only to keep /healthz where the API document always had it.
liveness = APIRouter(tags=["system"])


@router.get("/info", response_model=SystemInfo)
async def info(host: HostDep, _: ReadAccess) -> SystemInfo:
    return await host.info()


@router.get("/usage", response_model=SystemUsage)
async def usage(host: HostDep, _: ReadAccess) -> SystemUsage:
    return await host.usage()


@router.get("/top", response_model=TopResult)
async def top(
    host: HostDep,
    who: ReadAccess,
    sort: Annotated[str, Query(pattern=r"^[a-z_]{1,32}$", description="cpu; anything else: memory")] = "cpu",
    limit: Annotated[int, Query(ge=1, le=500)] = 10,
) -> TopResult:
    """Top processes from the background sampler; command lines only for admin tokens."""
    return host.top(sort=sort, limit=limit, with_cmdline=who.is_admin)


@router.get("/disk", response_model=DiskReport)
async def disk(disks: DiskDep, _: ReadAccess) -> DiskReport:
    """Total and free space of the data, builds, upload and engine roots, and the engine's own
    usage (images, containers, volumes, build cache: size and reclaimable)."""
    return await disks.report()


@router.get("/doctor", response_model=DoctorReport)
async def doctor(checks: DoctorDep, who: ReadAccess) -> DoctorReport:
    """What this host needs, checked: the engine, nginx and its site files, writable folders and
    their free space, modes of the data folder and the admin token file, the database's schema,
    the clock, nginx's ports, certificates near their end. Each problem with its fix; `ok` when
    all pass. A report is reused for 15 s, but for an admin token (a fresh run)."""
    return await checks.run(fresh=who.is_admin)


@router.post("/gc", response_model=GcReport)
async def gc(retention: RetentionDep, _: AdminAccess) -> GcReport:
    """Run the clean-up now: releases beyond DM_KEEP_RELEASES, tasks older than
    DM_TASK_RETENTION_DAYS, dangling images of this service's builds. Answers what went."""
    return await retention.collect()


@liveness.get("/healthz", response_model=HealthResult)
async def healthz(host: HostDep) -> JSONResponse:
    result = await host.health()
    return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)
