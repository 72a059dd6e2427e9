"""Sites that reach a container on its own (bridge) address follow it.

The engine's `start`, `die` and `destroy` events are watched: when such a container comes back
with another address the site is rewritten to it, and while it is stopped or gone the site
answers 502 (its old address may go to the next container that starts). Each rewrite is the
same transaction as any site change.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from docker_manager.config import Settings
from docker_manager.docker import ContainerInfo, Docker
from docker_manager.errors import NotFound
from docker_manager.nginx import Nginx, SiteHeader, Upstream, read_header
from docker_manager.services.sites.upstreams import ident_of

log = logging.getLogger(__name__)


class AddressFollower:
    def __init__(self, nginx: Nginx, docker: Docker, settings: Settings) -> None:
        self._nginx = nginx
        self._docker = docker
        self._settings = settings

    async def watch(self) -> None:
        while True:
            try:
                watched = {"type": ["container"], "event": ["start", "die", "destroy"]}
                async with self._docker.system.events(watched) as events:
                    await self.refresh_addresses()  # whatever started while nobody watched
                    async for event in events:
                        await self.refresh_addresses(str(event.get("id") or ""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the engine went away, or nginx refused: try again later
                log.warning("watching container addresses for sites failed: %s", exc)
            await asyncio.sleep(5.0)

    async def refresh_addresses(self, container_id: str | None = None) -> int:
        """Rewrite the sites whose container came back with another address; how many changed."""
        changed = 0
        for path, header in await asyncio.to_thread(self._address_sites):
            pinned = header.upstream.container
            if pinned is None or (container_id and pinned != container_id):
                continue
            try:
                info: ContainerInfo | None = await self._docker.containers.info(pinned)
            except NotFound:
                info = None
            address = info.bridge_address if info is not None and info.running else None
            kind = header.upstream.kind
            if address is None:
                # Stopped or gone: its address may go to the next container that starts, so nginx
                # must not send this domain's traffic there.
                upstream = Upstream("127.0.0.1", header.port, container=pinned, down=True, kind=kind)
            else:
                upstream = Upstream(address, header.port, container=pinned, kind=kind)
            if upstream == header.upstream:
                continue
            content = await asyncio.to_thread(
                self._nginx.render,
                ident=ident_of(path),
                domain=header.domain,
                upstream=upstream,
                app_id=header.app_id,
            )
            async with self._nginx.lock:
                current = await asyncio.to_thread(read_header, path)
                if current is None or current.upstream.container != pinned:
                    continue  # switched elsewhere meanwhile: leave it
                await self._nginx.apply(path, content)
            where = "down (not running)" if upstream.down else upstream.address
            log.info("site %s follows container %s: %s", header.domain, pinned[:12], where)
            changed += 1
        return changed

    def _address_sites(self) -> list[tuple[Path, SiteHeader]]:
        found = []
        for directory in self._settings.nginx_conf_dirs:
            for path in sorted(directory.glob("*.conf")):
                header = read_header(path)
                if header is not None and header.upstream.container is not None:
                    found.append((path, header))
        return found
