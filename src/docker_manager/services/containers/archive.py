"""Paths inside a container through the engine's archive API: stat and put, with the errors
a caller can act on (a parent that is a file, a read-only filesystem) told apart."""

from __future__ import annotations

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.docker.containers import PathStat
from docker_manager.errors import Conflict, EngineError, NotFound


class Archive:
    def __init__(self, docker: Docker) -> None:
        self._docker = docker

    async def stat(self, container_id: str, path: str) -> PathStat:
        found = await self.stat_or_none(container_id, path)
        if found is None:
            raise NotFound(f"{path} does not exist in the container", field="path")
        return found

    async def stat_or_none(self, container_id: str, path: str) -> PathStat | None:
        try:
            return await self._docker.containers.stat_path(container_id, path)
        except NotFound:
            return None
        except EngineError as exc:
            # The engine answers a bare 500 when a parent is a file ("not a directory").
            raise Conflict(f"{path} cannot be reached: a parent is not a directory", field="path") from exc

    async def put(self, container_id: str, directory: str, tar: bytes) -> None:
        try:
            await self._docker.containers.put_archive(container_id, directory, tar)
        except EngineError as exc:
            if "read-only" in exc.detail or "permission denied" in exc.detail.lower():
                raise Conflict(f"the container refused the write: {exc.detail}", field="path") from exc
            raise
