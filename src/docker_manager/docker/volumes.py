"""`/volumes/...` and `/networks/...`: look up and create (with the service's labels)."""

from __future__ import annotations

from typing import Any

from docker_manager.docker._paths import ref
from docker_manager.docker.client import DockerTransport


class Volumes:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def inspect(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/volumes/{ref(name)}")
        return result

    async def create(self, name: str, *, labels: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST", "/volumes/create", json_body={"Name": name, "Labels": labels}
        )
        return result


class Networks:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

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
