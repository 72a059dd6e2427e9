"""Which images a build makes the service's: the ones it committed, never ones that existed.

Built images carry no label by default, so a build can end on an image that was there before it:
every step cached from someone else's build, or a Dockerfile that is only `FROM base`. Claiming
such an image would let an operate token remove a base image. And a build that does not finish
leaves the steps it completed as untagged images (the engine's cache for a retry): recorded here,
`/system/gc` removes them once dangling.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from docker_manager.docker import Docker
from docker_manager.ownership import Kind, Ownership
from docker_manager.services.builds.output import BuildOutput

log = logging.getLogger(__name__)


class ImageClaims:
    def __init__(self, docker: Docker, ownership: Ownership) -> None:
        self._docker = docker
        self._ownership = ownership

    async def final_image(
        self,
        image_id: str,
        started: datetime,
        *,
        tag: str | None,
        app_id: str | None,
        task_id: str,
        created_by: str | None,
    ) -> None:
        """Record a finished build's image, unless it existed before the build (the tag is applied
        either way; such an image stays its owner's)."""
        if await self._made_since(image_id, started):
            await self._ownership.record(
                Kind.IMAGE, image_id, name=tag, app_id=app_id, task_id=task_id, created_by=created_by
            )
        else:
            log.info(
                "build %s ended on image %s that existed before it: not recorded as ours",
                task_id,
                image_id,
            )

    async def steps(
        self,
        output: BuildOutput,
        started: datetime,
        *,
        app_id: str | None,
        task_id: str,
        created_by: str | None,
    ) -> None:
        """Record the images an unfinished build's steps committed (not the ones from a cache)."""
        for step_image in dict.fromkeys(output.step_images):
            try:
                image = await self._docker.images.inspect(step_image)
                image_id = str(image["Id"])
                if self._ownership.owns(Kind.IMAGE, image_id):
                    continue
                if await self._made_since(image_id, started, image):
                    await self._ownership.record(
                        Kind.IMAGE, image_id, app_id=app_id, task_id=task_id, created_by=created_by
                    )
            except Exception as exc:  # a cleanup aid: never hides why the build ended
                log.warning("build %s: could not record step image %s: %s", task_id, step_image, exc)

    async def _made_since(
        self, image_id: str, started: datetime, image: dict[str, Any] | None = None
    ) -> bool:
        """Ours already, or committed since `started` (the engine and this service share a clock)."""
        if self._ownership.owns(Kind.IMAGE, image_id):
            return True
        image = image if image is not None else await self._docker.images.inspect(image_id)
        try:
            return datetime.fromisoformat(str(image.get("Created") or "")) >= started
        except ValueError:
            return False
