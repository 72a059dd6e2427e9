"""What the containers domain is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Settings


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    allow_privileged_options: bool  # admin tokens may use host-level options
    publish_host_ip: str  # the address published ports bind to
    forbidden_host_ports: frozenset[int]  # SSH, the engine, this API: never published
    exec_timeout: float
    exec_max_output_bytes: int
    fs_max_bytes: int
    fs_helper_binary: Path  # a static busybox for containers without `rm`
    nginx_conf_dirs: tuple[Path, ...]  # where the sites whose ports may not be taken are

    @classmethod
    def of(cls, settings: Settings) -> ContainerOptions:
        return cls(
            allow_privileged_options=settings.allow_privileged_options,
            publish_host_ip=settings.publish_host_ip,
            forbidden_host_ports=settings.forbidden_host_ports,
            exec_timeout=settings.exec_timeout,
            exec_max_output_bytes=settings.exec_max_output_bytes,
            fs_max_bytes=settings.fs_max_bytes,
            fs_helper_binary=settings.fs_helper_binary,
            nginx_conf_dirs=tuple(settings.nginx_conf_dirs),
        )
