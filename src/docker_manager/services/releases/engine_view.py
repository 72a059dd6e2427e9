"""What the engine says now about an app's containers and images, read once per answer: a release's
status (`live`, `retained`, `gone`) and the host port it publishes now are read, never stored."""

from __future__ import annotations

from dataclasses import dataclass, field

from docker_manager.adapters.docker import ContainerInfo, Docker
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

    def host_port(self, release: Release) -> int | None:
        return self.ports.get(release.container_id or "") or release.host_port

    def status_of(self, release: Release, live: int | None) -> str:
        if release.pruned_at is not None or release.image_id not in self.images:
            return "gone"
        return "live" if release.number == live else "retained"

    def live_of(self, app_releases: list[Release]) -> Release | None:
        """The newest release whose container runs (`app_releases` newest first)."""
        for release in app_releases:
            if release.container_id and self.states.get(release.container_id) == "running":
                return release
        return None


def host_port_of(info: ContainerInfo) -> int | None:
    return next((p for key, p in info.published_ports.items() if p and key.endswith("/tcp")), None)


async def read_engine_view(containers: ContainerService, docker: Docker) -> EngineView:
    """The engine's containers (their state and the TCP port each publishes now) and images."""
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
        states={c.id: c.state for c in listed}, images={str(i["Id"]) for i in images}, ports=ports
    )
