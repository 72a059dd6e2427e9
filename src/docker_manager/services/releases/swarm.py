"""What releases need of swarm apps: their own rollback (services/swarm/operations.py, which
depends on releases: so only this shape is known here)."""

from __future__ import annotations

from typing import Protocol

from docker_manager.auth import Principal
from docker_manager.schemas.releases import RollbackRequest, RollbackStarted


class SwarmRollbacks(Protocol):
    """Rollbacks of swarm apps (services/swarm/operations.py)."""

    async def is_swarm_app(self, app_id: str) -> bool: ...

    async def rollback(self, app_id: str, body: RollbackRequest, principal: Principal) -> RollbackStarted: ...
