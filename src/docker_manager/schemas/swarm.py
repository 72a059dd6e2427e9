"""Bodies and answers of the swarm routes: the cluster, its nodes, joining it."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from docker_manager.schemas.common import StrictModel


def _ip(value: str) -> str:
    ipaddress.ip_address(value)  # an address, never an interface name or a host to resolve
    return value


def _address_and_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("an address:port, e.g. 10.0.0.5:2377")
    _ip(host.strip("[]"))
    return value


def _network(value: str) -> str:
    network = ipaddress.ip_network(value, strict=True)
    if network.version != 4 or network.prefixlen > 24:
        raise ValueError("an IPv4 network of /24 or larger, e.g. 10.20.0.0/16")
    return value


IpAddress = Annotated[str, Field(max_length=45), AfterValidator(_ip)]
Endpoint = Annotated[str, Field(max_length=64), AfterValidator(_address_and_port)]
NodeId = Annotated[str, Field(pattern=r"^[a-z0-9]{25}$", description="A node's id (docker node ls).")]
JoinToken = Annotated[str, Field(pattern=r"^SWMTKN-1-[a-z0-9]{50}-[a-z0-9]{25}$")]


class SwarmInitRequest(StrictModel):
    advertise_addr: IpAddress = Field(description="The address other nodes reach this one at.")
    listen_port: int = Field(2377, ge=1, le=65535)
    address_pool: Annotated[str, AfterValidator(_network)] = Field(
        "10.20.0.0/16", description="Where overlay networks take their subnets."
    )
    subnet_size: int = Field(24, ge=16, le=28)


class SwarmJoinRequest(StrictModel):
    remote_addrs: list[Endpoint] = Field(min_length=1, max_length=7, description="Managers' address:port.")
    join_token: JoinToken
    advertise_addr: IpAddress = Field(description="This node's address, as the others reach it.")
    listen_port: int = Field(2377, ge=1, le=65535)


class AvailabilityRequest(StrictModel):
    availability: Literal["active", "drain", "pause"]
    timeout: float = Field(120.0, ge=1, le=1800, description="drain: how long to wait for the moves.")


class NodeView(BaseModel):
    id: str
    hostname: str
    role: str = Field(description="manager or worker")
    leader: bool
    availability: str = Field(description="active, pause or drain")
    state: str = Field(description="ready, down, unknown, disconnected")
    addr: str
    engine_version: str | None
    running_replicas: int = Field(description="Tasks running there now.")


class SwarmStatus(BaseModel):
    state: str = Field(description="inactive, pending, active, error or locked (this engine's)")
    node_id: str | None
    role: str | None = Field(description="manager, worker, or null outside a swarm")
    managers: list[str] = Field(description="The managers' address:port this node knows.")
    nodes: list[NodeView] | None = Field(description="Every node (a manager's answer; null on a worker).")


class JoinTokenView(BaseModel):
    role: str
    token: str
    managers: list[str]


class NodeChanged(BaseModel):
    node: NodeView
    moved: int = Field(0, description="drain: replicas that were running there and now run elsewhere.")
    seconds: float
