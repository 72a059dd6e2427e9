"""`/apps`: apps, their releases, rollback, and a swarm app's scale."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import (
    AppOperateAccess,
    AppReadAccess,
    ReadAccess,
    ReleasesDep,
    RollbackDep,
    StreamsDep,
    SwarmOperationsDep,
)
from docker_manager.api.streaming import ndjson
from docker_manager.schemas.releases import (
    AppDetail,
    AppView,
    ReleaseView,
    RollbackRequest,
    RollbackStarted,
    ScaleRequest,
    ScaleStarted,
)

router = APIRouter(prefix="/apps", tags=["apps"])

AppPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="The app id.")]


@router.get("", response_model=list[AppView])
async def list_apps(releases: ReleasesDep, _: ReadAccess) -> list[AppView]:
    """Every app that has a release: its live release, container, state, host port, domains, health."""
    return await releases.apps()


@router.get("/{app_id}", response_model=AppDetail)
async def get_app(app_id: AppPath, releases: ReleasesDep, who: AppReadAccess) -> AppDetail:
    who.require_app(app_id, "this app")
    return await releases.app(app_id)


@router.get("/{app_id}/releases", response_model=list[ReleaseView])
async def list_releases(
    app_id: AppPath,
    releases: ReleasesDep,
    who: AppReadAccess,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[ReleaseView]:
    """Newest first."""
    who.require_app(app_id, "this app")
    return await releases.releases(app_id, limit=limit)


@router.post("/{app_id}/rollback", response_model=RollbackStarted)
async def rollback(
    app_id: AppPath, body: RollbackRequest, rollbacks: RollbackDep, who: AppOperateAccess
) -> RollbackStarted:
    """Run an earlier release again (default: the newest one before the live one), health-gated;
    a task of type `rollback` (follow it on `/tasks/{task_id}`). A swarm app's release is rolled
    out again on its replicas."""
    who.require_app(app_id, "this app")
    return await rollbacks.start(app_id, body, who)


@router.post("/{app_id}/scale", response_model=ScaleStarted, status_code=202)
async def scale(
    app_id: AppPath, body: ScaleRequest, swarm: SwarmOperationsDep, who: AppOperateAccess
) -> ScaleStarted:
    """A swarm app's replica count (a task of type `scale`: done when as many run)."""
    who.require_app(app_id, "this app")
    return await swarm.scale(app_id, body, who)


@router.get(
    "/{app_id}/logs",
    responses={200: {"content": {"application/x-ndjson": {}}}},
    response_class=StreamingResponse,
)
async def app_logs(
    app_id: AppPath,
    swarm: SwarmOperationsDep,
    streams: StreamsDep,
    who: AppReadAccess,
    tail: Annotated[int | None, Query(ge=0, le=100_000, description="Lines per replica (all: none).")] = 100,
    follow: bool = False,
) -> StreamingResponse:
    """A swarm app's replicas' lines merged, as NDJSON: `{time, node, slot, task, stream, line}`
    (`follow` keeps it open). Without `follow` it ends once the replicas said everything, or
    after 10 s of silence (a node that is down never answers) with a last `{end}` record."""
    who.require_app(app_id, "this app")
    log = await swarm.log(app_id)
    return ndjson(log.lines(tail=tail, follow=follow), streams.take(who))
