"""What deploys are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class DeployOptions:
    roots: Roots  # artefacts come from the upload and builds roots; task folders go to builds
    healthcheck_time: int  # default seconds between a localrun and its health check
    max_image_bytes: int  # largest decompressed archive a load takes (lz4 bombs)
    forbidden_host_ports: frozenset[int]
    queue: Literal["wait", "refuse"]  # a second deploy of one app: waits, or 409
    git_allowed_schemes: tuple[str, ...]  # a git source under the pipeline's rules
    git_local_roots: tuple[Path, ...]
    git_timeout: float
    git_max_bytes: int
    drain_seconds: float  # before the previous container stops
    stop_timeout: int

    @classmethod
    def of(cls, settings: Settings) -> DeployOptions:
        return cls(
            roots=Roots.of(settings),
            healthcheck_time=settings.healthcheck_time,
            max_image_bytes=settings.max_image_bytes,
            forbidden_host_ports=settings.forbidden_host_ports,
            queue=settings.deploy_queue,
            git_allowed_schemes=tuple(settings.git_allowed_schemes),
            git_local_roots=tuple(settings.git_local_roots),
            git_timeout=settings.git_timeout,
            git_max_bytes=settings.git_max_bytes,
            drain_seconds=settings.switch_drain_seconds,
            stop_timeout=settings.switch_stop_timeout,
        )
