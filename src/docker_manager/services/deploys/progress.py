"""One deploy, checked (what its task needs), and what it has done so far (enough to finish it, or
to undo it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.adapters.site_header import Upstream
from docker_manager.auth import Principal
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.schemas.sites import HealthGate
from docker_manager.services.deploys.moves import SiteMove
from docker_manager.services.deploys.source import Source
from docker_manager.services.releases import Release


@dataclass
class Progress:
    """What a deploy has done so far: enough to finish it, or to undo it."""

    timings: dict[str, float] = field(default_factory=dict)
    reference: str = ""
    image_id: str = ""
    previous: ContainerInfo | None = None
    in_place: bool = False  # the previous container made way (it held the host port asked for)
    new: ContainerInfo | None = None
    upstream: Upstream | None = None
    health: dict[str, Any] = field(default_factory=dict)
    switched: list[SiteMove] = field(default_factory=list)
    release: Release | None = None


@dataclass
class Deploy:
    """One deploy, checked: what the task needs."""

    app_id: str
    body: DeployRequest
    source: Source
    principal: Principal
    gate: HealthGate
