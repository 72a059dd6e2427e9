"""Parts of the composition root (runtime.py) that take several steps: releases with their
retention, and the swarm with its apps and the loop their sites follow."""

from __future__ import annotations

import asyncio
import logging

from docker_manager.adapters.docker import Docker
from docker_manager.config import Settings
from docker_manager.db import Database
from docker_manager.errors import DockerManagerError
from docker_manager.runner import TaskRunner
from docker_manager.services.containers import ContainerService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.ownership.record import Ownership
from docker_manager.services.releases import ReleaseService, ReleaseStore, RetentionService
from docker_manager.services.releases.options import ReleaseOptions
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm import SwarmService
from docker_manager.services.swarm.apps import SwarmApps
from docker_manager.services.swarm.follower import ReplicaFollower
from docker_manager.services.swarm.operations import SwarmOperations
from docker_manager.services.swarm.options import SwarmOptions
from docker_manager.services.swarm.replicas import ReplicaReader
from docker_manager.util.sealing import Sealer

log = logging.getLogger(__name__)


async def releases_started(
    *,
    db: Database,
    docker: Docker,
    containers: ContainerService,
    ownership: Ownership,
    runner: TaskRunner,
    audit: AuditLog,
    settings: Settings,
) -> tuple[RetentionService, ReleaseService]:
    """Releases (those of an earlier version imported) and their retention, started."""
    options, store = ReleaseOptions.of(settings), ReleaseStore(db.engine)
    retention = RetentionService(
        store=store, containers=containers, docker=docker, ownership=ownership, tasks=runner.store,
        options=options, audit=audit,
    )  # fmt: skip
    releases = ReleaseService(
        store=store, docker=docker, containers=containers, ownership=ownership,
        sealer=await sealer_of(settings), retention=retention, replicas=ReplicaReader(docker),
        options=options,
    )  # fmt: skip
    await import_releases(releases)
    await retention.start()
    return retention, releases


async def swarm_domain(
    *, docker: Docker, sites: SiteService, releases: ReleaseService, runner: TaskRunner, settings: Settings
) -> tuple[SwarmService, SwarmApps, SwarmOperations]:
    """The swarm, its apps, and the loop that keeps their sites on their replicas (started only when
    this host has swarm apps or sites: a host without a swarm never asks for one)."""
    options = SwarmOptions.of(settings)
    follower = ReplicaFollower(docker, sites, interval=options.poll_interval)
    apps = {release.app_id for release in await releases.store.list() if release.on_swarm}
    follower.start(apps)
    swarm_apps = SwarmApps(docker=docker, sites=sites, releases=releases, follower=follower, options=options)
    operations = SwarmOperations(
        apps=swarm_apps, releases=releases, sites=sites, follower=follower, runner=runner
    )
    return SwarmService(docker), swarm_apps, operations


async def sealer_of(settings: Settings) -> Sealer:
    """The key that seals release env values at rest (made 0600 on the first start)."""
    return await asyncio.to_thread(Sealer.from_key_file, settings.secret_key_path)


async def import_releases(releases: ReleaseService) -> None:
    try:
        imported = await releases.import_existing()
    except DockerManagerError as exc:  # the engine is down: import on a later start
        log.warning("could not import the containers of earlier deploys as releases: %s", exc.detail)
        return
    if imported:
        log.info("recorded %d containers of earlier deploys as releases", imported)
