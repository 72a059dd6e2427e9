"""The composition root: everything the app runs on, built once per process (by the app's
lifespan), started and stopped in the order read here.

First what talks to the outside world (the database, the engine, nginx, HTTP probes), then the
domains' services, each given its collaborators by keyword and only its own options (projected
from the flat `DM_*` settings, `config.Settings`). Nothing is wired after construction. A new
domain is one line in `Runtime.start` and one field below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.nginx import Nginx, NginxPaths
from docker_manager.adapters.probe import HttpProbe
from docker_manager.assembly import releases_started, swarm_domain
from docker_manager.config import Roots, Settings
from docker_manager.db import Database
from docker_manager.errors import DockerManagerError
from docker_manager.runner import EventBus, TaskKind, TaskRunner, TaskStore
from docker_manager.runner.outbox import OutboxDispatcher
from docker_manager.services.backups import BackupService
from docker_manager.services.backups.options import BackupOptions
from docker_manager.services.builds import BuildService
from docker_manager.services.builds.options import BuildOptions
from docker_manager.services.certificates import CertificateService
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.renewal import RenewalLoop
from docker_manager.services.certificates.store import CertificateStore
from docker_manager.services.commands.options import CommandOptions
from docker_manager.services.commands.service import CommandService
from docker_manager.services.containers import ContainerFiles, ContainerService, StopNotices
from docker_manager.services.containers.options import ContainerOptions
from docker_manager.services.deploys.localrun import LocalRunService
from docker_manager.services.deploys.options import DeployOptions
from docker_manager.services.deploys.service import DeployService
from docker_manager.services.healthchecks.checker import HealthChecker
from docker_manager.services.host.disk import DiskService
from docker_manager.services.host.doctor import Doctor
from docker_manager.services.host.options import DoctorOptions, HostOptions
from docker_manager.services.host.system import HostSampler, HostService
from docker_manager.services.images.service import ImageService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.observability.observers import Observers
from docker_manager.services.observability.options import ObservabilityOptions
from docker_manager.services.ownership.adoption import adopt_labelled_once
from docker_manager.services.ownership.record import Ownership
from docker_manager.services.pipelines.options import PipelineOptions
from docker_manager.services.pipelines.service import PipelineService
from docker_manager.services.releases import ReleaseService, RetentionService, RollbackService
from docker_manager.services.releases.options import ReleaseOptions
from docker_manager.services.sites import SiteService
from docker_manager.services.sites.options import SwitchOptions
from docker_manager.services.sites.public import PublicSite
from docker_manager.services.swarm import SwarmService
from docker_manager.services.swarm.apps import SwarmApps
from docker_manager.services.swarm.operations import SwarmOperations
from docker_manager.services.tasks.service import TaskService
from docker_manager.services.tokens import TokenStore
from docker_manager.ui.session import SessionCodec

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the routes and the dashboard reach (typed: `api/deps.py` has one getter per service)."""

    settings: Settings
    # the outside world
    db: Database
    docker: Docker
    probe: HttpProbe
    runner: TaskRunner
    outbox: OutboxDispatcher | None
    # the domains
    tokens: TokenStore
    ownership: Ownership
    host: HostService
    sampler: HostSampler
    disk: DiskService
    containers: ContainerService
    container_files: ContainerFiles
    images: ImageService
    builds: BuildService
    healthchecks: HealthChecker
    retention: RetentionService
    releases: ReleaseService
    localrun: LocalRunService
    deploys: DeployService
    sites: SiteService
    certificates: CertificateService
    renewals: RenewalLoop
    public_site: PublicSite | None  # DM_PUBLIC_DOMAIN: this service's own site
    doctor: Doctor
    backups: BackupService
    swarm: SwarmService
    swarm_apps: SwarmApps
    swarm_operations: SwarmOperations  # a swarm app's rollback and scale
    rollbacks: RollbackService
    commands: CommandService
    pipelines: PipelineService
    tasks: TaskService
    audit: AuditLog
    observers: Observers
    ui_sessions: SessionCodec

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Open the database, recover what an earlier process left, start the background work."""
        settings.ensure_dirs()
        # Hand-formatted: a line per collaborator would hide the order this function is here to show.
        # fmt: off
        db = await _database(settings)
        docker, probe = Docker(settings.docker_host, timeout=settings.docker_timeout), HttpProbe()
        runner, outbox = await _runner(db, settings), await _outbox(db, settings)
        tokens, ownership, stops = await _tokens(db, settings), Ownership(db.engine), StopNotices()
        await ownership.load()
        host_options, container_options = HostOptions.of(settings), ContainerOptions.of(settings)
        sampler, disk = await _sampler(host_options), await _disk(docker, host_options)
        containers = ContainerService(docker=docker, ownership=ownership, options=container_options,
                                      stop_notices=stops)
        await _adopt(db, docker, ownership, containers)
        images, audit = ImageService(docker, ownership), AuditLog(db.engine, file=settings.audit_file)
        builds = BuildService(docker=docker, runner=runner, images=images, ownership=ownership, disk=disk,
                              options=BuildOptions.of(settings))
        healthchecks = await _healthchecks(db, docker, probe)
        retention, releases = await releases_started(db=db, docker=docker, containers=containers,
                                                     ownership=ownership, runner=runner, audit=audit,
                                                     settings=settings)
        nginx, release_options = nginx_of(settings), ReleaseOptions.of(settings)
        sites = SiteService(nginx=nginx, docker=docker, containers=containers, probe=probe,
                            releases=releases, options=SwitchOptions.of(settings), stop_notices=stops)
        await sites.start()
        certificates, renewals = await _certificates(db=db, nginx=nginx, sites=sites, runner=runner,
                                                     audit=audit, settings=settings)
        swarm, swarm_apps, swarm_operations = await swarm_domain(
            docker=docker, sites=sites, releases=releases, runner=runner, settings=settings)
        localrun = LocalRunService(docker=docker, runner=runner, containers=containers, images=images,
                                   ownership=ownership, health=healthchecks, releases=releases, disk=disk,
                                   options=DeployOptions.of(settings))
        return cls(
            settings=settings, db=db, docker=docker, probe=probe, runner=runner, outbox=outbox, tokens=tokens,
            ownership=ownership, sampler=sampler, disk=disk, containers=containers, images=images,
            builds=builds, healthchecks=healthchecks, retention=retention, releases=releases, sites=sites,
            certificates=certificates, renewals=renewals, audit=audit, localrun=localrun,
            host=HostService(docker=docker, sampler=sampler, options=host_options),
            container_files=ContainerFiles(docker=docker, containers=containers, options=container_options),
            public_site=_public_site(sites, settings), swarm=swarm, swarm_apps=swarm_apps,
            doctor=_doctor(settings=settings, db=db, docker=docker, nginx=nginx, disk=disk, runner=runner,
                           certificates=certificates, sites=sites),
            deploys=DeployService(docker=docker, runner=runner, builds=builds, images=images,
                                  localrun=localrun, containers=containers, sites=sites,
                                  releases=releases, disk=disk, swarm=swarm_apps,
                                  options=DeployOptions.of(settings)),
            rollbacks=RollbackService(swarm=swarm_operations, releases=releases, containers=containers,
                                      docker=docker, switch=sites.switch, runner=runner,
                                      options=release_options),
            commands=CommandService(runner=runner, options=CommandOptions.of(settings)),
            pipelines=PipelineService(docker=docker, runner=runner, builds=builds, containers=containers,
                                      images=images, ownership=ownership, probe=probe, releases=releases,
                                      disk=disk, options=PipelineOptions.of(settings)),
            tasks=TaskService(runner=runner, roots=Roots.of(settings)),
            observers=Observers.start(ObservabilityOptions.of(settings), disk=disk, outbox=outbox,
                                      audit=audit),
            ui_sessions=await _ui_sessions(db, settings), swarm_operations=swarm_operations,
            backups=await _backups(audit, settings),
        )
        # fmt: on

    async def stop(self) -> None:
        """The background work first, then what it used, the database last."""
        self.observers.stop()
        await self.backups.close()
        self.audit.close()
        await self.renewals.stop()
        await self.doctor.stop()
        if self.public_site is not None:
            await self.public_site.stop()
        await self.runner.shutdown()
        await self.swarm_apps.follower.stop()
        await self.retention.stop()
        await self.healthchecks.stop()
        await self.sites.close()
        await self.probe.close()
        await self.sampler.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        await self.docker.close()
        await self.tokens.close()  # its background refreshes, before the database goes
        await self.db.close()


async def _database(settings: Settings) -> Database:
    db = Database(settings.sqlalchemy_url, busy_timeout=settings.db_busy_timeout)
    await db.open()  # (migrated to this version's schema; a newer one is refused)
    return db


async def _runner(db: Database, settings: Settings) -> TaskRunner:
    runner = TaskRunner(
        TaskStore(db.engine, boot_id=uuid.uuid4().hex),
        EventBus(),
        # Every kind of task that clones, builds, loads or runs has its own limit.
        limits={
            TaskKind.BUILD: settings.max_concurrent_builds,
            TaskKind.LOCALRUN: settings.max_concurrent_localruns,
            TaskKind.ROLLBACK: settings.max_concurrent_rollbacks,
            TaskKind.PIPELINE: settings.max_concurrent_pipelines,
            TaskKind.COMMAND: settings.max_concurrent_commands,
            TaskKind.DEPLOY: settings.max_concurrent_deploys,
            TaskKind.CERTIFICATE: 1,  # one order at a time: a CA's limits count per account
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


async def _tokens(db: Database, settings: Settings) -> TokenStore:
    tokens = TokenStore(db.engine)
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    written = await tokens.bootstrap_admin(configured=admin_token, token_file=settings.admin_token_file)
    if written:
        log.warning("first start: an admin token was written to %s (mode 0600)", written)
    return tokens


async def _sampler(options: HostOptions) -> HostSampler:
    sampler = HostSampler(options.sample_interval)
    await sampler.start()
    return sampler


async def _disk(docker: Docker, options: HostOptions) -> DiskService:
    disk = DiskService(docker, options)
    with contextlib.suppress(DockerManagerError):  # the engine is down: looked up later
        await disk.engine_root()
    return disk


async def _adopt(db: Database, docker: Docker, ownership: Ownership, containers: ContainerService) -> None:
    try:
        await adopt_labelled_once(db.engine, docker, ownership, containers.policy)
    except DockerManagerError as exc:  # the engine is down: adopt on a later start
        log.warning("could not look for labelled objects of an earlier version: %s", exc.detail)


async def _healthchecks(db: Database, docker: Docker, probe: HttpProbe) -> HealthChecker:
    checker = HealthChecker(db.engine, docker, probe)
    pending = await checker.start()
    if pending:
        log.info("resumed %d pending health checks", pending)
    return checker


def nginx_of(settings: Settings) -> Nginx:
    """The nginx adapter these settings describe (the service's, and a restore's)."""
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
        # Port 80's ACME answers come from this service, on loopback.
        challenge_upstream=_own_address(settings) if settings.acme_enabled else None,
    )


async def _backups(audit: AuditLog, settings: Settings) -> BackupService:
    backups = BackupService(options=BackupOptions.of(settings), audit=audit)
    await backups.start()  # (scheduled ones, in the background)
    return backups


def _doctor(
    *,
    settings: Settings,
    db: Database,
    docker: Docker,
    nginx: Nginx,
    disk: DiskService,
    runner: TaskRunner,
    certificates: CertificateService,
    sites: SiteService,
) -> Doctor:
    doctor = Doctor(
        docker=docker,
        nginx=nginx,
        db=db,
        disk=disk,
        tasks=runner.store,
        certificates=certificates,
        switch=sites.switch,
        options=DoctorOptions.of(settings),
    )
    doctor.start()  # (what is wrong with the host, in the log from the first minute)
    return doctor


def _public_site(sites: SiteService, settings: Settings) -> PublicSite | None:
    if settings.public_domain is None:
        return None
    host, _, port = _own_address(settings).rpartition(":")
    site = PublicSite(sites, domain=settings.public_domain, host=host, port=int(port))
    site.start()
    return site


def _own_address(settings: Settings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


async def _certificates(
    *, db: Database, nginx: Nginx, sites: SiteService, runner: TaskRunner, audit: AuditLog, settings: Settings
) -> tuple[CertificateService, RenewalLoop]:
    options = CertificateOptions.of(settings)
    certificates = CertificateService(
        store=CertificateStore(db.engine),
        nginx=nginx,
        sites=sites,
        runner=runner,
        audit=audit,
        options=options,
    )
    try:
        await certificates.recover()
    except DockerManagerError as exc:  # nginx is down: its defaults file waits for the first order
        log.warning("certificates: %s", exc.detail)
    renewals = RenewalLoop(certificates, every=options.renew_check_seconds)
    renewals.start()
    return certificates, renewals


async def _ui_sessions(db: Database, settings: Settings) -> SessionCodec:
    """The dashboard's sessions, sealed with this installation's key (made on the first start)."""
    return await asyncio.to_thread(
        SessionCodec.from_key_file,
        settings.session_key_path,
        db.engine,
        max_age=int(settings.ui_session_hours * 3600),
    )
