"""What sites and traffic switches are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class SwitchOptions:
    roots: Roots  # the task folders sign-domain and update-port read and write
    nginx_conf_dirs: tuple[Path, ...]  # where site files may be written
    publish_host_ip: str  # an update-port recreation publishes here
    forbidden_host_ports: frozenset[int]  # no site reaches these
    mode: Literal["auto", "nat", "reload"]  # how a switch moves traffic (DM_SWITCH_MODE)
    front_network: ipaddress.IPv4Network  # loopback fronts the kernel moves (nat mode)
    drain_seconds: float  # wait after a switch before the old container stops
    stop_timeout: int  # seconds the old container gets to stop

    @classmethod
    def of(cls, settings: Settings) -> SwitchOptions:
        return cls(
            roots=Roots.of(settings),
            nginx_conf_dirs=tuple(settings.nginx_conf_dirs),
            publish_host_ip=settings.publish_host_ip,
            forbidden_host_ports=settings.forbidden_host_ports,
            mode=settings.switch_mode,
            front_network=settings.switch_front_network,
            drain_seconds=settings.switch_drain_seconds,
            stop_timeout=settings.switch_stop_timeout,
        )
