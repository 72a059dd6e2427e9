"""Use cases. Services orchestrate adapters and know nothing of HTTP."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from docker_manager.auth import TokenStore
from docker_manager.config import Settings
from docker_manager.db import Database
from docker_manager.docker import Docker
from docker_manager.services.containers import ContainerService
from docker_manager.services.images import ImageService
from docker_manager.services.system import HostSampler, SystemService

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the routes need, built once per process by the app's lifespan."""

    settings: Settings
    db: Database
    tokens: TokenStore
    docker: Docker
    sampler: HostSampler
    containers: ContainerService
    images: ImageService
    system: SystemService

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        settings.ensure_dirs()
        db = Database(settings.sqlalchemy_url)
        await db.open()
        tokens = TokenStore(db.engine)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        written = await tokens.bootstrap_admin(configured=admin_token, token_file=settings.admin_token_file)
        if written:
            log.warning("first start: an admin token was written to %s (mode 0600)", written)
        docker = Docker(settings.docker_host, timeout=settings.docker_timeout)
        sampler = HostSampler(settings.top_sample_interval)
        await sampler.start()
        return cls(
            settings=settings,
            db=db,
            tokens=tokens,
            docker=docker,
            sampler=sampler,
            containers=ContainerService(docker, settings),
            images=ImageService(docker, settings),
            system=SystemService(docker, sampler, settings),
        )

    async def stop(self) -> None:
        await self.sampler.stop()
        await self.docker.close()
        await self.db.close()
