"""Where a swarm app's replicas run and where each answers: read from the manager's tasks and nodes.

A replica answers on its node's address and the host port the engine chose for it (host-mode
publishing: no routing mesh, which needs IPVS). Only replicas that run, on a node that is ready,
and are meant to run (not being replaced) take traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.site_header import Upstream
from docker_manager.errors import DockerManagerError
from docker_manager.labels import TASK_ID
from docker_manager.schemas.releases import ReplicaView
from docker_manager.services.swarm.manager import as_manager
from docker_manager.services.swarm.spec import replicas_of, service_name


@dataclass(frozen=True)
class Replica:
    task: str  # the swarm task's id
    slot: int
    node_id: str
    node: str  # its hostname
    state: str  # the task's: pending, starting (health not passed yet), running, failed...
    desired: str
    address: str | None  # node address:host port, once it runs
    error: str | None
    release_task: str | None  # the docker-manager task whose spec it runs

    @property
    def serving(self) -> bool:
        return self.state == "running" and self.desired == "running" and self.address is not None


@dataclass(frozen=True)
class NodeAddress:
    hostname: str
    addr: str
    ready: bool


async def read_replicas(docker: Docker, services: list[str]) -> dict[str, list[Replica]]:
    """The replicas meant to run of each service (by name), slot order."""
    if not services:
        return {}
    found: dict[str, list[Replica]] = {name: [] for name in services}
    ids = await _service_names(docker, services)
    if not ids:  # (a filter naming a service that does not exist is an error)
        return found
    nodes = await read_nodes(docker)
    filters = {"service": sorted(ids), "desired-state": ["running"]}
    tasks = await as_manager(docker, lambda: docker.tasks.list(filters=filters))
    for task in tasks:
        name = ids.get(str(task.get("ServiceID")))
        if name is not None:
            found[name].append(replica_of(task, nodes))
    for replicas in found.values():
        replicas.sort(key=lambda r: (r.slot, r.state != "running"))
    return found


async def read_nodes(docker: Docker) -> dict[str, NodeAddress]:
    nodes = await as_manager(docker, docker.nodes.list)
    return {str(node.get("ID")): node_address(node) for node in nodes}


def node_address(node: dict[str, Any]) -> NodeAddress:
    """A node's address as the others reach it. A manager may report 0.0.0.0 as its own status
    address (an engine quirk): its manager address says where it listens."""
    status = node.get("Status") or {}
    addr = str(status.get("Addr") or "")
    if addr in ("", "0.0.0.0"):
        addr = str((node.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0]
    hostname = str((node.get("Description") or {}).get("Hostname") or node.get("ID"))
    ready = status.get("State") == "ready" and (node.get("Spec") or {}).get("Availability") != "drain"
    return NodeAddress(hostname=hostname, addr=addr, ready=ready)


def replica_of(task: dict[str, Any], nodes: dict[str, NodeAddress]) -> Replica:
    status = task.get("Status") or {}
    node = nodes.get(str(task.get("NodeID") or ""))
    ports = (status.get("PortStatus") or {}).get("Ports") or []
    published = next((p.get("PublishedPort") for p in ports if p.get("PublishedPort")), None)
    address = None
    if node is not None and node.ready and node.addr and published:
        address = f"{node.addr}:{published}"
    labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
    return Replica(
        task=str(task.get("ID")),
        slot=int(task.get("Slot") or 0),
        node_id=str(task.get("NodeID") or ""),
        node=node.hostname if node else "",
        state=str(status.get("State") or "unknown"),
        desired=str(task.get("DesiredState") or ""),
        address=address,
        error=str(status.get("Err") or "") or None,
        release_task=labels.get(TASK_ID),
    )


def swarm_upstream(service: str, servers: tuple[str, ...]) -> Upstream:
    """A site's upstream that follows `service`'s replicas (a 503 while none runs)."""
    if not servers:
        return Upstream("127.0.0.1", 9, down=True, service=service)
    host, _, port = servers[0].rpartition(":")
    return Upstream(host, int(port), service=service, servers=servers)


def servers_of(replicas: list[Replica]) -> tuple[str, ...]:
    """Where the site sends requests: every serving replica's address, in a stable order."""
    return tuple(sorted({r.address for r in replicas if r.serving and r.address}))


async def _service_names(docker: Docker, names: list[str]) -> dict[str, str]:
    """Service id -> name, for the services named."""
    services = await as_manager(docker, lambda: docker.services.list(filters={"name": names}))
    wanted = set(names)
    return {
        str(s.get("ID")): str((s.get("Spec") or {}).get("Name"))
        for s in services
        if (s.get("Spec") or {}).get("Name") in wanted
    }


@dataclass(frozen=True)
class AppReplicas:
    desired: int
    replicas: list[ReplicaView]


class ReplicaReader:
    """What `GET /apps` shows of swarm apps: their replica count and replicas."""

    def __init__(self, docker: Docker) -> None:
        self._docker = docker

    async def of_apps(self, app_ids: list[str]) -> dict[str, AppReplicas]:
        """Per app id; nothing when this engine is no manager (any more), rather than an error."""
        names = {service_name(app_id): app_id for app_id in app_ids}
        try:
            services = await self._docker.services.list(filters={"name": list(names)})
            found = await read_replicas(self._docker, list(names))
        except DockerManagerError:
            return {}
        desired = {str((s.get("Spec") or {}).get("Name")): replicas_of(s) for s in services}
        return {
            app_id: AppReplicas(desired.get(name, 0), [view_of(r) for r in found.get(name, [])])
            for name, app_id in names.items()
            if name in desired
        }


def view_of(replica: Replica) -> ReplicaView:
    health = (
        "healthy"
        if replica.state == "running"
        else ("starting" if replica.state in _STARTING else "unhealthy")
    )
    return ReplicaView(
        slot=replica.slot,
        node=replica.node,
        node_id=replica.node_id,
        state=replica.state,
        health=health,
        address=replica.address,
        error=replica.error,
        release_task=replica.release_task,
    )


_STARTING = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting")
