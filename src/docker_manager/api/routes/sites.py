"""nginx sites and traffic switching: `/nginx/sites`, `/nginx/site/*`, `/nginx/sign-domain`,
`/app/update-port`."""

from __future__ import annotations

from fastapi import APIRouter

from docker_manager.api.deps import OperateAccess, ReadAccess, SitesDep
from docker_manager.schemas.sites import (
    SignDomainRequest,
    SignDomainResult,
    SiteCreateRequest,
    SiteDeleted,
    SiteDeleteRequest,
    SiteResult,
    SiteView,
    UpdatePortRequest,
    UpdatePortResult,
)

router = APIRouter(tags=["nginx"])


@router.get("/nginx/sites", response_model=list[SiteView])
async def list_sites(sites: SitesDep, _: ReadAccess) -> list[SiteView]:
    """The sites this service wrote, in every configured directory."""
    return await sites.list_sites()


@router.post("/nginx/site/create", response_model=SiteResult)
async def create_site(body: SiteCreateRequest, sites: SitesDep, who: OperateAccess) -> SiteResult:
    """Proxy `domain` to `127.0.0.1:port`: a port a container of this service publishes, or for an
    admin token any port that is not reserved (a process on the host, a container made by hand).
    `upstream_managed` says which it is."""
    return await sites.create_site(body, who)


@router.post("/nginx/site/delete", response_model=SiteDeleted)
async def delete_site(body: SiteDeleteRequest, sites: SitesDep, who: OperateAccess) -> SiteDeleted:
    """Remove this service's site files serving `domain` (a site an admin pointed at the host: admin)."""
    return await sites.delete_site(body, who)


@router.post("/nginx/sign-domain", response_model=SignDomainResult)
async def sign_domain(body: SignDomainRequest, sites: SitesDep, who: OperateAccess) -> SignDomainResult:
    """Point `domain` at the new container once it answers HTTP; then stop the old one after a drain.

    With `task_id`, `app_id`, `new_container` and `port` come from that task's build.info.json.
    Writes `{conf_dir}/{app_id}.conf`. If the new container is unhealthy, nothing changes.
    """
    return await sites.sign_domain(body, who)


@router.post("/app/update-port", response_model=UpdatePortResult)
async def update_port(body: UpdatePortRequest, sites: SitesDep, who: OperateAccess) -> UpdatePortResult:
    """Recreate the task's container on `new_port` (all else kept) and switch nginx to it safely."""
    return await sites.update_port(body, who)
