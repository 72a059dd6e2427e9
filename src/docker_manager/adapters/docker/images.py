"""`/images/...` and `/build`: list, inspect, remove, tag, prune, build."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from docker_manager.adapters.docker._paths import ref
from docker_manager.adapters.docker.client import DockerTransport
from docker_manager.adapters.docker.streams import json_progress

JsonList = list[Any]


class Images:
    def __init__(self, transport: DockerTransport) -> None:
        self._t = transport

    async def list(self, *, filters: dict[str, JsonList] | None = None) -> JsonList:
        return list(await self._t.json("GET", "/images/json", params={"filters": filters}) or [])

    async def inspect(self, image: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json("GET", f"/images/{ref(image)}/json")
        return result

    async def remove(self, image: str, *, force: bool = False) -> JsonList:
        return list(await self._t.json("DELETE", f"/images/{ref(image)}", params={"force": force}) or [])

    async def tag(self, image: str, *, repo: str, tag: str) -> None:
        await self._t.request("POST", f"/images/{ref(image)}/tag", params={"repo": repo, "tag": tag})

    async def prune(self, *, filters: dict[str, JsonList]) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.json(
            "POST", "/images/prune", params={"filters": filters}, timeout=None
        )
        return result

    @asynccontextmanager
    async def push(self, name: str, *, tag: str, auth: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Push `name:tag`; `auth` is the X-Registry-Auth value (never logged)."""
        async with (
            self._t.stream(
                "POST", f"/images/{ref(name)}/push", params={"tag": tag}, headers={"X-Registry-Auth": auth}
            ) as response,
            contextlib.aclosing(json_progress(response.aiter_lines())) as progress,
        ):
            yield progress

    @asynccontextmanager
    async def pull(self, name: str, *, tag: str, auth: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Pull `name:tag` explicitly (nothing else in this service ever pulls)."""
        async with (
            self._t.stream(
                "POST",
                "/images/create",
                params={"fromImage": name, "tag": tag},
                headers={"X-Registry-Auth": auth},
            ) as response,
            contextlib.aclosing(json_progress(response.aiter_lines())) as progress,
        ):
            yield progress

    @asynccontextmanager
    async def load(self, archive: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`docker load` from a stream (sent chunked); yields the engine's progress records.

        An exception raised by `archive` aborts the request, so the engine loads nothing.
        """
        async with (
            self._t.stream(
                "POST",
                "/images/load",
                params={"quiet": True},
                content=archive,
                headers={"Content-Type": "application/x-tar"},
            ) as response,
            contextlib.aclosing(json_progress(response.aiter_lines())) as progress,
        ):
            yield progress

    @asynccontextmanager
    async def export(self, image: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """`docker save` as a stream. Exported by name, so the archive carries the tag."""
        async with self._t.download(f"/images/{ref(image)}/get") as body:
            yield body

    @asynccontextmanager
    async def build(
        self,
        context: AsyncIterator[bytes],
        *,
        tag: str | None,
        dockerfile: str | None,
        buildargs: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        nocache: bool = False,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Send a tar context as it is produced; yield the engine's progress records.

        An in-band build error surfaces as `ProgressError`. `rm` and `forcerm` are always on: without
        `forcerm` a failed build leaves its intermediate containers behind (measured).
        """
        params = {
            "t": tag,
            "dockerfile": dockerfile,
            "buildargs": buildargs or None,
            "labels": labels or None,
            "rm": True,
            "forcerm": True,
            "nocache": nocache,
        }
        async with (
            self._t.stream(
                "POST",
                "/build",
                params=params,
                content=context,
                headers={"Content-Type": "application/x-tar"},
            ) as response,
            contextlib.aclosing(json_progress(response.aiter_lines())) as progress,
        ):
            yield progress


def deleted_ids(answer: JsonList) -> set[str]:
    """The image ids an image removal deleted (the image and the untagged parents it took along)."""
    return {str(item["Deleted"]) for item in answer if isinstance(item, dict) and item.get("Deleted")}
