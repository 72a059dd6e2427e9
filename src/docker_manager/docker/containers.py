"""`/containers/...`: create, inspect, lifecycle, logs, stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from docker_manager.docker._paths import ref
from docker_manager.docker.client import DockerTransport
from docker_manager.docker.streams import StreamId, demux

JsonList = list[Any]


class Containers:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, all: bool = False, filters: dict[str, JsonList] | None = None) -> JsonList:
        # Never `size=1`: it makes the engine walk every container's filesystem (moby #6546).
        result = await self._t.json("GET", "/containers/json", params={"all": all, "filters": filters})
        return list(result or [])

    async def inspect(self, container: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/containers/{ref(container)}/json")
        return result

    async def create(self, config: dict[str, Any], *, name: str | None = None) -> str:
        result = await self._t.json("POST", "/containers/create", params={"name": name}, json_body=config)
        return str(result["Id"])

    async def start(self, container: str) -> None:
        await self._t.request("POST", f"/containers/{ref(container)}/start")

    async def stop(self, container: str, *, timeout: int = 10) -> None:
        await self._t.request(
            "POST",
            f"/containers/{ref(container)}/stop",
            params={"t": timeout},
            timeout=self._t.timeout + timeout,
        )

    async def restart(self, container: str, *, timeout: int = 10) -> None:
        await self._t.request(
            "POST",
            f"/containers/{ref(container)}/restart",
            params={"t": timeout},
            timeout=self._t.timeout + timeout,
        )

    async def kill(self, container: str, *, signal: str = "SIGKILL") -> None:
        await self._t.request("POST", f"/containers/{ref(container)}/kill", params={"signal": signal})

    async def pause(self, container: str) -> None:
        await self._t.request("POST", f"/containers/{ref(container)}/pause")

    async def unpause(self, container: str) -> None:
        await self._t.request("POST", f"/containers/{ref(container)}/unpause")

    async def remove(self, container: str, *, force: bool = False, volumes: bool = False) -> None:
        await self._t.request(
            "DELETE", f"/containers/{ref(container)}", params={"force": force, "v": volumes}
        )

    async def wait(self, container: str, *, timeout: float | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST",
            f"/containers/{ref(container)}/wait",
            params={"condition": "not-running"},
            timeout=timeout,
        )
        return result

    async def stats(self, container: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            # Not one-shot: the engine then samples twice, so CPU usage can be computed.
            "GET",
            f"/containers/{ref(container)}/stats",
            params={"stream": False},
        )
        return result

    async def prune(self, *, filters: dict[str, JsonList]) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST", "/containers/prune", params={"filters": filters}, timeout=None
        )
        return result

    @asynccontextmanager
    async def logs(
        self,
        container: str,
        *,
        tty: bool,
        tail: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
        since: int | None = None,
    ) -> AsyncIterator[AsyncIterator[tuple[StreamId, bytes]]]:
        """The container's log as (stream, bytes) frames. A TTY container has one merged stream."""
        params = {
            "stdout": True,
            "stderr": True,
            "tail": "all" if tail is None else tail,
            "timestamps": timestamps,
            "follow": follow,
            "since": since,
        }
        async with self._t.stream(
            "GET",
            f"/containers/{ref(container)}/logs",
            params=params,
            timeout=None if follow else self._t.timeout,
        ) as response:
            if tty:
                yield _as_stdout(response.aiter_bytes())
            else:
                yield demux(response.aiter_bytes())


async def _as_stdout(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[StreamId, bytes]]:
    async for chunk in chunks:
        yield StreamId.STDOUT, chunk
