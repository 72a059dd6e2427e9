"""What apps and releases are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class ReleaseOptions:
    roots: Roots  # task folders (a release's deploy files) and artefacts
    nginx_conf_dirs: tuple[Path, ...]  # the sites that name an app's domains
    publish_host_ip: str  # a rollback beside the live container publishes here
    forbidden_host_ports: frozenset[int]
    switch_stop_timeout: int  # seconds the old container gets to stop
    keep_releases: int  # per app, whose containers, images and artefacts stay
    task_retention_days: float
    audit_retention_days: float
    gc_interval: float  # seconds between background clean-ups

    @classmethod
    def of(cls, settings: Settings) -> ReleaseOptions:
        return cls(
            roots=Roots.of(settings),
            nginx_conf_dirs=tuple(settings.nginx_conf_dirs),
            publish_host_ip=settings.publish_host_ip,
            forbidden_host_ports=settings.forbidden_host_ports,
            switch_stop_timeout=settings.switch_stop_timeout,
            keep_releases=settings.keep_releases,
            task_retention_days=settings.task_retention_days,
            audit_retention_days=settings.audit_retention_days,
            gc_interval=settings.gc_interval,
        )
