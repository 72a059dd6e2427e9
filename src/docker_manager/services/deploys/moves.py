"""The deploy's `switch` stage: which sites move to the new container, moving them all, and putting
them back as they were when one refuses or the deploy fails later."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.adapters.site_header import SiteHeader, TlsChange, Upstream
from docker_manager.auth import Principal
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.services.sites import SiteService, tls_change_of
from docker_manager.services.sites.upstreams import through_host_port, upstream_of


@dataclass(frozen=True)
class SiteMove:
    """A site the deploy points at the new container: its file, the domain it serves from now on,
    and what it was (None: a site this deploy makes), to put back if the switch fails."""

    path: Path
    domain: str
    before: SiteHeader | None
    tls: TlsChange | None = None  # the request's HTTPS options for its domain (None: as it is)


async def sites_to_move(
    sites: SiteService, app_id: str, body: DeployRequest, principal: Principal
) -> list[SiteMove]:
    """Every site of the app, and the body's domain when no site of the app serves it yet (in the
    app's site file, as sign-domain does), with the body's HTTPS options for that domain."""
    domain, tls = body.domain, tls_change_of(body)
    moves = [
        SiteMove(path, header.domain, header)
        for path, header in await asyncio.to_thread(sites.switch.sites)
        if header.app_id == app_id
    ]
    for move in moves:
        assert move.before is not None
        sites.check_site_owner(move.before, principal)  # an admin's site of the app: admin only
    if domain is None:
        return moves
    if any(move.domain == domain for move in moves):
        return [replace(move, tls=tls) if move.domain == domain else move for move in moves]
    target = await sites.target_for(domain, app_id=app_id, principal=principal)
    before = next((move.before for move in moves if move.path == target), None)
    return [move for move in moves if move.path != target] + [SiteMove(target, domain, before, tls)]


async def move_sites(
    sites: SiteService, moves: list[SiteMove], upstream: Upstream, app_id: str, switched: list[SiteMove]
) -> None:
    """Point every site at `upstream`, each listed in `switched` before it moves (a cancel may come
    while nginx takes it: it is put back too); if one refuses, the ones listed go back."""
    try:
        for move in moves:
            switched.append(move)
            await sites.switch.point(
                move.path, domain=move.domain, upstream=upstream, app_id=app_id, tls=move.tls
            )
    except BaseException:
        await put_back(sites, switched, app_id)
        switched.clear()
        raise


async def put_back(sites: SiteService, switched: list[SiteMove], app_id: str) -> None:
    """Best effort, newest first: a site this deploy made goes, the others serve what they did."""
    for move in reversed(switched):
        with contextlib.suppress(Exception):
            if move.before is None:
                await sites.switch.remove(move.path, None)
            else:
                before = move.before
                await sites.switch.point(
                    move.path, domain=before.domain, upstream=before.upstream, app_id=app_id, tls=before.tls
                )


def upstream_for(container: ContainerInfo, container_port: int) -> Upstream:
    """Where the container answers: the host port it publishes `container_port` on, else its own
    address."""
    key = f"{container_port}/tcp"
    if container.published_ports.get(key):
        return through_host_port(container, key)
    return upstream_of(container, None, container_port)
