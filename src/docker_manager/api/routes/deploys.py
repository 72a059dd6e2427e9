"""Deploys: `POST /apps/{app_id}/deploy` (the one deploy operation, as a task) and the original's
`/docker/localrun`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from docker_manager.api.deps import AppOperateAccess, DeploysDep, LocalRunDep, OperateAccess
from docker_manager.schemas.common import AppId
from docker_manager.schemas.deploys import DeployRequest, DeployStarted, LocalRunRequest, LocalRunResult

router = APIRouter(tags=["deploy"])


@router.post("/docker/localrun", response_model=LocalRunResult)
async def localrun(body: LocalRunRequest, localrun: LocalRunDep, who: OperateAccess) -> LocalRunResult:
    """Decompress a `.tar.lz4` artefact straight into the engine, run the image, schedule its health check.

    Stages `decompiling` then `running`; the build's folder gets the logs and `build.info.json`
    (`status: "building"`, `stage`, `container_id`, `container_name`, `host_port`, health-check
    fields, a `localrun` section). The check's verdict lands there after `healthcheck_time` seconds.
    """
    return await localrun.run(body, who)


@router.post("/apps/{app_id}/deploy", response_model=DeployStarted, status_code=202)
async def deploy_app(
    app_id: Annotated[AppId, Path()], body: DeployRequest, deploys: DeploysDep, who: AppOperateAccess
) -> DeployStarted:
    """Deploy a new version of the app, as one task of type `deploy`: its image from exactly one
    source (`context` built here, `git` cloned and built, `image`, or `artefact` loaded), a new
    container (limits, env, ports), a health check, the switch of every site of the app (and
    `domain`, made if missing) with no failed request, the release recorded once it serves, then
    the previous container retired after the drain. Follow it with `/tasks/{task_id}/events`.

    On the same host the image is run where it was built: nothing is exported or loaded (`export`
    saves an artefact too, after the switch). A failure or a cancel at any step leaves the previous
    release live and serving, the new container stopped and kept, and the task `error` naming the
    step. Deploys of one app run one after the other (or are refused: `DM_DEPLOY_QUEUE`).
    """
    who.require_app(app_id, "this app")
    record = await deploys.start(app_id, body, who)
    return DeployStarted(task_id=record.id, app_id=app_id)
