"""Who is looking at the dashboard: the session cookie, checked on every request."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Path, Request
from fastapi.responses import RedirectResponse

from docker_manager.api.deps import runtime_of
from docker_manager.auth import Scope
from docker_manager.errors import DockerManagerError, InvalidInput
from docker_manager.ui.session import COOKIE, Session

# The dashboard's path parameters, as strict as the API's (no `.`/`..` reaches the engine's URLs).
ContainerRef = Annotated[str, Path(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
AppRef = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
TaskRef = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TokenRef = Annotated[str, Path(pattern=r"^[a-f0-9]{16}$")]


class LoginRequired(Exception):
    """No valid session (none, expired, or its token revoked): the login page."""


class CsrfRefused(Exception):
    """A form without this session's CSRF token, or sent from another site."""


async def ui_session(request: Request) -> Session:
    runtime = runtime_of(request)
    found = await runtime.ui_sessions.read(request.cookies.get(COOKIE))
    if found is None:
        raise LoginRequired
    session_id, token_id, csrf = found
    principal = await runtime.tokens.principal_by_id(token_id)
    if principal is None or not principal.has(Scope.READ):
        raise LoginRequired
    # The audit entry of a dashboard action names the token behind the session; the message an
    # action leaves is sealed for this session.
    state = request.scope.setdefault("state", {})
    state["principal"], state["ui_session_id"] = principal, session_id
    return Session(session_id, principal, csrf)


UiSession = Annotated[Session, Depends(ui_session)]


def check_form_origin(request: Request) -> None:
    """A dashboard form comes from this site, URL-encoded (what the audit log reads): a browser says
    where a request comes from in `Sec-Fetch-Site` and `Origin`."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise CsrfRefused
    origin = request.headers.get("origin")
    # `null` is what a sandboxed frame or a data: page sends: never this site's own form.
    if origin and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host")):
        raise CsrfRefused
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise CsrfRefused


async def form_session(request: Request, session: UiSession, csrf: Annotated[str, Form()] = "") -> Session:
    """A session whose form carries its CSRF token (every POST of the dashboard)."""
    check_form_origin(request)
    if not session.csrf_ok(csrf):
        raise CsrfRefused
    return session


FormSession = Annotated[Session, Depends(form_session)]


def back(
    request: Request,
    path: str,
    *,
    notice: str | None = None,
    error: DockerManagerError | str | None = None,
) -> RedirectResponse:
    """After an action: back to a page, saying what happened (or why it was refused). A refusal is
    audited with its own status and code, not as the redirect's 303."""
    codec = runtime_of(request).ui_sessions
    state = request.scope.setdefault("state", {})
    session_id = str(state.get("ui_session_id", ""))
    if error is not None:
        failure = error if isinstance(error, DockerManagerError) else InvalidInput(error)
        state["audit_status"], state["audit_code"] = failure.status_code, failure.code
        text, kind = f"{failure.code}: {failure.detail}", "error"
    elif notice:
        text, kind = notice, "notice"
    else:
        return RedirectResponse(path, status_code=303)
    sealed = codec.seal_message(kind, text, session_id=session_id, path=path)
    return RedirectResponse(f"{path}?m={quote(sealed)}", status_code=303)
