"""The dashboard's containers: the list with start/stop/restart/remove, and a container's page with
its stats, its log (tail, followed by polling a fragment) and a read-only file browser. Logs and files
need the `exec` scope, as in the API."""

from __future__ import annotations

import shlex
from html import escape
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError

from docker_manager.api.deps import runtime_of
from docker_manager.auth import Scope
from docker_manager.errors import DockerManagerError, InsufficientScope
from docker_manager.schemas.containers import ExecRequest, LogsResult, StatsResult
from docker_manager.ui.deps import ContainerRef, FormSession, UiSession, back
from docker_manager.ui.render import SECURITY_HEADERS, page
from docker_manager.ui.session import Session

router = APIRouter(prefix="/ui", include_in_schema=False)

ACTIONS = ("start", "stop", "restart", "remove")
LOG_TAIL = 200
FilePath = Annotated[str, Query(max_length=4096)]


def _require(session: Session, scope: Scope) -> None:
    if not session.principal.has(scope):
        raise InsufficientScope(f"this needs a token with the {scope.value!r} scope")


@router.get("/containers", response_class=HTMLResponse)
async def containers_page(request: Request, session: UiSession) -> Response:
    runtime = runtime_of(request)
    containers = await runtime.containers.list(all=True)
    return page(
        request,
        "containers.html",
        session,
        containers=containers,
        can_act=session.principal.has(Scope.OPERATE),
        is_admin=session.principal.is_admin,
        manageable={c.id for c in containers if runtime.containers.manageable(c.id)},
    )


# Before the `{action}` route: the first match wins.
@router.post("/containers/{container_id}/exec", response_class=HTMLResponse)
async def exec_in_container(
    request: Request,
    session: FormSession,
    container_id: ContainerRef,
    cmd: Annotated[str, Form(max_length=4096)],
    workdir: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    """Run a command in the container (`exec` tokens): split into an argv list as a shell would
    quote it, but never run through a shell on the host; output and time capped as in the API."""
    path = f"/ui/containers/{container_id}"
    try:
        _require(session, Scope.EXEC)
        body = ExecRequest(id_or_name=container_id, cmd=shlex.split(cmd), workdir=workdir.strip() or None)
        result = await runtime_of(request).containers.exec(
            body.id_or_name, session.principal, cmd=list(body.cmd), workdir=body.workdir, timeout=None
        )
    except DockerManagerError as exc:
        return back(request, path, error=exc)
    except ValidationError as exc:  # an empty command, a relative or hostile working directory
        if any(problem["loc"][:1] == ("workdir",) for problem in exc.errors()):
            return back(request, path, error="the working directory must be an absolute path (workdir)")
        return back(request, path, error=f"not a command: {exc.errors()[0]['msg'][:200]}")
    except ValueError as exc:  # unbalanced quotes
        return back(request, path, error=f"not a command: {str(exc).splitlines()[0][:200]}")
    return page(request, "exec.html", session, container_id=container_id, cmd=cmd, result=result)


@router.post("/containers/{container_id}/{action}")
async def container_action(
    request: Request, session: FormSession, container_id: ContainerRef, action: str
) -> Response:
    containers = runtime_of(request).containers
    if action not in ACTIONS:
        return back(request, "/ui/containers", error="no such action on a container")
    try:
        _require(session, Scope.OPERATE)
        if action == "remove":
            await containers.remove(container_id, session.principal, force=True, volumes=False)
        else:
            await containers.act(container_id, session.principal, action)
    except DockerManagerError as exc:
        return back(request, "/ui/containers", error=exc)
    return back(request, "/ui/containers", notice=f"{action}: done")


@router.get("/containers/{container_id}", response_class=HTMLResponse)
async def container_page(
    request: Request,
    session: UiSession,
    container_id: ContainerRef,
    path: FilePath = "/",
    file: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    """Inspect summary and stats; for `exec` tokens the log tail and the file browser."""
    runtime = runtime_of(request)
    can_exec = session.principal.has(Scope.EXEC)
    stats: StatsResult | None = None
    try:
        info = await runtime.containers.owned(container_id, session.principal)
        if info.status == "running":
            stats = await runtime.containers.stats(info.id)
        logs = listing = content = None
        if can_exec:
            logs = await runtime.containers.logs(info.id, session.principal, tail=LOG_TAIL, timestamps=False)
            listing = await runtime.container_files.list_dir(
                info.id, session.principal, path=path, limit=500, cursor=None
            )
            if file:
                read = await runtime.container_files.read_file(
                    info.id, session.principal, path=file, offset=0, length=64 << 10
                )
                content = read.data.decode("utf-8", "replace") if read.encoding == "utf-8" else None
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    return page(
        request,
        "container.html",
        session,
        info=info,
        stats=stats,
        can_exec=can_exec,
        logs=logs,
        listing=listing,
        path=path,
        parent=path.rstrip("/").rsplit("/", 1)[0] or "/",
        file=file,
        content=content,
    )


def _log_lines(logs: LogsResult) -> str:
    return "".join(
        f'<div class="line {escape(line.stream)}">{escape(line.text)}</div>' for line in logs.lines
    )


@router.get("/containers/{container_id}/log", response_class=HTMLResponse)
async def container_log(request: Request, session: UiSession, container_id: ContainerRef) -> Response:
    """The log's last lines as an HTML fragment: the page polls it while "Follow" is on."""
    try:
        _require(session, Scope.EXEC)
        logs = await runtime_of(request).containers.logs(
            container_id, session.principal, tail=LOG_TAIL, timestamps=False
        )
    except DockerManagerError as exc:
        return HTMLResponse(escape(exc.detail), status_code=exc.status_code, headers=SECURITY_HEADERS)
    return HTMLResponse(_log_lines(logs), headers=SECURITY_HEADERS)


@router.get("/containers/{container_id}/download")
async def download(
    request: Request, session: UiSession, container_id: ContainerRef, file: FilePath
) -> Response:
    """A file from inside the container, streamed (no size cap, flat memory)."""
    try:
        _require(session, Scope.EXEC)
        size, body = await runtime_of(request).container_files.stream_file(
            container_id, session.principal, path=file, offset=0, length=None
        )
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    name = file.rstrip("/").rsplit("/", 1)[-1] or "file"
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in name)[:200] or "file"
    headers = {
        **SECURITY_HEADERS,
        "Content-Length": str(size),
        "Content-Disposition": f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name[:200])}",
    }
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)
