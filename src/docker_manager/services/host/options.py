"""What the host domain is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class HostOptions:
    roots: Roots  # the folders whose free space is reported and required
    min_free_bytes: int | None  # None: 2 GiB or 5 % of the filesystem, the smaller
    sample_interval: float  # seconds between process samples (`/system/top`)

    @classmethod
    def of(cls, settings: Settings) -> HostOptions:
        return cls(
            roots=Roots.of(settings),
            min_free_bytes=settings.min_free_bytes,
            sample_interval=settings.top_sample_interval,
        )
