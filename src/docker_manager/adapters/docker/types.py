"""Typed views of the engine's answers that the services read again and again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContainerInfo:
    """A container as the engine's inspect describes it; `raw` is the whole document."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["Id"])

    @property
    def name(self) -> str:
        return str(self.raw.get("Name", "")).lstrip("/")

    @property
    def config(self) -> dict[str, Any]:
        return self.raw.get("Config") or {}

    @property
    def host_config(self) -> dict[str, Any]:
        return self.raw.get("HostConfig") or {}

    @property
    def state(self) -> dict[str, Any]:
        return self.raw.get("State") or {}

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def status(self) -> str:
        """created, running, exited... (the engine's state word)."""
        return str(self.state.get("Status", "unknown"))

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def labels(self) -> dict[str, str]:
        return self.config.get("Labels") or {}

    @property
    def mounts(self) -> list[dict[str, Any]]:
        return list(self.raw.get("Mounts") or [])

    @property
    def published_ports(self) -> dict[str, int | None]:
        """Container port -> host port (the first binding of each port; None when unpublished)."""
        ports: dict[str, int | None] = {}
        for port, bindings in ((self.raw.get("NetworkSettings") or {}).get("Ports") or {}).items():
            host_port = next((b.get("HostPort") for b in bindings or [] if b.get("HostPort")), None)
            ports[port] = int(host_port) if host_port else None
        return ports

    @property
    def bridge_address(self) -> str | None:
        """Its IPv4 address on a network the host reaches (the default bridge first), if any."""
        networks = (self.raw.get("NetworkSettings") or {}).get("Networks") or {}
        for name in sorted(networks, key=lambda n: n != "bridge"):
            address = (networks[name] or {}).get("IPAddress")
            if address:
                return str(address)
        return None
