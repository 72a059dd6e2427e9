"""The dashboard's pages (GET). Each reads through the same services as the API, with the
session's principal: what a token may not see or do is not shown or offered."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from docker_manager.api.deps import runtime_of
from docker_manager.auth import Scope
from docker_manager.errors import DockerManagerError, NotFound
from docker_manager.runner import Status
from docker_manager.schemas.containers import ContainerSummary
from docker_manager.schemas.tasks import TaskStatus
from docker_manager.services.tasks.service import redact_summary
from docker_manager.ui.deps import AppRef, TaskRef, UiSession
from docker_manager.ui.render import page
from docker_manager.ui.session import COOKIE

router = APIRouter(prefix="/ui", include_in_schema=False)

# The task folder's text files whose last lines the task page shows (key in `build_logs`, file).
FILE_TAILS = (("raw", "build.log"), ("events", "events.log"), ("error", "error.log"))
FILE_TAIL_LINES = 100
TASK_TYPES = ("docker_build", "localrun", "rollback", "html_site_pipeline", "generic_task")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    if request.cookies.get(COOKIE) and await runtime_of(request).ui_sessions.read(request.cookies[COOKIE]):
        return RedirectResponse("/ui", status_code=303)
    return page(request, "login.html", None)


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, session: UiSession) -> Response:
    runtime = runtime_of(request)
    disk = await runtime.disk.report()
    filesystems = [
        {**fs.model_dump(), "low": fs.free_bytes < 2 * fs.min_free_bytes + fs.total_bytes // 20}
        for fs in disk.filesystems
    ]
    containers = await runtime.containers.list(all=False)
    apps = await runtime.releases.apps()
    latest = await runtime.tasks.page(
        status=None, task_type=None, app_id=None, limit=8, cursor=None, principal=session.principal
    )
    engine = runtime.docker.transport.engine_version or {}
    return page(
        request,
        "overview.html",
        session,
        filesystems=filesystems,
        engine_usage=disk.engine,
        engine_version=engine.get("Version", "unknown"),
        running_tasks=runtime.runner.running_count(),
        apps=len(apps),
        containers=len(containers),
        tasks=latest.tasks,
        backups=await runtime.backups.status(),
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
    runtime = runtime_of(request)
    found = await runtime.tasks.page(
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
async def task_page(request: Request, session: UiSession, task_id: TaskRef) -> Response:
    runtime = runtime_of(request)
    try:
        status: TaskStatus = await runtime.tasks.status(task_id, session.principal)
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    summary: dict[str, Any] = {}
    files: list[str] = []
    logs_tail: dict[str, Any] = {}
    try:
        logs = await runtime.tasks.logs(task_id, session.principal, server=None, tail=FILE_TAIL_LINES)
        # (redacted for this token already; again here, in case the answer's shape changes)
        summary = redact_summary(
            logs.build_metadata.get("summary") or {}, with_command=session.principal.has(Scope.EXEC)
        )
        files = logs.files_available
        logs_tail = logs.build_logs
    except DockerManagerError:
        pass  # a task without a folder: no summary to show
    steps = [e for e in status.events if e.get("status") != "log"]
    tails = [
        (name, logs_tail.get(key) or [], logs_tail.get(f"{key}_bytes"))
        for key, name in FILE_TAILS
        if key in logs_tail
    ]
    return page(
        request,
        "task.html",
        session,
        task=status,
        steps=steps,
        live=status.status in ("queued", "running"),
        summary=json.dumps(summary, indent=2, default=str) if summary else "",
        files=files,
        tails=tails,
        can_cancel=session.principal.has(Scope.OPERATE),
    )


@router.get("/apps", response_class=HTMLResponse)
async def apps_page(request: Request, session: UiSession) -> Response:
    """Apps with releases; the other containers grouped by their `app_id`; the deploy form."""
    runtime = runtime_of(request)
    apps = await runtime.releases.apps()
    with_releases = {a.app_id for a in apps}
    groups: dict[str, list[ContainerSummary]] = {}
    for container in await runtime.containers.list(all=True):
        if container.app_id and container.app_id not in with_releases:
            groups.setdefault(container.app_id, []).append(container)
    can_deploy = session.principal.has(Scope.OPERATE)
    uploads = await runtime.localrun.uploads() if can_deploy else []
    return page(
        request,
        "apps.html",
        session,
        apps=apps,
        groups=sorted(groups.items()),
        can_deploy=can_deploy,
        uploads=uploads,
    )


@router.get("/apps/{app_id}", response_class=HTMLResponse)
async def app_page(request: Request, session: UiSession, app_id: AppRef) -> Response:
    runtime = runtime_of(request)
    try:
        app = await runtime.releases.app(app_id)
        releases = await runtime.releases.releases(app_id, limit=50)
    except NotFound as missing:  # a build or deploy of it ran, or a site names it (both link here)?
        tasks, _ = await runtime.tasks.page(
            status=None, task_type=None, app_id=app_id, limit=1, cursor=None, principal=session.principal
        )
        if not tasks and not any(site.app_id == app_id for site in await runtime.sites.list_sites()):
            return page(request, "error.html", session, status_code=404, failure=missing)
        app, releases = None, []
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    return page(
        request,
        "app.html",
        session,
        app_id=app_id,
        app=app,
        releases=releases,
        can_rollback=session.principal.has(Scope.OPERATE),
    )


# Requests that move traffic (through the API or this dashboard), from the audit log.
SWITCH_ROUTES = (
    "/nginx/sign-domain",
    "/app/update-port",
    "/nginx/site/create",
    "/nginx/site/delete",
    "/apps/{app_id}/rollback",
    "/ui/sites/create",
    "/ui/sites/delete",
    "/certificates/{domain}",
    "/certificates/{domain}/issue",
    "/ui/certificates/issue",
    "/ui/apps/{app_id}/rollback",
)


@router.get("/sites", response_class=HTMLResponse)
async def sites_page(request: Request, session: UiSession) -> Response:
    """Sites with their HTTPS, their certificates (status, expiry, last error, renew), the create
    form, and for admins the switch history (from the audit log, which the API shows to admins
    only)."""
    runtime = runtime_of(request)
    history = None
    if session.principal.is_admin:
        # Only switches that happened: a form posted without a session, or refused, must not fill it.
        history, _ = await runtime.audit.page(
            routes=SWITCH_ROUTES, authenticated=True, outcome="ok", limit=30
        )
    return page(
        request,
        "sites.html",
        session,
        sites=await runtime.sites.list_sites(),
        certificates=await runtime.certificates.list_all(),
        acme=runtime.certificates.enabled,
        history=history,
        can_act=session.principal.has(Scope.OPERATE),
    )


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(request: Request, session: UiSession) -> Response:
    """The swarm this engine belongs to and its nodes (what GET /swarm says)."""
    try:
        swarm = await runtime_of(request).swarm.status()
    except DockerManagerError as exc:
        return page(request, "error.html", session, status_code=exc.status_code, failure=exc)
    return page(request, "nodes.html", session, swarm=swarm)


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
        tokens=await runtime_of(request).tokens.list(),
        scopes=[s.value for s in Scope],
    )
