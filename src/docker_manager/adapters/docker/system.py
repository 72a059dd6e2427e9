"""`/version`, `/info`, `/_ping`, `/auth`, `/events`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from docker_manager.adapters.docker.client import DockerTransport


class System:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def version(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", "/version")
        return result

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", "/info")
        return result

    async def df(self) -> dict[str, Any]:
        """Disk usage of images, containers, volumes and the build cache (can take seconds)."""
        result: dict[str, Any] = await self._t.json("GET", "/system/df", timeout=120.0)
        return result

    async def ping(self) -> None:
        await self._t.request("GET", "/_ping", timeout=5.0)

    @asynccontextmanager
    async def events(self, filters: dict[str, list[str]]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """The engine's events as they happen (one JSON object each), until the stream is left."""
        async with self._t.stream("GET", "/events", params={"filters": filters}) as response:
            yield _objects(response.aiter_lines())

    async def auth(self, *, username: str, password: str, server: str) -> dict[str, Any]:
        """Check registry credentials (`docker login`); the engine answers 401 when they are wrong."""
        result: dict[str, Any] = await self._t.json(
            "POST",
            "/auth",
            json_body={"username": username, "password": password, "serveraddress": server},
            timeout=60.0,
        )
        return result


async def _objects(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        if line.strip():
            item = json.loads(line)
            if isinstance(item, dict):
                yield item
