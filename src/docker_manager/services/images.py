"""Images: synchronous build of a context folder, list, remove, tag, prune."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import Docker, ProgressError
from docker_manager.docker.build_context import BuildContext
from docker_manager.errors import BuildFailed, InvalidInput, NotManaged
from docker_manager.labels import MANAGED_FILTER, is_managed, managed_labels
from docker_manager.schemas.images import BuildResult, ImageSummary, PruneResult, RemoveImageResult
from docker_manager.util.paths import confine

LOG_TAIL = 50


def _context_dir(raw: str, settings: Settings) -> Path:
    path = confine(raw, settings.context_paths, field="path")
    if not path.is_dir():
        raise InvalidInput("the build context is not a directory", field="path")
    if not (path / "Dockerfile").is_file():
        raise InvalidInput("the build context has no Dockerfile", field="path")
    return path


ImageList = list[ImageSummary]
StrList = list[str]


class ImageService:
    def __init__(self, docker: Docker, settings: Settings) -> None:
        self._docker = docker
        self._settings = settings

    async def build(self, *, path: str, tag: str | None, nocache: bool = False) -> BuildResult:
        """Build and wait. A failing step is a `BuildFailed` error carrying the log tail."""
        root = await asyncio.to_thread(_context_dir, path, self._settings)
        context = BuildContext(root=root, max_bytes=self._settings.max_context_bytes)
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        image_id: str | None = None
        try:
            async with (
                asyncio.timeout(self._settings.build_timeout),
                self._docker.images.build(
                    context.stream(),
                    tag=tag,
                    dockerfile="Dockerfile",
                    labels=managed_labels(),
                    nocache=nocache,
                ) as progress,
            ):
                async for record in progress:
                    if isinstance(record.get("aux"), dict) and record["aux"].get("ID"):
                        image_id = str(record["aux"]["ID"])
                    text = record.get("stream") or record.get("status")
                    if text:
                        tail.extend(line for line in str(text).splitlines() if line.strip())
        except ProgressError as exc:
            tail.append(exc.message)
            raise BuildFailed(f"the build failed: {exc.message}", logs=list(tail)) from exc
        except TimeoutError as exc:
            raise BuildFailed(
                f"the build took longer than {self._settings.build_timeout:.0f} s", logs=list(tail)
            ) from exc
        if image_id is None:
            raise BuildFailed("the engine finished without reporting an image id", logs=list(tail))
        return BuildResult(image_id=image_id, tag=tag, logs=list(tail))

    async def list(self) -> ImageList:
        return [
            ImageSummary(
                id=item["Id"],
                tags=[t for t in item.get("RepoTags") or [] if t != "<none>:<none>"],
                size=int(item.get("Size", 0)),
                created=int(item.get("Created", 0)),
                managed=is_managed(item.get("Labels")),
            )
            for item in await self._docker.images.list()
        ]

    async def remove(self, ref: str, principal: Principal, *, force: bool) -> RemoveImageResult:
        data = await self._docker.images.inspect(ref)
        if not is_managed((data.get("Config") or {}).get("Labels")) and not principal.is_admin:
            raise NotManaged(f"image {ref!r} was not built by this service; removing it needs an admin token")
        # Remove by the name given: removing by id would drop every tag of the image at once.
        return RemoveImageResult(removed=await self._docker.images.remove(ref, force=force))

    async def tag(self, *, source: str, repo: str, tag: str) -> str:
        await self._docker.images.tag(source, repo=repo, tag=tag)
        return f"{repo}:{tag}"

    async def prune(self, containers_deleted: StrList) -> PruneResult:
        """Remove unused images this service built (never anyone else's)."""
        result = await self._docker.images.prune(filters={**MANAGED_FILTER, "dangling": ["false"]})
        deleted = [
            entry.get("Deleted") or entry.get("Untagged", "") for entry in result.get("ImagesDeleted") or []
        ]
        return PruneResult(
            containers_deleted=containers_deleted,
            images_deleted=[d for d in deleted if d],
            space_reclaimed=int(result.get("SpaceReclaimed", 0)),
        )
