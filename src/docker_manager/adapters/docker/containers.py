"""`/containers/...`: create, inspect, lifecycle, logs, stats."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport
from docker_manager.adapters.docker.streams import StreamId, demux
from docker_manager.adapters.docker.types import ContainerInfo

JsonList = list[Any]

# Bits of Go's os.FileMode, as the archive stat header reports them.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24


@dataclass(frozen=True)
class PathStat:
    """What the engine says about a path inside a container (`HEAD .../archive`)."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & GO_MODE_DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.mode & GO_MODE_SYMLINK)

    @property
    def is_regular(self) -> bool:
        special = GO_MODE_DIR | GO_MODE_SYMLINK | GO_MODE_DEVICE | GO_MODE_PIPE | GO_MODE_SOCKET
        return not self.mode & special

    def as_dict(self) -> dict[str, Any]:
        """The engine's stat header as it sent it (the original's `stat`)."""
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }


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

    async def info(self, container: str) -> ContainerInfo:
        """The inspect document, typed for what the services read."""
        return ContainerInfo(await self.inspect(container))

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

    async def rename(self, container: str, name: str) -> None:
        await self._t.request("POST", f"/containers/{ref(container)}/rename", params={"name": name})

    async def update(self, container: str, host_config: dict[str, Any]) -> None:
        """Change a created container's resources or restart policy (`docker update`)."""
        await self._t.request("POST", f"/containers/{ref(container)}/update", json_body=host_config)

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

    async def stat_path(self, container: str, path: str) -> PathStat:
        """Stat a path inside the container; NotFound if it does not exist."""
        response = await self._t.request(
            "HEAD", f"/containers/{ref(container)}/archive", params={"path": path}
        )
        raw = response.headers.get("X-Docker-Container-Path-Stat", "")
        data = json.loads(base64.b64decode(raw)) if raw else {}
        return PathStat(
            name=str(data.get("name", "")),
            size=int(data.get("size", 0)),
            mode=int(data.get("mode", 0)),
            mtime=str(data.get("mtime", "")),
            link_target=str(data.get("linkTarget", "")),
        )

    @asynccontextmanager
    async def get_archive(self, container: str, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """A tar of `path` (recursively, for a directory), streamed as the engine sends it."""
        async with self._t.download(f"/containers/{ref(container)}/archive", params={"path": path}) as body:
            yield body

    async def put_archive(self, container: str, path: str, tar: bytes) -> None:
        """Extract an uncompressed tar into directory `path` inside the container.

        Always uncompressed: a compressed body makes the engine run the container's own
        decompressor as root on the host (CVE-2026-41567).
        """
        await self._t.request(
            "PUT",
            f"/containers/{ref(container)}/archive",
            params={"path": path, "noOverwriteDirNonDir": True},
            content=tar,
            headers={"Content-Type": "application/x-tar"},
        )

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
        async with self._t.download(f"/containers/{ref(container)}/logs", params=params) as body:
            yield _as_stdout(body) if tty else demux(body)


async def _as_stdout(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[StreamId, bytes]]:
    async for chunk in chunks:
        yield StreamId.STDOUT, chunk
