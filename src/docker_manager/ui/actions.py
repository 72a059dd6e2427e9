"""The dashboard's actions (POST forms, each with the session's CSRF token): the same services and
policy as the API, refused with the reason shown on the page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from docker_manager.api.deps import runtime_of
from docker_manager.api.middleware import client_key, host_only, peer_of
from docker_manager.auth import Scope, parse_apps, parse_scopes
from docker_manager.errors import DockerManagerError, InsufficientScope
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.schemas.releases import RollbackRequest
from docker_manager.schemas.sites import Domain, SiteCreateRequest, SiteDeleteRequest
from docker_manager.ui.deps import (
    AppRef,
    FormSession,
    TaskRef,
    TokenRef,
    back,
    check_form_origin,
)
from docker_manager.ui.render import page
from docker_manager.ui.session import COOKIE, Session

router = APIRouter(prefix="/ui", include_in_schema=False)


DOMAIN: TypeAdapter[str] = TypeAdapter(Domain)


def _require(session: Session, scope: Scope) -> None:
    if not session.principal.has(scope):
        raise InsufficientScope(f"this needs a token with the {scope.value!r} scope")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=512)] = "") -> Response:
    check_form_origin(request)  # no login from another site's form (login CSRF)
    runtime = runtime_of(request)
    limiter = request.app.state.auth_failures
    client = client_key(peer_of(request.scope))
    # As for the API: only failures are limited, so a valid token is never refused because others
    # behind the same address (a proxy, loopback) guessed wrong.
    principal = await runtime.tokens.authenticate(token.strip())
    if principal is None:
        limiter.failed(client)
        wait = limiter.retry_after(client)
        status, failure = (429, f"too many failed logins; wait {wait} s") if wait else (401, None)
        return page(
            request,
            "login.html",
            None,
            status_code=status,
            failure=failure or "unknown, expired or revoked token",
        )
    if not principal.has(Scope.READ) or principal.apps is not None:
        return page(
            request,
            "login.html",
            None,
            status_code=403,
            failure="the dashboard needs a token with the 'read' scope, not limited to apps",
        )
    # A browser holds one session: the one it had (another token's, or a stolen cookie's twin)
    # ends here, so a login never leaves a live session behind.
    await runtime.ui_sessions.end_cookie(request.cookies.get(COOKIE))
    cookie = await runtime.ui_sessions.issue(principal.token_id)
    request.scope.setdefault("state", {})["principal"] = principal
    response = RedirectResponse("/ui", status_code=303)
    # Through nginx on the public domain the request reached nginx over TLS (port 80 only
    # redirects once the certificate is there): the browser must send it back only so.
    public = host_only(request.headers.get("host", "")) == runtime.settings.public_domain
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=runtime.ui_sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or public,
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: FormSession) -> Response:
    await runtime_of(request).ui_sessions.end(session.id)  # the old cookie is refused from now on
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(request: Request, session: FormSession, task_id: TaskRef) -> Response:
    path = f"/ui/tasks/{task_id}"
    try:
        _require(session, Scope.OPERATE)
        await runtime_of(request).tasks.cancel(task_id, session.principal)
    except DockerManagerError as exc:
        return back(request, path, error=exc)
    return back(request, path, notice="cancelled")


@router.post("/apps/{app_id}/rollback")
async def rollback(
    request: Request,
    session: FormSession,
    app_id: AppRef,
    release: Annotated[int | None, Form(ge=1)] = None,
) -> Response:
    try:
        _require(session, Scope.OPERATE)
        started = await runtime_of(request).rollbacks.start(
            app_id, RollbackRequest(release=release), session.principal
        )
    except DockerManagerError as exc:
        return back(request, f"/ui/apps/{app_id}", error=exc)
    return back(request, f"/ui/tasks/{started.task_id}", notice=f"rolling back to release {started.release}")


@router.post("/sites/create")
async def create_site(
    request: Request,
    session: FormSession,
    domain: Annotated[str, Form(max_length=253)],
    port: Annotated[int, Form(ge=1, le=65535)],
    app_id: Annotated[str, Form(max_length=64)] = "",
    tls: Annotated[str, Form(max_length=4)] = "auto",
    hsts_max_age: Annotated[int | None, Form(ge=0)] = None,
) -> Response:
    try:
        _require(session, Scope.OPERATE)
        body = SiteCreateRequest.model_validate(
            {
                "domain": domain,
                "port": port,
                "app_id": app_id or None,
                "tls": tls,
                "hsts_max_age": hsts_max_age,
            }
        )
        await runtime_of(request).sites.create_site(body, session.principal)
    except DockerManagerError as exc:
        return back(request, "/ui/sites", error=exc)
    except ValidationError as exc:
        return back(request, "/ui/sites", error=_first_problem(exc))
    return back(request, "/ui/sites", notice=f"{domain} now proxies to port {port}")


@router.post("/certificates/issue")
async def issue_certificate(
    request: Request,
    session: FormSession,
    domain: Annotated[str, Form(max_length=253)],
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Order (or renew) a domain's certificate now; off to the order's task page."""
    try:
        _require(session, Scope.OPERATE)
        started = await runtime_of(request).certificates.issue(
            DOMAIN.validate_python(domain), session.principal, force=force
        )
    except DockerManagerError as exc:
        return back(request, "/ui/sites", error=exc)
    except ValidationError as exc:
        return back(request, "/ui/sites", error=_first_problem(exc))
    return back(request, f"/ui/tasks/{started.id}", notice=f"ordering a certificate for {domain}")


