"""Images: `/docker/images`, `/docker/rmi`, `/docker/tag`, `/docker/prune`."""

from __future__ import annotations

from fastapi import APIRouter

from docker_manager.api.deps import (
    ContainersDep,
    ImagesDep,
    OperateAccess,
    ReadAccess,
)
from docker_manager.schemas.images import (
    ImageSummary,
    PruneResult,
    RemoveImageRequest,
    RemoveImageResult,
    TagRequest,
    TagResult,
)

router = APIRouter(prefix="/docker", tags=["images"])


@router.get("/images", response_model=list[ImageSummary])
async def list_images(images: ImagesDep, _: ReadAccess) -> list[ImageSummary]:
    return await images.list()


@router.post("/rmi", response_model=RemoveImageResult)
async def remove_image(body: RemoveImageRequest, images: ImagesDep, who: OperateAccess) -> RemoveImageResult:
    return await images.remove(body.id_or_name, who, force=body.force)


@router.post("/tag", response_model=TagResult)
async def tag_image(body: TagRequest, images: ImagesDep, who: OperateAccess) -> TagResult:
    """Tag an image; moving a tag off an image this service did not build needs admin."""
    return TagResult(tagged=await images.tag(source=body.source, repo=body.repo, tag=body.tag, principal=who))


@router.post("/prune", response_model=PruneResult)
async def prune(images: ImagesDep, containers: ContainersDep, _: OperateAccess) -> PruneResult:
    """Remove stopped containers and unused images that this service created; nothing else."""
    return await images.prune(await containers.prune())
