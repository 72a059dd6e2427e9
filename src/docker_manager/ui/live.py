"""The dashboard's live parts: a task's log and steps over SSE (as HTML fragments for htmx), and the
host's last ten minutes for the charts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from docker_manager.api.deps import runtime_of
from docker_manager.api.errors import error_response
from docker_manager.api.streaming import NO_BUFFERING, streaming
from docker_manager.errors import DockerManagerError
from docker_manager.services.tasks.service import EventView
from docker_manager.ui.deps import TaskRef, UiSession
from docker_manager.ui.render import SECURITY_HEADERS

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/usage.json")
async def usage_history(request: Request, _session: UiSession) -> Response:
    """Columns for uPlot: unix seconds, CPU %, memory %, disk %, network bytes/s in and out."""
    history = list(runtime_of(request).sampler.history)
    body = {
        "ts": [round(p.ts, 1) for p in history],
        "cpu": [round(p.cpu_percent, 1) for p in history],
        "memory": [round(p.memory_percent, 1) for p in history],
        "disk": [round(p.disk_percent, 1) for p in history],
        "recv": [round(p.net_recv_per_s) for p in history],
        "sent": [round(p.net_sent_per_s) for p in history],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _text(value: object) -> str:
    """Escaped for HTML, and on one line: a raw newline would end the SSE `data:` field."""
    return escape(str(value)).replace("\r", "&#13;").replace("\n", "&#10;")


def _fragment(view: EventView) -> tuple[str, str]:
    """The SSE event name and one line of HTML (text escaped) for an event."""
    data = view.data
    if view.kind == "log":
        lines = "".join(
            f'<div class="line {_text(line.get("stream", ""))}">{_text(line.get("text", ""))}</div>'
            for line in data.get("lines") or []
        )
        return "line", lines
    label = " ".join(str(part) for part in (data.get("stage") or "task", data.get("status")) if part)
    message = _text(data.get("message") or data.get("error") or "")
    status = _text(data.get("status"))
    item = f'<li class="step {status}" data-status="{status}"><b>{_text(label)}</b> {message}</li>'
    if view.kind == "end":
        return "end", item
    return "step", item


async def _sse(views: AsyncIterator[EventView | None]) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    async for view in views:
        if view is None:
            yield b": keep-alive\n\n"
            continue
        name, html = _fragment(view)
        # Both kinds go to their own element; `end` also closes the browser's EventSource.
        yield f"id: {view.seq}\nevent: {name}\ndata: {html}\n\n".encode()
        if name == "end":
            yield f"event: step\ndata: {html}\n\n".encode()


@router.get("/tasks/{task_id}/stream")
async def task_stream(
    request: Request,
    session: UiSession,
    task_id: TaskRef,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> Response:
    """Events after the page's last one (or the browser's Last-Event-ID after a reconnect)."""
    try:
        views = await runtime_of(request).tasks.events(
            task_id, session.principal, after=max(after, last_event_id or 0)
        )
        slot = request.app.state.streams.take(session.principal)
    except DockerManagerError as exc:
        return error_response(exc)
    headers: dict[str, Any] = {**NO_BUFFERING, **SECURITY_HEADERS}
    return streaming(_sse(views), "text/event-stream", slot, headers)
