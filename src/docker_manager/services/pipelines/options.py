"""What the html-site pipeline is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    roots: Roots  # its task folder goes to the builds root
    forbidden_host_ports: frozenset[int]
    git_allowed_schemes: tuple[str, ...]
    git_local_roots: tuple[Path, ...]
    git_timeout: float
    git_max_bytes: int
    registry_credentials_for: tuple[str, ...]  # where DOCKERHUB_USERNAME/PASSWORD may go
    base_image: str  # when the repository has no Dockerfile
    html_dir: str  # where the site is copied in that image
    probe_timeout: float

    @classmethod
    def of(cls, settings: Settings) -> PipelineOptions:
        return cls(
            roots=Roots.of(settings),
            forbidden_host_ports=settings.forbidden_host_ports,
            git_allowed_schemes=tuple(settings.git_allowed_schemes),
            git_local_roots=tuple(settings.git_local_roots),
            git_timeout=settings.git_timeout,
            git_max_bytes=settings.git_max_bytes,
            registry_credentials_for=tuple(settings.registry_credentials_for),
            base_image=settings.pipeline_base_image,
            html_dir=settings.pipeline_html_dir,
            probe_timeout=settings.pipeline_probe_timeout,
        )
