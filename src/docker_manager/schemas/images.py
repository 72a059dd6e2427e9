"""Bodies and answers of the image routes."""

from __future__ import annotations

from pydantic import Field

from docker_manager.schemas.common import ImageRef, ImageTag, RepoName, ResponseModel, StrictModel, TagName


class BuildRequest(StrictModel):
    """`POST /docker/build`: build a context folder that lies inside `DM_CONTEXT_ROOTS`."""

    path: str = Field(".", max_length=4096, description="Context folder, relative to the first context root.")
    tag: ImageTag | None = None
    nocache: bool = False


class BuildResult(ResponseModel):
    status: str = "ok"
    image_id: str
    tag: str | None
    logs: list[str] = Field(description="The last lines of the build output.")


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
