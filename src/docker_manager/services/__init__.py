"""Use cases. Services orchestrate adapters and know nothing of HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.nginx import Nginx, NginxPaths
from docker_manager.adapters.probe import HttpProbe
from docker_manager.auth import TokenStore
from docker_manager.config import Settings
from docker_manager.db import Database
from docker_manager.errors import DockerManagerError
from docker_manager.runner import EventBus, TaskRunner, TaskStore
from docker_manager.runner.outbox import OutboxDispatcher
from docker_manager.services.builds import BuildService
from docker_manager.services.commands.service import CommandService
from docker_manager.services.containers import ContainerFiles, ContainerService, StopNotices
from docker_manager.services.deploys.localrun import LocalRunService
from docker_manager.services.healthchecks.checker import HealthChecker
from docker_manager.services.host.disk import DiskService
from docker_manager.services.host.system import HostSampler, SystemService
from docker_manager.services.images.service import ImageService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.observability.observers import Observers
from docker_manager.services.ownership.adoption import adopt_labelled_once
from docker_manager.services.ownership.record import Ownership
from docker_manager.services.pipelines.service import PipelineService
from docker_manager.services.releases import (
    ReleaseService,
    ReleaseStore,
    RetentionService,
    RollbackService,
)
from docker_manager.services.sites import SiteService
from docker_manager.services.tasks.service import TaskService
from docker_manager.ui.session import SessionCodec
from docker_manager.util.sealing import Sealer

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the routes need, built once per process by the app's lifespan."""

    settings: Settings
    db: Database
    tokens: TokenStore
    docker: Docker
    ownership: Ownership
    probe: HttpProbe
    sampler: HostSampler
    runner: TaskRunner
    outbox: OutboxDispatcher | None
    health: HealthChecker
    containers: ContainerService
    container_files: ContainerFiles
    images: ImageService
    builds: BuildService
    localrun: LocalRunService
    sites: SiteService
    commands: CommandService
    pipeline: PipelineService
    tasks: TaskService
    system: SystemService
    disk: DiskService
    releases: ReleaseService
    rollbacks: RollbackService
    retention: RetentionService
    audit: AuditLog
    observers: Observers
    ui_sessions: SessionCodec

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        """Open the database, recover what an earlier process left, start the background work."""
        settings.ensure_dirs()
        db = Database(settings.sqlalchemy_url, busy_timeout=settings.db_busy_timeout)
        await db.open()
        tokens = await _tokens(db, settings)
        docker = Docker(settings.docker_host, timeout=settings.docker_timeout)
        runner = await _runner(db, settings)
        outbox = await _outbox(db, settings)
        sampler = HostSampler(settings.top_sample_interval)
        await sampler.start()
        probe = HttpProbe()
        health = await _health(db, docker, probe)
        ownership = Ownership(db.engine)
        await ownership.load()
        stop_notices = StopNotices()
        containers = ContainerService(docker, ownership, settings, stop_notices=stop_notices)
        await _adopt(db, docker, ownership, containers)
        images = ImageService(docker, ownership, settings)
        disk = await _disk(docker, settings)
        builds = BuildService(docker, runner, images, ownership, disk, settings)
        sealer = await asyncio.to_thread(Sealer.from_key_file, settings.secret_key_path)
        releases = ReleaseService(ReleaseStore(db.engine), docker, containers, ownership, sealer, settings)
        sites = await _sites(docker, containers, probe, releases, settings, stop_notices)
        audit = AuditLog(db.engine, file=settings.audit_file)
        retention = await _retention(releases, docker, ownership, runner, settings, audit)
        return cls(
            settings=settings,
            db=db,
            tokens=tokens,
            docker=docker,
            ownership=ownership,
            probe=probe,
            sampler=sampler,
            runner=runner,
            outbox=outbox,
            health=health,
            containers=containers,
            container_files=ContainerFiles(docker, containers, settings),
            images=images,
            builds=builds,
            localrun=LocalRunService(
                docker, runner, containers, images, ownership, health, releases, disk, settings
            ),
            sites=sites,
            commands=CommandService(runner, settings),
            pipeline=PipelineService(
                docker, runner, builds, containers, images, ownership, probe, releases, disk, settings
            ),
            tasks=TaskService(runner, settings),
            system=SystemService(docker, sampler, settings),
            disk=disk,
            releases=releases,
            rollbacks=RollbackService(releases, containers, docker, sites.switch, runner, settings),
            retention=retention,
            audit=audit,
            observers=Observers.start(settings, disk=disk, outbox=outbox, audit=audit),
            ui_sessions=await _ui_sessions(db, settings),
        )

    async def stop(self) -> None:
        self.observers.stop()
        self.audit.close()
        await self.runner.shutdown()
        await self.retention.stop()
        await self.health.stop()
        await self.sites.close()
        await self.probe.close()
        await self.sampler.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        await self.docker.close()
        await self.tokens.close()  # its background refreshes, before the database goes
        await self.db.close()


