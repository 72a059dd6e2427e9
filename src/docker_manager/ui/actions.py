"""The dashboard's actions (POST forms, each with the session's CSRF token): the same services and
policy as the API, refused with the reason shown on the page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from docker_manager.api.middleware import client_key
from docker_manager.auth import Scope, parse_scopes
from docker_manager.errors import DockerManagerError, InsufficientScope
from docker_manager.schemas.apps import RollbackRequest
from docker_manager.schemas.nginx import SiteDeleteRequest
from docker_manager.ui.deps import FormSession, back, services_of
from docker_manager.ui.render import page
from docker_manager.ui.session import COOKIE, Session

router = APIRouter(prefix="/ui", include_in_schema=False)


def _require(session: Session, scope: Scope) -> None:
    if not session.principal.has(scope):
        raise InsufficientScope(f"this needs a token with the {scope.value!r} scope")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=512)] = "") -> Response:
    services = services_of(request)
    limiter = request.app.state.auth_failures
    client = client_key(request.client.host if request.client else "unknown")
    wait = limiter.retry_after(client)
    if wait is not None:
        return page(
            request,
            "login.html",
            None,
            status_code=429,
            failure=f"too many failed logins; wait {wait} s",
        )
    principal = await services.tokens.authenticate(token.strip())
    if principal is None:
        limiter.failed(client)
        return page(request, "login.html", None, status_code=401, failure="unknown, expired or revoked token")
    cookie = await services.ui_sessions.issue(principal.token_id)
    request.scope.setdefault("state", {})["principal"] = principal
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=services.ui_sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: FormSession) -> Response:
    await services_of(request).ui_sessions.end(session.id)  # the old cookie is refused from now on
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(request: Request, session: FormSession, task_id: str) -> Response:
    path = f"/ui/tasks/{task_id}"
    try:
        _require(session, Scope.OPERATE)
        await services_of(request).tasks.cancel(task_id, session.principal)
    except DockerManagerError as exc:
        return back(path, error=exc)
    return back(path, notice="cancelled")


@router.post("/apps/{app_id}/rollback")
async def rollback(
    request: Request,
    session: FormSession,
    app_id: str,
    release: Annotated[int | None, Form(ge=1)] = None,
) -> Response:
    try:
        _require(session, Scope.OPERATE)
        started = await services_of(request).rollbacks.start(
            app_id, RollbackRequest(release=release), session.principal
        )
    except DockerManagerError as exc:
        return back(f"/ui/apps/{app_id}", error=exc)
    return back(f"/ui/tasks/{started.task_id}", notice=f"rolling back to release {started.release}")


@router.post("/containers/{container_id}/{action}")
async def container_action(
    request: Request, session: FormSession, container_id: str, action: str
) -> Response:
    containers = services_of(request).containers
    try:
        _require(session, Scope.OPERATE)
        if action == "remove":
            await containers.remove(container_id, session.principal, force=True, volumes=False)
        elif action in ("start", "stop", "restart"):
            await containers.act(container_id, session.principal, action)
        else:
            return back("/ui/containers", error=f"unknown action {action!r}")
    except DockerManagerError as exc:
        return back("/ui/containers", error=exc)
    return back("/ui/containers", notice=f"{action}: done")


@router.post("/sites/delete")
async def delete_site(
    request: Request, session: FormSession, domain: Annotated[str, Form(max_length=253)]
) -> Response:
    try:
        _require(session, Scope.OPERATE)
        await services_of(request).sites.delete_site(SiteDeleteRequest(domain=domain), session.principal)
    except DockerManagerError as exc:
        return back("/ui/sites", error=exc)
    except ValueError:
        return back("/ui/sites", error="not a domain name")
    return back("/ui/sites", notice=f"{domain} deleted")


@router.post("/tokens/create", response_class=HTMLResponse)
async def create_token(
    request: Request,
    session: FormSession,
    name: Annotated[str, Form(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")],
    scopes: Annotated[list[str], Form()],
) -> Response:
    try:
        _require(session, Scope.ADMIN)
        info, secret = await services_of(request).tokens.create(name=name, scopes=parse_scopes(scopes))
    except DockerManagerError as exc:
        return back("/ui/tokens", error=exc)
    # Shown this once, in this answer only (never in a URL).
    return page(request, "token_created.html", session, info=info, secret=secret)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, session: FormSession, token_id: str) -> Response:
    try:
        _require(session, Scope.ADMIN)
        await services_of(request).tokens.revoke(token_id)
    except DockerManagerError as exc:
        return back("/ui/tokens", error=exc)
    return back("/ui/tokens", notice=f"token {token_id} revoked")
