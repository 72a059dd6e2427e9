"""`/exec/...`: run a command in a running container and read its output and exit code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport
from docker_manager.adapters.docker.streams import StreamId, demux


class Execs:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def create(
        self,
        container: str,
        cmd: list[str],
        *,
        env: list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> str:
        config: dict[str, Any] = {
            "Cmd": cmd,
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
        }
        if env:
            config["Env"] = env
        if workdir:
            config["WorkingDir"] = workdir
        if user:
            config["User"] = user
        result = await self._t.json("POST", f"/containers/{ref(container)}/exec", json_body=config)
        return str(result["Id"])

    @asynccontextmanager
    async def start(self, exec_id: str) -> AsyncIterator[AsyncIterator[tuple[StreamId, bytes]]]:
        """Start the exec and read its multiplexed output.

        Without an `Upgrade` header the engine answers with a plain close-delimited raw stream,
        which httpx can read like any response body (see docs/docker-adapter.md).
        """
        async with self._t.stream(
            "POST", f"/exec/{ref(exec_id)}/start", json_body={"Detach": False, "Tty": False}
        ) as response:
            yield demux(response.aiter_bytes())

    async def inspect(self, exec_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/exec/{ref(exec_id)}/json")
        return result
