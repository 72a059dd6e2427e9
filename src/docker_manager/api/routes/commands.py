"""`/tasks/run-stream` (admin) and the html-site pipeline (operate)."""

from __future__ import annotations

import shlex
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import AdminAccess, CommandsDep, OperateAccess, PipelineDep
from docker_manager.api.streaming import ndjson
from docker_manager.errors import InvalidInput
from docker_manager.schemas.commands import (
    PipelineRequest,
    PipelineStarted,
    PipelineSummary,
    RunStreamRequest,
)

router = APIRouter(tags=["commands"])


def _argv(cmd: str | list[str]) -> list[str]:
    try:
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    except ValueError as exc:
        raise InvalidInput(f"cannot split cmd: {exc}", field="cmd") from exc
    if not argv or any("\x00" in arg for arg in argv) or len(argv) > 4096:
        raise InvalidInput("cmd is empty, has a NUL byte or too many arguments", field="cmd")
    return argv


@router.post(
    "/tasks/run-stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def run_stream(body: RunStreamRequest, commands: CommandsDep, _: AdminAccess) -> StreamingResponse:
    """Run a host command as a task and stream its output lines as NDJSON (`stream` stdout|stderr,
    `line`), then `{status, exit_code, signal}`. Closing the connection stops the command.
    """
    argv = _argv(body.cmd)
    record = await commands.start(
        cmd=body.cmd, argv=argv, cwd=body.cwd, env=body.env, task_id=body.task_id, timeout=body.timeout
    )

    async def lines() -> Any:
        yield {"task_id": record.id, "status": "started", "argv": argv}
        async for item in commands.stream(record.id):
            yield item

    return ndjson(lines())


def _plan(body: PipelineRequest, pipeline: Any) -> Any:
    return pipeline.plan(
        repo_url=body.repo_url,
        dockerhub_repo=body.dockerhub_repo,
        tag=body.tag,
        host_port=body.host_port,
        username=body.dockerhub_username,
        password=body.dockerhub_password.get_secret_value() if body.dockerhub_password else None,
    )


@router.post("/pipeline/html-site", response_model=PipelineSummary)
async def html_site(body: PipelineRequest, pipeline: PipelineDep, who: OperateAccess) -> dict[str, Any]:
    """Clone → build → login → push → pull → run → probe, waiting for the end; returns the summary."""
    record = await pipeline.start(_plan(body, pipeline), who, wait=True)
    return {**(record.result or {}), "task_id": record.id}


@router.post("/pipeline/html-site/start", response_model=PipelineStarted)
async def html_site_start(
    body: PipelineRequest, pipeline: PipelineDep, who: OperateAccess
) -> PipelineStarted:
    """The same pipeline as a task: `{task_id, status: "started"}` at once; follow `/tasks/...`."""
    record = await pipeline.start(_plan(body, pipeline), who, wait=False)
    return PipelineStarted(task_id=record.id)
