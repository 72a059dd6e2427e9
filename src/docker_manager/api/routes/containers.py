"""Container routes: run, list, inspect, lifecycle, logs, exec, stats; and `files`: a file browser
inside containers, `/docker/container/fs/{list,read,write,mkdir,delete}` (scope exec)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import (
    AppExecAccess,
    AppOperateAccess,
    AppReadAccess,
    ContainerFilesDep,
    ContainersDep,
    OperateAccess,
    ReadAccess,
    ReleasesDep,
)
from docker_manager.schemas.containers import (
    ActionResult,
    ContainerRefRequest,
    ContainerSummary,
    ExecRequest,
    ExecResult,
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
    KillRequest,
    LogsResult,
    RemoveRequest,
    RemoveResult,
    RunExtendedRequest,
    RunRequest,
    RunResult,
    StatsResult,
    StopRequest,
)
from docker_manager.services.containers import ContainerSpec

router = APIRouter(prefix="/docker", tags=["containers"])

RefPath = Annotated[str, Path(pattern=r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$", description="Id or name.")]


@router.post("/run", response_model=RunResult)
async def run(body: RunRequest, releases: ReleasesDep, who: OperateAccess) -> RunResult:
    """Run a container; named `{app_id}-{task_id}` when both are given and `name` is not. With an
    `app_id`, a running container is recorded as the app's next release."""
    return await releases.run_container(ContainerSpec.from_run(body), who, detach=body.detach)


@router.post("/run-extended", response_model=RunResult)
async def run_extended(body: RunExtendedRequest, releases: ReleasesDep, who: OperateAccess) -> RunResult:
    return await releases.run_container(ContainerSpec.from_run_extended(body), who, detach=body.detach)


@router.get("/containers", response_model=list[ContainerSummary])
async def list_containers(
    containers: ContainersDep,
    _: ReadAccess,
    all: bool = False,
    managed: Annotated[bool, Query(description="Only containers this service created.")] = False,
) -> list[ContainerSummary]:
    return await containers.list(all=all, managed_only=managed)


@router.get("/containers/{id_or_name}")
async def inspect(id_or_name: RefPath, containers: ContainersDep, who: AppReadAccess) -> dict[str, Any]:
    """The engine's inspect document; environment values are hidden unless the token has `exec`."""
    return await containers.inspect(id_or_name.lstrip("/"), who)


@router.get("/containers/{id_or_name}/stats", response_model=StatsResult)
async def stats(id_or_name: RefPath, containers: ContainersDep, _: ReadAccess) -> StatsResult:
    return await containers.stats(id_or_name.lstrip("/"))


@router.post("/stop", response_model=ActionResult)
async def stop(body: StopRequest, containers: ContainersDep, who: AppOperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "stop", timeout=body.timeout)


@router.post("/start", response_model=ActionResult)
async def start(body: ContainerRefRequest, containers: ContainersDep, who: AppOperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "start")


@router.post("/restart", response_model=ActionResult)
async def restart(body: StopRequest, containers: ContainersDep, who: AppOperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "restart", timeout=body.timeout)


@router.post("/pause", response_model=ActionResult)
async def pause(body: ContainerRefRequest, containers: ContainersDep, who: AppOperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "pause")


@router.post("/unpause", response_model=ActionResult)
async def unpause(
    body: ContainerRefRequest, containers: ContainersDep, who: AppOperateAccess
) -> ActionResult:
    return await containers.act(body.id_or_name, who, "unpause")


@router.post("/kill", response_model=ActionResult)
async def kill(body: KillRequest, containers: ContainersDep, who: AppOperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "kill", signal=body.signal)


@router.post("/rm", response_model=RemoveResult)
async def remove(body: RemoveRequest, containers: ContainersDep, who: AppOperateAccess) -> RemoveResult:
    return await containers.remove(body.id_or_name, who, force=body.force, volumes=body.volumes)


@router.get("/logs/{id_or_name}", response_model=LogsResult)
async def logs(
    id_or_name: RefPath,
    containers: ContainersDep,
    who: AppExecAccess,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
    timestamps: bool = False,
) -> LogsResult:
    """The last `tail` lines, stdout and stderr told apart in `lines`."""
    return await containers.logs(id_or_name.lstrip("/"), who, tail=tail, timestamps=timestamps)


@router.post("/exec", response_model=ExecResult)
async def exec_(body: ExecRequest, containers: ContainersDep, who: AppExecAccess) -> ExecResult:
    """Run a command inside the container (never through a host shell); output and time capped."""
    return await containers.exec(
        body.id_or_name, who, cmd=body.cmd, workdir=body.workdir, timeout=body.timeout
    )


# The files inside containers (scope exec), a router of its own (its prefix and tag).
files = APIRouter(prefix="/docker/container/fs", tags=["container files"])


@files.post("/list", response_model=FsListResult)
async def list_dir(body: FsListRequest, files: ContainerFilesDep, who: AppExecAccess) -> FsListResult:
    """The entries of one directory (with `recursive`, of everything below it), sorted by name,
    `limit` per page; `type` is dir or file as in the original, `kind` tells symlinks and the rest."""
    return await files.list_dir(
        body.id_or_name, who, path=body.path, limit=body.limit, cursor=body.cursor, recursive=body.recursive
    )


@files.post(
    "/read",
    response_model=FsReadResult,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def read_file(
    body: FsReadRequest, request: Request, files: ContainerFilesDep, who: AppExecAccess
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


@files.post("/write", response_model=FsWriteResult)
async def write_file(body: FsWriteRequest, files: ContainerFilesDep, who: AppExecAccess) -> FsWriteResult:
    return await files.write_file(
        body.id_or_name,
        who,
        path=body.path,
        content=body.content,
        is_base64=body.base64,
        mode=body.mode,
        parents=body.parents,
    )


@files.post("/mkdir", response_model=FsMkdirResult)
async def make_dir(body: FsMkdirRequest, files: ContainerFilesDep, who: AppExecAccess) -> FsMkdirResult:
    return await files.make_dir(body.id_or_name, who, path=body.path, parents=body.parents)


@files.post("/delete", response_model=FsDeleteResult)
async def delete_path(body: FsDeleteRequest, files: ContainerFilesDep, who: AppExecAccess) -> FsDeleteResult:
    """Refuses /, /proc, /sys, /dev, mount points and their parents, and paths in host bind mounts."""
    return await files.delete_path(body.id_or_name, who, path=body.path, recursive=body.recursive)
