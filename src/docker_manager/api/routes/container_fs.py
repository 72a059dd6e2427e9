"""`/docker/container/fs/{list,read,write,mkdir,delete}`: a file browser for containers (scope exec)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import ContainerFilesDep, ExecAccess
from docker_manager.schemas.container_fs import (
    FsDeleteRequest,
    FsDeleteResult,
    FsListRequest,
    FsListResult,
    FsMkdirRequest,
    FsMkdirResult,
    FsReadRequest,
    FsReadResult,
    FsWriteRequest,
    FsWriteResult,
)

router = APIRouter(prefix="/docker/container/fs", tags=["container files"])


@router.post("/list", response_model=FsListResult)
async def list_dir(body: FsListRequest, files: ContainerFilesDep, who: ExecAccess) -> FsListResult:
    """The entries of one directory (with `recursive`, of everything below it), sorted by name,
    `limit` per page; `type` is dir or file as in the original, `kind` tells symlinks and the rest."""
    return await files.list_dir(
        body.id_or_name, who, path=body.path, limit=body.limit, cursor=body.cursor, recursive=body.recursive
    )


@router.post(
    "/read",
    response_model=FsReadResult,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def read_file(
    body: FsReadRequest, request: Request, files: ContainerFilesDep, who: ExecAccess
) -> Response:
    """JSON: text when the bytes are UTF-8, else base64; above DM_FS_MAX_BYTES 413 (read a range).

    With `Accept: application/octet-stream` the raw bytes are streamed instead, without the cap.
    """
    ref, path, offset, length = body.id_or_name, body.path, body.offset, body.length
    if "application/octet-stream" in request.headers.get("accept", ""):
        size, data = await files.stream_file(ref, who, path=path, offset=offset, length=length)
        return StreamingResponse(
            data, media_type="application/octet-stream", headers={"Content-Length": str(size)}
        )
    content = await files.read_file(ref, who, path=path, offset=offset, length=length)
    # Rendered directly: a 10 MB file would otherwise be copied several times over by validation.
    return Response(content.as_json(), media_type="application/json")


@router.post("/write", response_model=FsWriteResult)
async def write_file(body: FsWriteRequest, files: ContainerFilesDep, who: ExecAccess) -> FsWriteResult:
    return await files.write_file(
        body.id_or_name,
        who,
        path=body.path,
        content=body.content,
        is_base64=body.base64,
        mode=body.mode,
        parents=body.parents,
    )


@router.post("/mkdir", response_model=FsMkdirResult)
async def make_dir(body: FsMkdirRequest, files: ContainerFilesDep, who: ExecAccess) -> FsMkdirResult:
    return await files.make_dir(body.id_or_name, who, path=body.path, parents=body.parents)


@router.post("/delete", response_model=FsDeleteResult)
async def delete_path(body: FsDeleteRequest, files: ContainerFilesDep, who: ExecAccess) -> FsDeleteResult:
    """Refuses /, /proc, /sys, /dev, mount points and their parents, and paths in host bind mounts."""
    return await files.delete_path(body.id_or_name, who, path=body.path, recursive=body.recursive)
