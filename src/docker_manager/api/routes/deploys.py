"""Deployment routes: `/docker/localrun` (nginx sites and switching come with their own issue)."""

from __future__ import annotations

from fastapi import APIRouter

from docker_manager.api.deps import LocalRunDep, OperateAccess
from docker_manager.schemas.deploys import LocalRunRequest, LocalRunResult

router = APIRouter(tags=["deploy"])


@router.post("/docker/localrun", response_model=LocalRunResult)
async def localrun(body: LocalRunRequest, localrun: LocalRunDep, who: OperateAccess) -> LocalRunResult:
    """Decompress a `.tar.lz4` artefact straight into the engine, run the image, schedule its health check.

    Stages `decompiling` then `running`; the build's folder gets the logs and `build.info.json`
    (`status: "building"`, `stage`, `container_id`, `container_name`, `host_port`, health-check
    fields, a `localrun` section). The check's verdict lands there after `healthcheck_time` seconds.
    """
    return await localrun.run(body, who)