async def _sites(
    docker: Docker,
    containers: ContainerService,
    probe: HttpProbe,
    releases: ReleaseService,
    settings: Settings,
    stop_notices: StopNotices,
) -> SiteService:
    sites = SiteService(
        _nginx(settings), docker, containers, probe, releases, settings, stop_notices=stop_notices
    )
    await sites.start()
    return sites


async def _health(db: Database, docker: Docker, probe: HttpProbe) -> HealthChecker:
    health = HealthChecker(db.engine, docker, probe)
    pending = await health.start()
    if pending:
        log.info("resumed %d pending health checks", pending)
    return health


async def _adopt(db: Database, docker: Docker, ownership: Ownership, containers: ContainerService) -> None:
    try:
        await adopt_labelled_once(db.engine, docker, ownership, containers.policy)
    except DockerManagerError as exc:  # the engine is down: adopt on a later start
        log.warning("could not look for labelled objects of an earlier version: %s", exc.detail)


async def _disk(docker: Docker, settings: Settings) -> DiskService:
    disk = DiskService(docker, settings)
    with contextlib.suppress(DockerManagerError):  # the engine is down: looked up later
        await disk.engine_root()
    return disk


async def _ui_sessions(db: Database, settings: Settings) -> SessionCodec:
    """The dashboard's sessions, sealed with this installation's key (made on the first start)."""
    return await asyncio.to_thread(
        SessionCodec.from_key_file,
        settings.data_dir.resolve() / "session-key",
        db.engine,
        max_age=int(settings.ui_session_hours * 3600),
    )


async def _retention(
    releases: ReleaseService,
    docker: Docker,
    ownership: Ownership,
    runner: TaskRunner,
    settings: Settings,
    audit: AuditLog,
) -> RetentionService:
    """Old releases, tasks and audit entries go after each deploy and every DM_GC_INTERVAL."""
    retention = RetentionService(releases, docker, ownership, runner.store, settings, audit=audit)
    await _import_releases(releases)
    releases.on_recorded = retention.after_deploy
    await retention.start()
    return retention


async def _import_releases(releases: ReleaseService) -> None:
    try:
        imported = await releases.import_existing()
    except DockerManagerError as exc:  # the engine is down: import on a later start
        log.warning("could not import the containers of earlier deploys as releases: %s", exc.detail)
        return
    if imported:
        log.info("recorded %d containers of earlier deploys as releases", imported)


async def _tokens(db: Database, settings: Settings) -> TokenStore:
    tokens = TokenStore(db.engine)
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    written = await tokens.bootstrap_admin(configured=admin_token, token_file=settings.admin_token_file)
    if written:
        log.warning("first start: an admin token was written to %s (mode 0600)", written)
    return tokens


async def _runner(db: Database, settings: Settings) -> TaskRunner:
    runner = TaskRunner(
        TaskStore(db.engine, boot_id=uuid.uuid4().hex),
        EventBus(),
        # Every kind of task that clones, builds, loads or runs has its own limit.
        limits={
            "build": settings.max_concurrent_builds,
            "localrun": settings.max_concurrent_localruns,
            "rollback": settings.max_concurrent_rollbacks,
            "pipeline": settings.max_concurrent_pipelines,
            "command": settings.max_concurrent_commands,
        },
        max_queued=settings.max_queued_tasks,
        outbox_enabled=settings.log_stream_endpoint is not None,
    )
    interrupted = await runner.recover()
    if interrupted:
        log.warning("marked %d tasks of an earlier process as interrupted", len(interrupted))
    return runner


async def _outbox(db: Database, settings: Settings) -> OutboxDispatcher | None:
    if not settings.log_stream_endpoint:
        return None
    outbox = OutboxDispatcher(
        db.engine,
        url=settings.log_stream_endpoint,
        headers=settings.auth_header,
        batch=settings.log_stream_batch,
        timeout=settings.log_stream_timeout,
        max_attempts=settings.log_stream_max_attempts,
    )
    await outbox.start()
    return outbox


def _nginx(settings: Settings) -> Nginx:
    return Nginx(
        NginxPaths(
            binary=settings.nginx_binary,
            conf=settings.nginx_conf,
            prefix=settings.nginx_prefix,
            pid_file=settings.nginx_pid_file,
            error_log=settings.nginx_error_log,
        ),
        listen=settings.nginx_listen,
        tls_listen=settings.nginx_tls_listen,
        cert_dir=settings.nginx_cert_dir,
    )
