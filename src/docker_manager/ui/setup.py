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
    if request.url.path.endswith("/stream") or request.url.path.endswith(".json"):
        return Response(status_code=401)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
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
