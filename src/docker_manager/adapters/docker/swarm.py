"""`/swarm`, `/nodes`, `/services`, `/tasks`: the engine's swarm mode, as its manager sees it.

Cluster routes on a node that is not a manager answer 503 ("This node is not a swarm manager");
the services turn that into an error naming a manager (`/info` lists them on every node).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport


class Swarm:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def inspect(self) -> dict[str, Any]:
        """The cluster (a manager only): its id, spec, version and join tokens."""
        result: dict[str, Any] = await self._t.json("GET", "/swarm")
        return result

    async def init(
        self, *, advertise_addr: str, listen_addr: str, address_pool: str, subnet_size: int
    ) -> str:
        """Make this engine the first manager of a new swarm: its node id."""
        body = {
            "AdvertiseAddr": advertise_addr,
            "ListenAddr": listen_addr,
            "DefaultAddrPool": [address_pool],
            "SubnetSize": subnet_size,
            "Spec": {},
        }
        return str(await self._t.json("POST", "/swarm/init", json_body=body, timeout=60.0))

    async def join(
        self, *, remote_addrs: list[str], join_token: str, advertise_addr: str, listen_addr: str
    ) -> None:
        body = {
            "RemoteAddrs": remote_addrs,
            "JoinToken": join_token,
            "AdvertiseAddr": advertise_addr,
            "ListenAddr": listen_addr,
        }
        await self._t.request("POST", "/swarm/join", json_body=body, timeout=60.0)

    async def leave(self, *, force: bool = False) -> None:
        await self._t.request(
            "POST", "/swarm/leave", params={"force": "true" if force else "false"}, timeout=60.0
        )


class Nodes:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self) -> list[dict[str, Any]]:
        return list(await self._t.json("GET", "/nodes") or [])

    async def inspect(self, node: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/nodes/{ref(node)}")
        return result

    async def update(self, node: str, *, version: int, spec: dict[str, Any]) -> None:
        """Replace the node's spec (the whole spec, at the version it was read at)."""
        await self._t.request(
            "POST", f"/nodes/{ref(node)}/update", params={"version": str(version)}, json_body=spec
        )

    async def remove(self, node: str, *, force: bool = False) -> None:
        await self._t.request("DELETE", f"/nodes/{ref(node)}", params={"force": "true" if force else "false"})


class Services:
    """Swarm services. Creates and updates forward the registry credentials (`auth`, the
    X-Registry-Auth value, never logged) so that every node can pull the image."""

    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """Services with `ServiceStatus` (running and desired tasks)."""
        params = {"status": "true", "filters": filters}
        return list(await self._t.json("GET", "/services", params=params) or [])

    async def inspect(self, service: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/services/{ref(service)}")
        return result

    async def create(self, spec: dict[str, Any], *, auth: str | None) -> str:
        """The new service's id."""
        headers = {"X-Registry-Auth": auth} if auth else None
        answer = await self._t.json("POST", "/services/create", json_body=spec, headers=headers)
        return str(answer["ID"])

    async def update(
        self, service: str, *, version: int, spec: dict[str, Any], auth: str | None, rollback: bool = False
    ) -> tuple[str, ...]:
        """Replace the service's spec (the whole spec, at the version it was read at; a stale one
        answers 500 "update out of sequence"); `rollback` asks for the previous spec instead.
        The engine's warnings."""
        params = {"version": str(version), **({"rollback": "previous"} if rollback else {})}
        headers = {"X-Registry-Auth": auth} if auth else None
        answer = await self._t.json(
            "POST", f"/services/{ref(service)}/update", params=params, json_body=spec, headers=headers
        )
        return tuple(str(w) for w in (answer or {}).get("Warnings") or [])

    async def remove(self, service: str) -> None:
        await self._t.request("DELETE", f"/services/{ref(service)}")

    @asynccontextmanager
    async def logs(self, service: str, *, tail: int | None, follow: bool) -> AsyncIterator[httpx2.Response]:
        """The replicas' output as multiplexed frames, each line prefixed by its details
        (`com.docker.swarm.node.id=...,com.docker.swarm.task.id=...`) and a timestamp."""
        params = {
            "stdout": "true",
            "stderr": "true",
            "details": "true",
            "timestamps": "true",
            "follow": "true" if follow else "false",
            "tail": "all" if tail is None else str(tail),
        }
        async with self._t.stream("GET", f"/services/{ref(service)}/logs", params=params) as response:
            yield response


class Tasks:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return list(await self._t.json("GET", "/tasks", params={"filters": filters}) or [])
