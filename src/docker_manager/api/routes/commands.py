"""Host commands: `/tasks/run-stream` (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from docker_manager.api.deps import AdminAccess, CommandsDep
from docker_manager.api.streaming import json_document, live, wanted_stream
from docker_manager.schemas.commands import RunStreamRequest, RunStreamResult

router = APIRouter(tags=["commands"])


@router.post(
    "/tasks/run-stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON document when the command has ended (the original's answer); "
            "the live stream with `Accept: application/x-ndjson` or `text/event-stream` or `?format=`.",
            "content": {
                "application/json": {"schema": RunStreamResult.model_json_schema()},
                "application/x-ndjson": {},
                "text/event-stream": {},
            },
        }
    },
)
async def run_stream(
    body: RunStreamRequest,
    request: Request,
    commands: CommandsDep,
    _: AdminAccess,
    format: Literal["ndjson", "sse", "json"] | None = None,
) -> StreamingResponse:
    """Run a host command as a task (a string `cmd` through `/bin/sh -c`, as the original did).

    By default the answer is the original's document, sent when the command ends:
    `{status: "completed", exit_code: "<string>", task_id, task_status, ...}`. Asked for a stream,
    it is NDJSON (or SSE): a first line with the task id and argv, the output lines (`stream`
    stdout|stderr, `line`), then `{status, exit_code, signal}`. Closing the connection stops the
    command either way.
    """
    # The command's own answer: no stream slot (the task queue bounds these: 429 queue_full).
    record = await commands.start(
        cmd=body.cmd, cwd=body.cwd, env=body.env, task_id=body.task_id, timeout=body.timeout
    )
    kind = wanted_stream(request, format)
    if kind is None:
        return json_document(commands.document(record.id), None)
    argv = commands.argv(body.cmd)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        yield {"task_id": record.id, "status": "started", "argv": argv}
        async for item in commands.stream(record.id):
            yield item

    return live(lines(), kind, None)
