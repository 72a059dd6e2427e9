"""Sites follow the container they reach, on its bridge address or through its host port.

The engine's `start`, `die` and `destroy` events are watched. When such a container comes back
with another address, or publishes its port on another host port (an engine-chosen port changes
on every restart), the site is pointed there; while it is stopped or gone the site answers 503
from nginx itself: its address may go to the next container that starts, and its freed host port
to any local user who binds it (who would then serve the domain, visitors' cookies included).
Stops this service makes itself take the site down first (`before_stop`), so that the port is
never free while nginx still sends there. Each change is the same transaction as any switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from pathlib import Path

from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.adapters.site_header import SiteHeader, Upstream
from docker_manager.errors import NotFound
from docker_manager.services.containers import ContainerService
from docker_manager.services.sites.switch import TrafficSwitch
from docker_manager.services.sites.upstreams import port_owner

log = logging.getLogger(__name__)


def followed_upstream(header: SiteHeader, info: ContainerInfo | None) -> Upstream:
    """Where a site that follows `header.upstream.container` should send its requests now."""
    recorded = header.upstream
    pinned, kind, key = recorded.container, recorded.kind, recorded.published
    if info is not None and info.running:
        if key is not None:
            port = info.published_ports.get(key)
            if port:
                return Upstream("127.0.0.1", port, container=pinned, published=key, kind=kind)
        elif info.bridge_address is not None:
            return Upstream(info.bridge_address, recorded.port, container=pinned, kind=kind)
    return Upstream("127.0.0.1", recorded.port, container=pinned, published=key, down=True, kind=kind)


class AddressFollower:
    def __init__(self, switch: TrafficSwitch, docker: Docker, containers: ContainerService) -> None:
        self._switch = switch
        self._docker = docker
        self._containers = containers
        # One look at a time: a refresh that read a container before a stop must not re-point its
        # site after `before_stop` took it down.
        self._lock = asyncio.Lock()

    async def adopt_host_port_sites(self) -> None:
        """Sites an earlier version pointed at a container's host port did not record the
        container: record the managed container publishing that port now, so that the site follows
        it (and answers 503 while it is stopped) from here on. Run at start."""
        for path, header in await asyncio.to_thread(self._switch.sites):
            upstream = header.upstream
            if (
                upstream.container
                or upstream.down
                or upstream.kind != "managed"
                or upstream.host != "127.0.0.1"
            ):
                continue
            owner = await port_owner(self._containers, upstream.port)
            if owner is not None:
                followed = replace(upstream, container=owner["id"], published=owner["key"])
                await self._switch.follow(path, header, followed)

    async def watch(self) -> None:
        while True:
            try:
                watched = {"type": ["container"], "event": ["start", "die", "destroy"]}
                async with self._docker.system.events(watched) as events:
                    await self.refresh_addresses()  # whatever changed while nobody watched
                    async for event in events:
                        await self.refresh_addresses(str(event.get("id") or ""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the engine went away, or nginx refused: try again later
                log.warning("following containers for sites failed: %s", exc)
                await self._down_if_engine_gone()
            await asyncio.sleep(5.0)

    async def _down_if_engine_gone(self) -> None:
        """The engine does not answer: its containers' ports are free (or soon will be), and no event
        will say so. Every site that follows a container answers 503 until the engine is back (the
        next watch's first refresh points them again)."""
        try:
            await self._docker.system.ping()
            return
        except Exception:  # noqa: S110 (unreachable is the case handled below)
            pass
        async with self._lock:
            for path, header in await asyncio.to_thread(self._following, None):
                down = followed_upstream(header, None)
                if down != header.upstream:
                    with contextlib.suppress(Exception):
                        await self._point(path, header, down)

    async def before_stop(self, container_id: str) -> None:
        """A container this service is about to stop, kill or remove: its sites answer 503 first."""
        async with self._lock:
            for path, header in await asyncio.to_thread(self._following, container_id):
                down = followed_upstream(header, None)
                if down != header.upstream:
                    await self._point(path, header, down)

    async def after_stop(self, container_id: str) -> None:
        """After that action, whatever came of it: where the container is now (still running, if
        the stop failed or its signal did not end it)."""
        await self.refresh_addresses(container_id)

    async def refresh_addresses(self, container_id: str | None = None) -> int:
        """Point the sites whose container moved (or stopped, or came back); how many changed."""
        async with self._lock:
            return await self._refresh(container_id)

    async def _refresh(self, container_id: str | None) -> int:
        changed = 0
        for path, header in await asyncio.to_thread(self._following, container_id):
            pinned = str(header.upstream.container)
            try:
                info: ContainerInfo | None = await self._docker.containers.info(pinned)
            except NotFound:
                info = None
            upstream = followed_upstream(header, info)
            if upstream != header.upstream and await self._point(path, header, upstream):
                changed += 1
        return changed

    async def _point(self, path: Path, header: SiteHeader, upstream: Upstream) -> bool:
        if not await self._switch.follow(path, header, upstream):
            return False  # switched elsewhere meanwhile: leave it
        where = "503 (not running)" if upstream.down else upstream.address
        log.info("site %s follows container %s: %s", header.domain, str(upstream.container)[:12], where)
        return True

    def _following(self, container_id: str | None) -> list[tuple[Path, SiteHeader]]:
        """Sites that follow a container (that one, or any). Blocking."""
        return [
            (path, header)
            for path, header in self._switch.sites()
            if header.upstream.container is not None
            and (not container_id or header.upstream.container == container_id)
        ]
