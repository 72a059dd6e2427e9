"""Container routes: run, list, inspect, lifecycle, logs, exec, stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from docker_manager.api.deps import ContainersDep, ExecAccess, OperateAccess, ReadAccess, ReleasesDep
from docker_manager.schemas.containers import (
    ActionResult,
    ContainerRefRequest,
    ContainerSummary,
    ExecRequest,
    ExecResult,
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
async def inspect(id_or_name: RefPath, containers: ContainersDep, who: ReadAccess) -> dict[str, Any]:
    """The engine's inspect document; environment values are hidden unless the token has `exec`."""
    return await containers.inspect(id_or_name.lstrip("/"), who)


@router.get("/containers/{id_or_name}/stats", response_model=StatsResult)
async def stats(id_or_name: RefPath, containers: ContainersDep, _: ReadAccess) -> StatsResult:
    return await containers.stats(id_or_name.lstrip("/"))


@router.post("/stop", response_model=ActionResult)
async def stop(body: StopRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "stop", timeout=body.timeout)


@router.post("/start", response_model=ActionResult)
async def start(body: ContainerRefRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "start")


@router.post("/restart", response_model=ActionResult)
async def restart(body: StopRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "restart", timeout=body.timeout)


@router.post("/pause", response_model=ActionResult)
async def pause(body: ContainerRefRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "pause")


@router.post("/unpause", response_model=ActionResult)
async def unpause(body: ContainerRefRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "unpause")


@router.post("/kill", response_model=ActionResult)
async def kill(body: KillRequest, containers: ContainersDep, who: OperateAccess) -> ActionResult:
    return await containers.act(body.id_or_name, who, "kill", signal=body.signal)


@router.post("/rm", response_model=RemoveResult)
async def remove(body: RemoveRequest, containers: ContainersDep, who: OperateAccess) -> RemoveResult:
    return await containers.remove(body.id_or_name, who, force=body.force, volumes=body.volumes)


@router.get("/logs/{id_or_name}", response_model=LogsResult)
async def logs(
    id_or_name: RefPath,
    containers: ContainersDep,
    who: ExecAccess,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
    timestamps: bool = False,
) -> LogsResult:
    """The last `tail` lines, stdout and stderr told apart in `lines`."""
    return await containers.logs(id_or_name.lstrip("/"), who, tail=tail, timestamps=timestamps)


@router.post("/exec", response_model=ExecResult)
async def exec_(body: ExecRequest, containers: ContainersDep, who: ExecAccess) -> ExecResult:
    """Run a command inside the container (never through a host shell); output and time capped."""
    return await containers.exec(
        body.id_or_name, who, cmd=body.cmd, workdir=body.workdir, timeout=body.timeout
    )
