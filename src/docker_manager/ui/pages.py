"""The dashboard's pages (GET). Each reads through the same services as the API, with the
session's principal: what a token may not see or do is not shown or offered."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from docker_manager.auth import Scope
from docker_manager.errors import DockerManagerError
from docker_manager.schemas.tasks import TaskStatus
from docker_manager.services.tasks import redact_summary
from docker_manager.tasks import Status
from docker_manager.ui.deps import UiSession, services_of
from docker_manager.ui.render import page
from docker_manager.ui.session import COOKIE

router = APIRouter(prefix="/ui", include_in_schema=False)

TASK_TYPES = ("docker_build", "localrun", "rollback", "html_site_pipeline", "generic_task")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    if request.cookies.get(COOKIE) and await services_of(request).ui_sessions.read(request.cookies[COOKIE]):
        return RedirectResponse("/ui", status_code=303)
    return page(request, "login.html", None)


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, session: UiSession) -> Response:
    services = services_of(request)
    disk = await services.disk.report()
    filesystems = [
        {**fs.model_dump(), "low": fs.free_bytes < 2 * fs.min_free_bytes + fs.total_bytes // 20}
        for fs in disk.filesystems
    ]
    containers = await services.containers.list(all=False)
    apps = await services.releases.apps()
    latest = await services.tasks.page(
        status=None, task_type=None, app_id=None, limit=8, cursor=None, principal=session.principal
    )
    engine = services.docker.transport.engine_version or {}
    return page(
        request,
        "overview.html",
        session,
        filesystems=filesystems,
        engine_usage=disk.engine,
        engine_version=engine.get("Version", "unknown"),
        running_tasks=services.runner.running_count(),
        apps=len(apps),
        containers=len(containers),
        tasks=latest.tasks,
    )


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    session: UiSession,
    status: Annotated[Status | None, Query()] = None,
    task_type: Annotated[str | None, Query(alias="type", pattern=r"^[a-z_]{1,40}$")] = None,
    app_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    services = services_of(request)
    found = await services.tasks.page(
        status=status,
        task_type=task_type,
        app_id=app_id,
        limit=25,
        cursor=cursor,
        principal=session.principal,
    )
    filters = {"status": status.value if status else "", "type": task_type or "", "app_id": app_id or ""}
    return page(
        request,
        "tasks.html",
        session,
        tasks=found.tasks,
        next_cursor=found.next_cursor,
        filters=filters,
        statuses=[s.value for s in Status],
        task_types=TASK_TYPES,
    )


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, session: UiSession, task_id: str) -> Response:
    services = services_of(request)
    try:
        status: TaskStatus = await services.tasks.status(task_id, session.principal)
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    summary: dict[str, Any] = {}
    files: list[str] = []
    try:
        logs = await services.tasks.logs(task_id, session.principal, server=None, tail=1)
        summary = redact_summary(logs.build_metadata.get("summary") or {})
        files = logs.files_available
    except DockerManagerError:
        pass  # a task without a folder: no summary to show
    steps = [e for e in status.events if e.get("status") != "log"]
    return page(
        request,
        "task.html",
        session,
        task=status,
        steps=steps,
        live=status.status in ("queued", "running"),
        summary=json.dumps(summary, indent=2, default=str) if summary else "",
        files=files,
        can_cancel=session.principal.has(Scope.OPERATE),
    )


@router.get("/apps", response_class=HTMLResponse)
async def apps_page(request: Request, session: UiSession) -> Response:
    return page(request, "apps.html", session, apps=await services_of(request).releases.apps())


@router.get("/apps/{app_id}", response_class=HTMLResponse)
async def app_page(request: Request, session: UiSession, app_id: str) -> Response:
    services = services_of(request)
    try:
        app = await services.releases.app(app_id)
        releases = await services.releases.releases(app_id, limit=50)
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    return page(
        request,
        "app.html",
        session,
        app=app,
        releases=releases,
        can_rollback=session.principal.has(Scope.OPERATE),
    )


@router.get("/containers", response_class=HTMLResponse)
async def containers_page(request: Request, session: UiSession) -> Response:
    services = services_of(request)
    containers = await services.containers.list(all=True)
    return page(
        request,
        "containers.html",
        session,
        containers=containers,
        can_act=session.principal.has(Scope.OPERATE),
        is_admin=session.principal.is_admin,
        manageable={c.id for c in containers if services.containers.manageable(c.id)},
    )


@router.get("/containers/{container_id}", response_class=HTMLResponse)
async def container_page(
    request: Request,
    session: UiSession,
    container_id: str,
    path: Annotated[str, Query(max_length=4096)] = "/",
    file: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    """A container: its inspect summary, and for `exec` tokens its log tail and a read-only file
    browser (list a folder, view a text file, download)."""
    services = services_of(request)
    can_exec = session.principal.has(Scope.EXEC)
    try:
        info = await services.containers.owned(container_id, session.principal)
        logs = listing = content = None
        if can_exec:
            logs = await services.containers.logs(info.id, session.principal, tail=200, timestamps=False)
            listing = await services.container_files.list_dir(
                info.id, session.principal, path=path, limit=500, cursor=None
            )
            if file:
                read = await services.container_files.read_file(
                    info.id, session.principal, path=file, offset=0, length=64 << 10
                )
                content = read.data.decode("utf-8", "replace") if read.encoding == "utf-8" else None
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    parent = path.rstrip("/").rsplit("/", 1)[0] or "/"
    return page(
        request,
        "container.html",
        session,
        info=info,
        can_exec=can_exec,
        logs=logs,
        listing=listing,
        path=path,
        parent=parent,
        file=file,
        content=content,
    )


@router.get("/sites", response_class=HTMLResponse)
async def sites_page(request: Request, session: UiSession) -> Response:
    return page(
        request,
        "sites.html",
        session,
        sites=await services_of(request).sites.list_sites(),
        can_act=session.principal.has(Scope.OPERATE),
    )


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, session: UiSession) -> Response:
    if not session.principal.is_admin:
        return page(
            request,
            "error.html",
            session,
            status_code=403,
            failure="token management needs an admin token",
        )
    return page(
        request,
        "tokens.html",
        session,
        tokens=await services_of(request).tokens.list(),
        scopes=[s.value for s in Scope],
    )
