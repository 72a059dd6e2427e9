"""Builds: `/docker/build`, `/docker/build-stream`, `/docker/build/start`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import (
    BuildsDep,
    OperateAccess,
)
from docker_manager.api.streaming import json_document, live, wanted_stream
from docker_manager.schemas.builds import (
    BuildRequest,
    BuildResult,
    BuildStartRequest,
    BuildStreamRequest,
    BuildStreamResult,
    TaskStarted,
)
from docker_manager.services.builds import BuildSource

router = APIRouter(prefix="/docker", tags=["images"])


def _source(body: BuildStreamRequest | BuildStartRequest, *, tag: str | None, export: bool) -> BuildSource:
    return BuildSource(
        context_path=body.context_path,
        tag=tag,
        dockerfile=body.dockerfile,
        dockerfile_content=body.dockerfile_content,
        dockerfile_name=body.dockerfile_name,
        build_args=body.build_args,
        app_id=body.app_id,
        nocache=body.nocache,
        export=export,
        cleanup=body.cleanup,
    )


@router.post("/build", response_model=BuildResult)
async def build(body: BuildRequest, builds: BuildsDep, who: OperateAccess) -> BuildResult:
    """Build a context folder and wait for the result. A failing step answers 422 `build_failed`.

    It runs as a build task like the others (same queue, same files under `builds/{task_id}`).
    """
    plan = await builds.plan(BuildSource(context_path=body.path, tag=body.tag, nocache=body.nocache))
    result = await builds.build_and_wait(plan, who)
    return BuildResult(
        image_id=result["image_id"],
        tag=result.get("tag"),
        logs=result.get("logs", []),
        task_id=result["task_id"],
    )


@router.post(
    "/build-stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON document when the build has ended (the original's answer); the "
            "live stream with `Accept: application/x-ndjson` or `text/event-stream` or `?format=`.",
            "content": {
                "application/json": {"schema": BuildStreamResult.model_json_schema()},
                "application/x-ndjson": {},
                "text/event-stream": {},
            },
        }
    },
)
async def build_stream(
    body: BuildStreamRequest,
    request: Request,
    builds: BuildsDep,
    who: OperateAccess,
    format: Literal["ndjson", "sse", "json"] | None = None,
) -> StreamingResponse:
    """Build as a task. By default the answer is the original's document, sent when the build
    ends: `{status: "ok"|"error", image_id, tag, dockerfile_used, inline, logs, task_id, ...}`.

    Asked for a stream, it is NDJSON (or SSE): a first line with the task id, one line per output
    line or step (each with `dockerfile` and `inline`), then the same summary (`summary: true`).
    If the client goes away, the build goes on.
    """
    plan = await builds.plan(_source(body, tag=body.tag, export=False))
    # The build's own answer: no stream slot (the task queue bounds these: 429 queue_full).
    record = await builds.start(plan, who, task_id=body.task_id)
    kind = wanted_stream(request, format)
    if kind is None:
        return json_document(builds.summary_when_done(record.id, plan), None)
    return live(builds.stream_view(record.id, plan), kind, None)


@router.post("/build/start", response_model=TaskStarted)
async def build_start(body: BuildStartRequest, builds: BuildsDep, who: OperateAccess) -> TaskStarted:
    """Start a build task: build, export the image with its tag as `{tag}.tar.lz4` in the task folder,
    then (when an SFTP server is configured or given) upload the folder to `{remote_dir}/{task_id}/`.
    Follow it with `/tasks/{task_id}/events`, `/tasks/status/{task_id}` or `/tasks/logs/{task_id}`.
    """
    target = builds.sftp_target(
        host=body.sftp_host,
        port=body.sftp_port,
        username=body.sftp_username,
        password=body.sftp_password.get_secret_value() if body.sftp_password else None,
    )
    plan = await builds.plan(_source(body, tag=body.tag, export=True))
    plan.upload = target
    record = await builds.start(plan, who, task_id=body.task_id)
    return TaskStarted(task_id=record.id)
