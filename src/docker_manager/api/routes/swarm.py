"""The swarm: `GET /swarm` (read), and an admin's cluster operations: init, the join token, join,
a node's availability (a drain answers when its replicas run elsewhere), removing a node."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from docker_manager.api.deps import AdminAccess, ReadAccess, SwarmDep
from docker_manager.schemas.swarm import (
    AvailabilityRequest,
    JoinTokenView,
    NodeChanged,
    NodeId,
    NodeView,
    SwarmInitRequest,
    SwarmJoinRequest,
    SwarmStatus,
)

router = APIRouter(prefix="/swarm", tags=["swarm"])
NodePath = Annotated[NodeId, Path()]


@router.get("", response_model=SwarmStatus)
async def status(swarm: SwarmDep, _: ReadAccess) -> SwarmStatus:
    """This engine's swarm state and role, the managers it knows, and (on a manager) every node
    with its availability, state, address and running replicas."""
    return await swarm.status()


@router.post("/init", response_model=SwarmStatus)
async def init(body: SwarmInitRequest, swarm: SwarmDep, _: AdminAccess) -> SwarmStatus:
    """Make this engine the first manager of a new swarm (409 when it is in one already)."""
    return await swarm.init(body)


@router.get("/join-token", response_model=JoinTokenView)
async def join_token(
    swarm: SwarmDep, _: AdminAccess, role: Annotated[Literal["worker", "manager"], Query()] = "worker"
) -> JoinTokenView:
    """The token another host's service gives to `POST /swarm/join` (a manager's to tell)."""
    return await swarm.join_token(role)


@router.post("/join", response_model=SwarmStatus)
async def join(body: SwarmJoinRequest, swarm: SwarmDep, _: AdminAccess) -> SwarmStatus:
    """Join this host's engine to a swarm, called on the joining host's own service."""
    return await swarm.join(body)


@router.post("/nodes/{node_id}/availability", response_model=NodeChanged)
async def availability(
    node_id: NodePath, body: AvailabilityRequest, swarm: SwarmDep, _: AdminAccess
) -> NodeChanged:
    """active, pause or drain. A drain answers once the node's replicas run elsewhere (409 with
    the engine's reason when they do not within `timeout`)."""
    return await swarm.set_availability(node_id, body)


@router.delete("/nodes/{node_id}", response_model=NodeView)
async def remove(node_id: NodePath, swarm: SwarmDep, _: AdminAccess) -> NodeView:
    """Remove a node that is down, or drained with nothing running there (409 otherwise)."""
    return await swarm.remove_node(node_id)
