"""Images: list, remove, tag, prune, and the rule that guards tags.

An image is this service's when it built, loaded or pulled it (the ownership record, not the
image's labels: any image can carry a label). A tag that points at an image this service did not
build (`nginx:alpine`, `postgres:16`) is someone else's: moving it onto another image, by
`/docker/tag`, a build's `tag` or an archive localrun loads, would make the next run of that name
start other code, so it needs an admin token.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.docker.images import deleted_ids
from docker_manager.auth import Principal
from docker_manager.errors import AppNotAllowed, Conflict, NotFound, NotManaged
from docker_manager.schemas.images import ImageSummary, PruneResult, RemoveImageResult
from docker_manager.services.ownership.record import Kind, Ownership

ImageList = list[ImageSummary]
StrList = list[str]
TagMap = dict[str, str]


def full_tag(tag: str) -> str:
    """`name` -> `name:latest`; a tag as the engine lists it."""
    last = tag.rsplit("/", 1)[-1]
    return tag if ":" in last or "@" in last else f"{tag}:latest"


class ImageService:
    def __init__(self, docker: Docker, ownership: Ownership) -> None:
        self._docker = docker
        self._ownership = ownership
        # Held by whatever loads archives whose tags must be checked against the state before.
        self.load_lock = asyncio.Lock()

    async def list(self) -> ImageList:
        return [
            ImageSummary(
                id=item["Id"],
                tags=[t for t in item.get("RepoTags") or [] if t != "<none>:<none>"],
                size=int(item.get("Size", 0)),
                created=int(item.get("Created", 0)),
                managed=self._ownership.owns(Kind.IMAGE, item["Id"]),
            )
            for item in await self._docker.images.list()
        ]

    async def remove(self, ref: str, principal: Principal, *, force: bool) -> RemoveImageResult:
        data = await self._docker.images.inspect(ref)
        if not self._ownership.owns(Kind.IMAGE, data["Id"]) and not principal.is_admin:
            raise NotManaged(f"image {ref!r} was not built by this service; removing it needs an admin token")
        # Remove by the name given: removing by id would drop every tag of the image at once.
        removed = await self._docker.images.remove(ref, force=force)
        if any(entry.get("Deleted") == data["Id"] for entry in removed):
            await self._ownership.forget(Kind.IMAGE, data["Id"])
        return RemoveImageResult(removed=removed)

    async def tag(self, *, source: str, repo: str, tag: str, principal: Principal) -> str:
        target = f"{repo}:{tag}"
        source_id = str((await self._docker.images.inspect(source))["Id"])
        await self.check_tag(target, principal, new_id=source_id)
        await self._docker.images.tag(source, repo=repo, tag=tag)
        return target

    async def check_tag(self, tag: str | None, principal: Principal, *, new_id: str | None = None) -> None:
        """Refuse to move `tag` when it points at an image this service did not build (non-admin),
        or at an image of an app a token limited to apps is not for."""
        if tag is None or principal.is_admin:
            return
        try:
            current = str((await self._docker.images.inspect(tag))["Id"])
        except NotFound:
            return
        if current == new_id:
            return
        owned = self._ownership.get(Kind.IMAGE, current)
        if owned is None:
            raise NotManaged(
                f"{tag} names an image this service did not build; moving that tag needs an admin token",
                field="tag",
            )
        if not principal.allows_app(owned.app_id):
            raise AppNotAllowed(f"{tag} names an image of an app this token is not for", field="tag")

    async def check_use(self, reference: str, principal: Principal) -> None:
        """A token limited to apps runs only images of its apps that are on this host (no pulls)."""
        if principal.apps is None:
            return
        try:
            image_id = str((await self._docker.images.inspect(reference))["Id"])
        except NotFound:
            raise AppNotAllowed(
                f"{reference} is not on this host, and a token limited to apps does not pull", field="image"
            ) from None
        owned = self._ownership.get(Kind.IMAGE, image_id)
        if owned is None or not principal.allows_app(owned.app_id):
            raise AppNotAllowed(f"{reference} is not an image of this token's apps", field="image")

    async def tag_map(self) -> TagMap:
        """Every tag on the host and the image it points at."""
        return {
            tag: item["Id"]
            for item in await self._docker.images.list()
            for tag in item.get("RepoTags") or []
            if tag != "<none>:<none>"
        }

    async def restore_foreign_tags(self, before: TagMap, principal: Principal) -> StrList:
        """After an archive was loaded: tags it moved away from images this service did not build go
        back where they were (for non-admin callers). Returns the tags put back."""
        if principal.is_admin:
            return []
        restored = []
        after = await self.tag_map()
        for tag, old_id in before.items():
            if after.get(tag) not in (None, old_id) and not self._ownership.owns(Kind.IMAGE, old_id):
                repo, _, name = tag.rpartition(":")
                await self._docker.images.tag(old_id, repo=repo, tag=name)
                restored.append(tag)
        return restored

    async def prune(self, containers_deleted: StrList) -> PruneResult:
        """Remove unused images this service built (by its record: never anyone else's)."""
        in_use = {item.get("ImageID") for item in await self._docker.containers.list(all=True)}
        deleted: StrList = []
        reclaimed = 0
        for item in await self._docker.images.list():  # built images carry no label by default
            image_id = item["Id"]
            if image_id in in_use or not self._ownership.owns(Kind.IMAGE, image_id):
                continue
            with contextlib.suppress(NotFound, Conflict):
                for tag in item.get("RepoTags") or []:
                    if tag != "<none>:<none>":
                        await self._docker.images.remove(tag)
                answer: list[Any] = []
                with contextlib.suppress(NotFound):
                    answer = await self._docker.images.remove(image_id)
                await self._ownership.forget(Kind.IMAGE, image_id)
                for parent in deleted_ids(answer) - {image_id}:
                    await self._ownership.forget(Kind.IMAGE, parent)  # its untagged parents went too
                deleted.append(image_id)
                reclaimed += int(item.get("Size", 0))
        return PruneResult(
            containers_deleted=containers_deleted, images_deleted=deleted, space_reclaimed=reclaimed
        )
