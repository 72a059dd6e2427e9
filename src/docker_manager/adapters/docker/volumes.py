"""`/volumes/...`: list, look up, create (with the service's labels), remove."""

from __future__ import annotations

from typing import Any

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport


class Volumes:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        result = await self._t.json("GET", "/volumes", params={"filters": filters})
        return list((result or {}).get("Volumes") or [])

    async def remove(self, name: str) -> None:
        await self._t.request("DELETE", f"/volumes/{ref(name)}")

    async def inspect(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/volumes/{ref(name)}")
        return result

    async def create(self, name: str, *, labels: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST", "/volumes/create", json_body={"Name": name, "Labels": labels}
        )
        return result
