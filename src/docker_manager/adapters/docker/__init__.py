"""Async adapter for the Docker Engine API: one module per resource, one facade.

docker = Docker("unix:///var/run/docker.sock", timeout=30)
await docker.containers.inspect("web")
"""

from __future__ import annotations

from docker_manager.adapters.docker.client import DockerTransport
from docker_manager.adapters.docker.containers import Containers
from docker_manager.adapters.docker.execs import Execs
from docker_manager.adapters.docker.images import Images
from docker_manager.adapters.docker.networks import Networks
from docker_manager.adapters.docker.streams import ProgressError, StreamId
from docker_manager.adapters.docker.swarm import Nodes, Services, Swarm, Tasks
from docker_manager.adapters.docker.system import System
from docker_manager.adapters.docker.types import ContainerInfo
from docker_manager.adapters.docker.volumes import Volumes

__all__ = ["ContainerInfo", "Docker", "ProgressError", "StreamId"]


class Docker:
    """The engine, by resource."""

    def __init__(self, host: str, *, timeout: float) -> None:
        self.transport = DockerTransport(host, timeout=timeout)
        self.containers = Containers(self.transport)
        self.images = Images(self.transport)
        self.execs = Execs(self.transport)
        self.system = System(self.transport)
        self.volumes = Volumes(self.transport)
        self.networks = Networks(self.transport)
        self.swarm = Swarm(self.transport)
        self.nodes = Nodes(self.transport)
        self.services = Services(self.transport)
        self.tasks = Tasks(self.transport)

    async def close(self) -> None:
        await self.transport.close()
