"""Which images a build makes the service's: the ones its own steps committed, never others.

Built images carry no label by default, so a build can end on an image that was there before it:
every step cached from someone else's build, or a Dockerfile that is only `FROM base`. Claiming
such an image would let an operate token remove or retag it. What a build committed is read from
its output, which a RUN step can also write to: an image is claimed only when its step ran here
(not FROM, not `Using cache`), its id begins with the id the output printed, it is untagged (for
steps), it was created during the build, and, for steps, its parent is the previous step's image.

A build that does not finish leaves the steps it completed as untagged images (the engine's cache
for a retry): recorded here, `/system/gc` removes them once dangling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.services.builds.output import BuildOutput
from docker_manager.services.ownership.record import Kind, Ownership

log = logging.getLogger(__name__)

STEPS_TIMEOUT = 30.0  # the step clean-up runs shielded from cancellation: bounded in time


class ImageClaims:
    def __init__(self, docker: Docker, ownership: Ownership) -> None:
        self._docker = docker
        self._ownership = ownership

    async def final_image(
        self,
        output: BuildOutput,
        started: datetime,
        *,
        tag: str | None,
        app_id: str | None,
        task_id: str,
        created_by: str | None,
    ) -> bool:
        """Record a finished build's image when it is the service's (already, or committed by
        this build's last step). False when the build ended on an image that existed before it."""
        assert output.image_id is not None
        image_id = output.image_id
        if not self._ownership.owns(Kind.IMAGE, image_id):
            if not output.last_step_ran:
                return False
            if not _created_since(await self._docker.images.inspect(image_id), started):
                return False
        await self._ownership.record(
            Kind.IMAGE, image_id, name=tag, app_id=app_id, task_id=task_id, created_by=created_by
        )
        return True

    async def steps(
        self,
        output: BuildOutput,
        started: datetime,
        *,
        app_id: str | None,
        task_id: str,
        created_by: str | None,
    ) -> None:
        """Record the images an unfinished build's steps committed."""

        async def record(image_id: str) -> None:
            await self._ownership.record(
                Kind.IMAGE, image_id, app_id=app_id, task_id=task_id, created_by=created_by
            )

        try:
            async with asyncio.timeout(STEPS_TIMEOUT):
                await self._claim_steps(output, started, record)
        except Exception as exc:  # a cleanup aid: never hides why the build ended
            log.warning("build %s: could not record its step images: %s", task_id, exc)

    async def _claim_steps(
        self, output: BuildOutput, started: datetime, record: Callable[[str], Awaitable[None]]
    ) -> None:
        previous: str | None = None  # the chain starts at the FROM image
        for step in output.step_images:
            image = await self._inspect(step.short_id)
            if image is None or (previous is not None and image.get("Parent") != previous):
                continue  # not this build's chain: printed by a RUN step, or gone
            previous = str(image["Id"])
            if not step.ran or image.get("RepoTags") or self._ownership.owns(Kind.IMAGE, previous):
                continue
            if _created_since(image, started):
                await record(previous)

    async def _inspect(self, short_id: str) -> dict[str, Any] | None:
        """The image with this id; never one that merely has a tag spelled like it."""
        try:
            image = await self._docker.images.inspect(f"sha256:{short_id}")
        except Exception:
            return None
        return image if str(image.get("Id", "")).startswith(f"sha256:{short_id}") else None


def _created_since(image: dict[str, Any], started: datetime) -> bool:
    """Committed since `started` (the engine and this service share a host clock)."""
    try:
        return datetime.fromisoformat(str(image.get("Created") or "")) >= started
    except ValueError:
        return False
