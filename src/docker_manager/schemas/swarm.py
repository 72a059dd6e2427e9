"""Bodies and answers of the swarm routes: the cluster, its nodes, joining it."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from docker_manager.schemas.common import StrictModel


def _ip(value: str) -> str:
    """An address other hosts can reach: never an interface name, a zone, a name to resolve, or an
    unspecified, loopback or multicast address."""
    if "%" in value or not value.isascii():
        raise ValueError("an IP address without a zone")
    address = ipaddress.ip_address(value)
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        raise ValueError("an address other hosts reach (not unspecified, loopback or multicast)")
    return str(address)


def _address_and_port(value: str) -> str:
    """`10.0.0.5:2377` or `[fd00::5]:2377`."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
        if ":" in host:
            raise ValueError("an IPv6 address goes in brackets: [fd00::5]:2377")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("an address:port, e.g. 10.0.0.5:2377")
    host = _ip(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _pool(value: str) -> str:
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", value):
        raise ValueError("an IPv4 network such as 10.20.0.0/16")
    network = ipaddress.ip_network(value, strict=True)
    if not network.is_private or network.is_loopback or network.prefixlen > 24 or network.prefixlen < 8:
        raise ValueError("a private IPv4 network between /8 and /24, e.g. 10.20.0.0/16")
    return str(network)


def _listen(value: str) -> str:
    address = ipaddress.ip_address(value) if value.isascii() and "%" not in value else None
    if address is None or address.is_multicast:
        raise ValueError("an IP address of this host, or 0.0.0.0 for all")
    return str(address)


IpAddress = Annotated[str, Field(max_length=45), AfterValidator(_ip)]
ListenAddress = Annotated[str, Field(max_length=45), AfterValidator(_listen)]
Endpoint = Annotated[str, Field(max_length=64), AfterValidator(_address_and_port)]
NodeId = Annotated[
    str, Field(pattern=r"^[a-z0-9]{25}$", description="A node's full 25-character id (docker node ls).")
]
JoinToken = Annotated[str, Field(pattern=r"^SWMTKN-1-[a-z0-9]{50}-[a-z0-9]{25}$")]


class SwarmInitRequest(StrictModel):
    advertise_addr: IpAddress = Field(description="The address other nodes reach this one at.")
    listen_addr: ListenAddress = Field("0.0.0.0", description="Where this engine listens (all: 0.0.0.0).")
    listen_port: int = Field(2377, ge=1, le=65535)
    address_pool: Annotated[str, AfterValidator(_pool)] = Field(
        "10.20.0.0/16", description="Where overlay networks take their subnets (private, /8 to /24)."
    )
    subnet_size: int = Field(24, ge=16, le=28, description="Each overlay network's prefix length.")

    @model_validator(mode="after")
    def _subnets_fit(self) -> SwarmInitRequest:
        if self.subnet_size < int(self.address_pool.rsplit("/", 1)[1]):
            raise ValueError("subnet_size must be at least the address pool's prefix length")
        return self


class SwarmJoinRequest(StrictModel):
    remote_addrs: list[Endpoint] = Field(min_length=1, max_length=7, description="Managers' address:port.")
    join_token: JoinToken
    advertise_addr: IpAddress = Field(description="This node's address, as the others reach it.")
    listen_addr: ListenAddress = Field("0.0.0.0", description="Where this engine listens (all: 0.0.0.0).")
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
