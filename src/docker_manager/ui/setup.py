"""The dashboard's routes and error handlers, as the app includes them."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from docker_manager.ui import actions, containers, live, pages
from docker_manager.ui.deps import CsrfRefused, LoginRequired
from docker_manager.ui.render import page
from docker_manager.ui.session import COOKIE

UI_ROUTERS = (pages.router, containers.router, actions.router, live.router)


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.url.path.endswith(("/stream", ".json", "/log")):
        return Response(status_code=401)  # fetched by the page's scripts: no login page inside
    if request.method != "GET":
        # A form without a live session: refused (and audited as such), not redirected.
        return page(request, "login.html", None, status_code=401, failure="log in again: no live session")
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
    request.scope.setdefault("state", {})["audit_code"] = "csrf"
    return page(
        request,
        "error.html",
        None,
        status_code=403,
        failure="refused: this form is not from your session (CSRF)",
    )


def install_ui_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
