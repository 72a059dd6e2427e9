"""What the engine says now about an app's containers and images, read once per answer: a release's
status (`live`, `retained`, `gone`) and the host port it publishes now are read, never stored.

A swarm app's release is live when the app's service runs the spec its task wrote (the engine's
own rollback of a failed rollout puts an earlier spec, and so an earlier release, back)."""

from __future__ import annotations

from dataclasses import dataclass, field

from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.errors import DockerManagerError
from docker_manager.labels import APP_ID, MANAGED, TASK_ID
from docker_manager.services.containers import ContainerService
from docker_manager.services.releases.store import Release


@dataclass(frozen=True)
class EngineView:
    """What the engine says now about containers and images, read once per answer."""

    states: dict[str, str]  # container id -> state word
    images: set[str]
    # container id -> the host port it publishes now (over TCP): an engine-chosen one changes
    # when the container restarts, and the release keeps the port it had when recorded.
    ports: dict[str, int] = field(default_factory=dict)
    # app id -> the task whose spec its swarm service runs now (read only for apps on a swarm)
    services: dict[str, str] = field(default_factory=dict)

    def host_port(self, release: Release) -> int | None:
        return self.ports.get(release.container_id or "") or release.host_port

    def status_of(self, release: Release, live: int | None) -> str:
        if release.pruned_at is not None:
            return "gone"
        if release.image_id not in self.images and not release.on_swarm:  # (a swarm's: in its registry)
            return "gone"
        return "live" if release.number == live else "retained"

    def missing_of(self, release: Release) -> list[str]:
        """What this host lacks to run the release again (its image, e.g. after a restore onto a
        new host): a deploy or a rollback that brings the image back makes it whole."""
        if release.pruned_at is not None or release.on_swarm or release.image_id in self.images:
            return []
        return [f"image {release.image_id} ({release.tag or 'untagged'}) is not on this host"]

    def live_of(self, app_releases: list[Release]) -> Release | None:
        """The newest release whose container runs, or whose spec the app's swarm service runs
        (`app_releases` newest first)."""
        for release in app_releases:
            if release.on_swarm:
                if release.task_id and self.services.get(release.app_id) == release.task_id:
                    return release
            elif release.container_id and self.states.get(release.container_id) == "running":
                return release
        return None


def host_port_of(info: ContainerInfo) -> int | None:
    return next((p for key, p in info.published_ports.items() if p and key.endswith("/tcp")), None)


async def read_engine_view(
    containers: ContainerService, docker: Docker, *, swarm: bool = False
) -> EngineView:
    """The engine's containers (their state and the TCP port each publishes now) and images, and
    with `swarm` the specs of this service's swarm services."""
    listed = await containers.list(all=True)
    images = await docker.images.list()
    ports = {
        c.id: port
        for c in listed
        if c.state == "running"
        for port in [next((p for key, p in c.ports.items() if p and key.endswith("/tcp")), None)]
        if port
    }
    return EngineView(
        states={c.id: c.state for c in listed},
        images={str(i["Id"]) for i in images},
        ports=ports,
        services=await _swarm_specs(docker) if swarm else {},
    )


async def _swarm_specs(docker: Docker) -> dict[str, str]:
    """app id -> the task id on its service's current spec. Not a manager (any more): none."""
    try:
        services = await docker.services.list(filters={"label": [f"{MANAGED}=true"]})
    except DockerManagerError:
        return {}
    found = {}
    for service in services:
        spec = service.get("Spec") or {}
        labels = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Labels") or {}
        app_id, task_id = (spec.get("Labels") or {}).get(APP_ID), labels.get(TASK_ID)
        if app_id and task_id:
            found[str(app_id)] = str(task_id)
    return found
