"""`/apps`: apps, their releases, and rollback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from docker_manager.api.deps import AppOperateAccess, AppReadAccess, ReadAccess, ReleasesDep, RollbackDep
from docker_manager.schemas.releases import AppDetail, AppView, ReleaseView, RollbackRequest, RollbackStarted

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
    a task of type `rollback` (follow it on `/tasks/{task_id}`)."""
    who.require_app(app_id, "this app")
    return await rollbacks.start(app_id, body, who)
