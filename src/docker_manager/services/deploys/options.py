"""What deploys are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class DeployOptions:
    roots: Roots  # artefacts come from the upload and builds roots
    healthcheck_time: int  # default seconds between a run and its health check
    max_image_bytes: int  # largest decompressed archive a localrun loads (lz4 bombs)

    @classmethod
    def of(cls, settings: Settings) -> DeployOptions:
        return cls(
            roots=Roots.of(settings),
            healthcheck_time=settings.healthcheck_time,
            max_image_bytes=settings.max_image_bytes,
        )
