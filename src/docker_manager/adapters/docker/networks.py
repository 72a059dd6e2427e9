"""`/networks/...`: list, look up, create (with the service's labels), remove."""

from __future__ import annotations

from typing import Any

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport

StrList = list[str]


class Networks:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return list(await self._t.json("GET", "/networks", params={"filters": filters}) or [])

    async def remove(self, network: str) -> None:
        await self._t.request("DELETE", f"/networks/{ref(network)}")

    async def members(self, network: str) -> StrList:
        """The ids of the containers on a network."""
        return list(((await self.inspect(network)).get("Containers") or {}).keys())

    async def inspect(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/networks/{ref(name)}")
        return result

    async def create(self, name: str, *, labels: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST",
            "/networks/create",
            json_body={"Name": name, "Driver": "bridge", "Labels": labels, "CheckDuplicate": True},
        )
        return result
