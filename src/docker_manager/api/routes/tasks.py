"""Task routes: list, status, live events, cancel, and the per-task log files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from docker_manager.api.deps import AppOperateAccess, AppReadAccess, StreamsDep, TasksDep
from docker_manager.api.streaming import ndjson, sse, streaming, wanted_stream
from docker_manager.runner import Status
from docker_manager.schemas.tasks import TaskLogs, TaskPage, TaskStatus

router = APIRouter(prefix="/tasks", tags=["tasks"])
MAX_TAIL = 10_000

TaskIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


@router.get("", response_model=TaskPage)
async def list_tasks(
    tasks: TasksDep,
    who: AppReadAccess,
    status: Status | None = None,
    type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    app_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TaskPage:
    """Newest first, `limit` per page; pass `next_cursor` back as `cursor` for the next page."""
    return await tasks.page(
        status=status, task_type=type, app_id=app_id, limit=limit, cursor=cursor, principal=who
    )


@router.get("/status/{task_id}", response_model=TaskStatus)
async def task_status(task_id: TaskIdPath, tasks: TasksDep, who: AppReadAccess) -> Response:
    """A task's state and steps (a host command's: admin only)."""
    # The busiest route (callers poll it): encoded once, by the model itself, rather than checked
    # and encoded again by the framework.
    return Response(await tasks.status_json(task_id, who), media_type="application/json")


@router.post("/{task_id}/cancel", response_model=TaskStatus)
async def cancel_task(task_id: TaskIdPath, tasks: TasksDep, who: AppOperateAccess) -> TaskStatus:
    """Stop the work (the engine request, the process group) and clean up partial files."""
    return await tasks.cancel(task_id, who)


@router.get("/logs/{task_id}", response_model=TaskLogs)
async def task_logs(
    task_id: TaskIdPath,
    tasks: TasksDep,
    who: AppReadAccess,
    streams: StreamsDep,
    server: Literal["build", "runtime"] | None = None,
    tail: Annotated[int, Query(ge=0, le=10_000, description="0: as many as allowed (10,000).")] = 200,
) -> Response:
    """The last `tail` lines of build.log, build.jsonl, events.log and error.log, and the summary."""
    # Up to 16 MiB of lines: sent as they are read (a slow reader holds a block, not the answer).
    body = await tasks.logs_json(task_id, who, server=server, tail=tail or MAX_TAIL)
    return streaming(body, "application/json", streams.take(who), headers={})


@router.get(
    "/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}}}},
)
async def task_events(
    task_id: TaskIdPath,
    request: Request,
    tasks: TasksDep,
    who: AppReadAccess,
    streams: StreamsDep,
    after: Annotated[int, Query(ge=0, description="Only events with a larger sequence number.")] = 0,
    format: Literal["sse", "ndjson"] | None = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    """The task's events live, ending with the final one: SSE (`id` = sequence number; resume
    with `Last-Event-ID`) by default, NDJSON with `?format=ndjson` or `Accept: application/x-ndjson`.
    """
    views = await tasks.events(task_id, who, after=max(after, last_event_id or 0))  # 404/403 first
    slot = streams.take(who)
    if format == "ndjson" or (format is None and wanted_stream(request) == "ndjson"):

        async def as_dicts() -> AsyncIterator[dict[str, Any] | None]:
            async for view in views:
                yield None if view is None else view.data  # None: a keep-alive line

        return ndjson(as_dicts(), slot)

    async def as_sse() -> AsyncIterator[tuple[int, str, dict[str, Any]] | None]:
        async for view in views:
            yield None if view is None else (view.seq, view.kind, view.data)

    return sse(as_sse(), slot)
