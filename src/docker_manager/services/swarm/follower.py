"""Sites follow their swarm app's replicas: a look at the manager's tasks every
`DM_SWARM_POLL_INTERVAL` seconds, and a site whose serving replicas changed (a rollout, a scale,
a node lost and its replicas placed elsewhere) rewritten with the new set (a verified reload).

Between two looks nginx itself steps over a replica that is gone (the request goes to the next
server, the failed one is left alone a few seconds). When the manager cannot be read, sites are
left as they are: an engine that does not answer says nothing about the replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from docker_manager import metrics
from docker_manager.adapters.docker import Docker
from docker_manager.errors import DockerManagerError
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm.replicas import read_replicas, servers_of, swarm_upstream
from docker_manager.services.swarm.spec import service_name

log = logging.getLogger(__name__)
QUIET = 60.0  # seconds between two warnings that the manager cannot be read


class ReplicaFollower:
    def __init__(self, docker: Docker, sites: SiteService, *, interval: float) -> None:
        self._docker = docker
        self._sites = sites
        self._interval = interval
        self.apps: set[str] = set()  # swarm apps (their replicas counted in the metrics)
        self._task: asyncio.Task[None] | None = None
        self._warned = 0.0

    def start(self, apps: set[str]) -> None:
        self.apps |= apps
        self._task = asyncio.create_task(self._loop(), name="swarm-replica-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> int:
        """One look: the sites whose replicas changed are rewritten; how many were."""
        if not self.apps:  # (no swarm app: nothing to look at, and no swarm to ask)
            return 0
        sites = await asyncio.to_thread(self._sites.switch.sites)
        followed = [(path, header) for path, header in sites if header.upstream.service]
        names = {service_name(app): app for app in self.apps}
        services = sorted({str(h.upstream.service) for _, h in followed} | set(names))
        if not services:
            return 0
        found = await read_replicas(self._docker, services)
        for name, app_id in names.items():
            counts = Counter(replica.state for replica in found.get(name, []))
            for state in {"running", "starting", "pending", "failed", *counts}:
                metrics.SWARM_REPLICAS.labels(app_id=app_id, state=state).set(counts.get(state, 0))
        changed = 0
        for path, header in followed:
            service = str(header.upstream.service)
            upstream = swarm_upstream(service, servers_of(found.get(service, [])))
            if await self._sites.switch.follow_service(path, upstream):
                changed += 1
                log.info("%s: now %d replica(s) of %s", header.domain, len(upstream.servers), service)
        return changed

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except DockerManagerError as exc:
                if time.monotonic() - self._warned > QUIET:
                    self._warned = time.monotonic()
                    log.warning("swarm replicas not read (sites left as they are): %s", exc.detail)
            except Exception:
                log.exception("following swarm replicas failed")
            await asyncio.sleep(self._interval)
