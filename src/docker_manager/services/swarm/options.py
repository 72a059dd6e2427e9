"""What swarm apps are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_manager.adapters.docker.registry import auth_header
from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class SwarmOptions:
    roots: Roots  # task folders go to builds
    registry: str | None  # registry host and repository prefix every node reaches
    registry_username: str | None
    registry_password: str | None
    rollout_timeout: float
    poll_interval: float  # between looks at where the replicas run (sites follow)

    @classmethod
    def of(cls, settings: Settings) -> SwarmOptions:
        password = settings.swarm_registry_password
        return cls(
            roots=Roots.of(settings),
            registry=settings.swarm_registry,
            registry_username=settings.swarm_registry_username,
            registry_password=password.get_secret_value() if password else None,
            rollout_timeout=settings.swarm_rollout_timeout,
            poll_interval=settings.swarm_poll_interval,
        )

    @property
    def registry_auth(self) -> str | None:
        """The X-Registry-Auth value for the registry (None: it needs no login)."""
        if self.registry is None or self.registry_username is None:
            return None
        server = self.registry.partition("/")[0]
        return auth_header(self.registry_username, self.registry_password or "", server)

    def __repr__(self) -> str:  # (never the password)
        return f"SwarmOptions(registry={self.registry!r}, rollout_timeout={self.rollout_timeout})"
