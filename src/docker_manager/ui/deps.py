"""Who is looking at the dashboard: the session cookie, checked on every request."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse

from docker_manager.errors import DockerManagerError
from docker_manager.services import Services
from docker_manager.ui.session import COOKIE, Session


class LoginRequired(Exception):
    """No valid session (none, expired, or its token revoked): the login page."""


class CsrfRefused(Exception):
    """A form without this session's CSRF token."""


async def ui_session(request: Request) -> Session:
    services: Services = request.app.state.services
    found = await services.ui_sessions.read(request.cookies.get(COOKIE))
    if found is None:
        raise LoginRequired
    session_id, token_id, csrf = found
    principal = await services.tokens.principal_by_id(token_id)
    if principal is None:
        raise LoginRequired
    # The audit entry of a dashboard action names the token behind the session.
    request.scope.setdefault("state", {})["principal"] = principal
    return Session(session_id, principal, csrf)


UiSession = Annotated[Session, Depends(ui_session)]


async def form_session(request: Request, session: UiSession, csrf: Annotated[str, Form()] = "") -> Session:
    """A session whose form carries its CSRF token (every POST of the dashboard)."""
    if not session.csrf_ok(csrf):
        raise CsrfRefused
    return session


FormSession = Annotated[Session, Depends(form_session)]


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def back(
    path: str, *, notice: str | None = None, error: DockerManagerError | str | None = None
) -> RedirectResponse:
    """After an action: back to a page, saying what happened (or why it was refused)."""
    if error is not None:
        text = error.detail if isinstance(error, DockerManagerError) else error
        code = f"{error.code}: " if isinstance(error, DockerManagerError) else ""
        return RedirectResponse(f"{path}?error={quote(code + text[:300])}", status_code=303)
    suffix = f"?notice={quote(notice[:300])}" if notice else ""
    return RedirectResponse(f"{path}{suffix}", status_code=303)
