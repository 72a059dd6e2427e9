"""Bodies and answers of the image routes."""

from __future__ import annotations

from docker_manager.schemas.common import (
    ImageRef,
    RepoName,
    ResponseModel,
    StrictModel,
    TagName,
)


class ImageSummary(ResponseModel):
    id: str
    tags: list[str]
    size: int
    created: int
    managed: bool


class RemoveImageRequest(StrictModel):
    id_or_name: ImageRef
    force: bool = False


class RemoveImageResult(ResponseModel):
    removed: list[dict[str, str]]


class TagRequest(StrictModel):
    source: ImageRef
    repo: RepoName
    tag: TagName = "latest"


class TagResult(ResponseModel):
    tagged: str


class PruneResult(ResponseModel):
    containers_deleted: list[str]
    images_deleted: list[str]
    space_reclaimed: int
