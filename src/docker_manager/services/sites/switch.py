"""The steps every traffic switch shares (sign-domain, update-port, rollback).

Wait until the new upstream answers HTTP as required, point a site file at it (the nginx change is
verified and undone if nginx refuses it), and retire the old container only after a drain, so that
requests in flight finish on the old one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import ContainerInfo
from docker_manager.errors import DockerManagerError, UnhealthyContainer
from docker_manager.nginx import Nginx, SiteHeader, Upstream, managed_sites
from docker_manager.schemas.nginx import HealthGate
from docker_manager.services.containers import ContainerService
from docker_manager.services.probe import HttpProbe, NoGoodAnswer
from docker_manager.services.sites.upstreams import ident_of
from docker_manager.util.locks import KeyedLocks


class TrafficSwitch:
    def __init__(
        self, nginx: Nginx, probe: HttpProbe, containers: ContainerService, settings: Settings
    ) -> None:
        self._nginx = nginx
        self._probe = probe
        self._containers = containers
        self._settings = settings
        # One switch per app at a time, whichever route asks for it.
        self.app_locks = KeyedLocks()

    async def wait_healthy(self, upstream: Upstream, gate: HealthGate) -> int:
        """Poll the new upstream until it answers as required, or raise UnhealthyContainer."""
        expected = gate.expected_status

        def good(status: int) -> bool:
            return status == expected if expected else status < 500

        try:
            answer = await self._probe.wait(
                f"http://{upstream.address}{gate.health_path}", within=gate.health_timeout, accept=good
            )
        except NoGoodAnswer as exc:
            raise UnhealthyContainer(
                f"{upstream.address}{gate.health_path} did not answer as required ({exc.last})"
            ) from None
        return answer.status_code

    async def point(
        self, target: Path, *, domain: str, upstream: Upstream, app_id: str | None
    ) -> dict[str, Any]:
        """Write the site file for `upstream` and reload nginx (verified; undone when refused)."""
        content = await asyncio.to_thread(
            self._nginx.render, ident=ident_of(target), domain=domain, upstream=upstream, app_id=app_id
        )

        async def apply() -> dict[str, Any]:
            async with self._nginx.lock:
                return await self._nginx.apply(target, content)

        # Never cut half-way (a cancelled task): nginx would keep a configuration whose file was
        # put back. The change completes (or is undone) first, then the cancel takes effect.
        return await asyncio.shield(apply())

    async def retire(
        self, old: ContainerInfo | None, principal: Principal, gate: HealthGate, *, remove: bool
    ) -> dict[str, Any] | None:
        """Stop (and maybe remove) the old container after a drain; report, never raise."""
        if old is None:
            return None
        drain = gate.drain_seconds if gate.drain_seconds is not None else self._settings.switch_drain_seconds
        await asyncio.sleep(drain)
        try:
            stopped = await self._containers.act(
                old.id, principal, "stop", timeout=self._settings.switch_stop_timeout
            )
            result: dict[str, Any] = {"status": stopped.status, "id": old.id, "drained_seconds": drain}
            if remove:
                await self._containers.remove(old.id, principal, force=True, volumes=False)
                result["removed"] = True
            return result
        except DockerManagerError as exc:
            return {"status": "error", "id": old.id, "error": exc.detail}

    def sites(self) -> list[tuple[Path, SiteHeader]]:
        """Every managed site file in the configured directories, with its header. Blocking."""
        return managed_sites(self._settings.nginx_conf_dirs)
