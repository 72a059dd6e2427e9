"""What the service's own observers are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class ObservabilityOptions:
    roots: Roots  # free space per root is a metric
    metrics_port: int | None  # also /metrics without a token on 127.0.0.1:PORT
    audit_file: Path | None  # also every audit entry as a JSON line (reopened on SIGHUP)
    audit_retention_days: float

    @classmethod
    def of(cls, settings: Settings) -> ObservabilityOptions:
        return cls(
            roots=Roots.of(settings),
            metrics_port=settings.metrics_port,
            audit_file=settings.audit_file,
            audit_retention_days=settings.audit_retention_days,
        )
