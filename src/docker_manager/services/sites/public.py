"""This service's own site (`DM_PUBLIC_DOMAIN`): the API and the dashboard behind the managed
nginx on a domain, HTTPS only, with an automatic certificate.

It is a site of kind `host` (admin-only to change) with no app, written at start once the service
answers on its listener (before that, the certificate's self-check through nginx would find
nobody), and written again at each start if someone changed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from docker_manager.adapters.site_header import SiteTls, Upstream
from docker_manager.errors import DockerManagerError
from docker_manager.services.sites.service import SiteService

log = logging.getLogger(__name__)

LISTENER_WAIT = 60.0  # seconds the service may take to listen after its start


class PublicSite:
    def __init__(self, sites: SiteService, *, domain: str, host: str, port: int) -> None:
        self._sites = sites
        self._domain = domain
        self._upstream = Upstream(host, port, kind="host")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._when_listening(), name="public-site")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ensure(self) -> bool:
        """Write the site unless it already says the same; False when another site serves the
        domain (it is never taken over) or nginx refused."""
        target = self._sites.conf_dir(None) / f"{self._domain}.conf"
        serving = await asyncio.to_thread(self._sites.switch.sites)
        for path, header in serving:
            if header.domain != self._domain:
                continue
            if path != target:
                log.error("DM_PUBLIC_DOMAIN %s: %s serves it already; not taken over", self._domain, path)
                return False
            if header.upstream == self._upstream and header.app_id is None and header.tls.mode == "only":
                return True
        try:
            await self._sites.switch.point(
                target, domain=self._domain, upstream=self._upstream, app_id=None, tls=SiteTls(mode="only")
            )
        except DockerManagerError as exc:
            log.error("DM_PUBLIC_DOMAIN %s: the site could not be written: %s", self._domain, exc.detail)
            return False
        log.info("DM_PUBLIC_DOMAIN %s: served by nginx, HTTPS only", self._domain)
        return True

    async def _when_listening(self) -> None:
        deadline = asyncio.get_running_loop().time() + LISTENER_WAIT
        while asyncio.get_running_loop().time() < deadline:
            try:
                _, writer = await asyncio.open_connection(
                    self._upstream.host.strip("[]"), self._upstream.port
                )
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await self.ensure()
            return
        log.error(
            "DM_PUBLIC_DOMAIN %s: the service did not listen within %.0f s", self._domain, LISTENER_WAIT
        )
