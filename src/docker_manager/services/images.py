"""Images: synchronous build of a context folder, list, remove, tag, prune."""

from __future__ import annotations

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import Docker
from docker_manager.errors import NotManaged
from docker_manager.labels import MANAGED_FILTER, is_managed
from docker_manager.schemas.images import ImageSummary, PruneResult, RemoveImageResult

LOG_TAIL = 50


ImageList = list[ImageSummary]
StrList = list[str]


class ImageService:
    def __init__(self, docker: Docker, settings: Settings) -> None:
        self._docker = docker
        self._settings = settings

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