@router.post("/apps/deploy")
async def deploy(
    request: Request,
    session: FormSession,
    artefact: Annotated[str, Form(max_length=4096)],
    app_id: Annotated[str, Form(max_length=64)] = "",
    container_port: Annotated[str, Form(max_length=20)] = "",
    host_port: Annotated[int | None, Form(ge=1, le=65535)] = None,
    domain: Annotated[str, Form(max_length=253)] = "",
) -> Response:
    """Deploy an artefact of the upload root (the deploy operation, as the API's); off to its task
    page."""
    runtime = runtime_of(request)
    try:
        _require(session, Scope.OPERATE)
        uploads = {u.path: u for u in await runtime.localrun.uploads()}
        upload = uploads.get(artefact)
        if upload is None:
            return back(request, "/ui/apps", error="no such artefact in the upload root")
        if not app_id.strip():
            return back(request, "/ui/apps", error="an app id is needed")
        port_text = container_port.strip().removesuffix("/tcp") or "80"
        if not port_text.isdigit():
            return back(request, "/ui/apps", error="container_port: a TCP port, such as 80 or 80/tcp")
        body = DeployRequest(
            artefact=str(runtime.settings.upload_path / upload.path),
            container_port=int(port_text),
            port=host_port,
            domain=domain.strip() or None,
        )
        task_id = (await runtime.deploys.start(app_id.strip(), body, session.principal)).id
    except DockerManagerError as exc:
        return back(request, "/ui/apps", error=exc)
    except ValidationError as exc:
        return back(request, "/ui/apps", error=_first_problem(exc))
    return back(request, f"/ui/tasks/{task_id}", notice=f"deploying {artefact}")


def _first_problem(exc: ValidationError) -> str:
    problem = exc.errors()[0]
    field = ".".join(str(part) for part in problem.get("loc", ()))
    return f"{field}: {problem.get('msg', 'invalid')}" if field else str(problem.get("msg", "invalid"))


@router.post("/sites/delete")
async def delete_site(
    request: Request, session: FormSession, domain: Annotated[str, Form(max_length=253)]
) -> Response:
    try:
        _require(session, Scope.OPERATE)
        await runtime_of(request).sites.delete_site(SiteDeleteRequest(domain=domain), session.principal)
    except DockerManagerError as exc:
        return back(request, "/ui/sites", error=exc)
    except ValidationError as exc:
        return back(request, "/ui/sites", error=_first_problem(exc))
    return back(request, "/ui/sites", notice=f"{domain} deleted")


@router.post("/tokens/create", response_class=HTMLResponse)
async def create_token(
    request: Request,
    session: FormSession,
    name: Annotated[str, Form(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")],
    scopes: Annotated[list[str], Form()],
    apps: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        _require(session, Scope.ADMIN)
        limited = parse_apps(apps.replace(",", " ").split())
        info, secret = await runtime_of(request).tokens.create(
            name=name, scopes=parse_scopes(scopes), apps=limited
        )
    except DockerManagerError as exc:
        return back(request, "/ui/tokens", error=exc)
    # Shown this once, in this answer only (never in a URL).
    return page(request, "token_created.html", session, info=info, secret=secret)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, session: FormSession, token_id: TokenRef) -> Response:
    try:
        _require(session, Scope.ADMIN)
        await runtime_of(request).tokens.revoke(token_id)
    except DockerManagerError as exc:
        return back(request, "/ui/tokens", error=exc)
    return back(request, "/ui/tokens", notice=f"token {token_id} revoked")
