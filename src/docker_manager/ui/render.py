"""Rendering the dashboard's pages: templates, the security headers every page carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from docker_manager.ui.session import Session

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates" / "ui"))

# Scripts only from this service's own files (no inline script, no eval); nothing framed; forms
# post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it a browser sends `Origin: null` on this site's own forms, and a
    # null origin (a sandboxed frame, a data: page) must be refused. Other sites get no referrer.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def page(
    request: Request, template: str, session: Session | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    message = None
    if session is not None:
        message = request.app.state.runtime.ui_sessions.open_message(
            request.query_params.get("m"), session_id=session.id, path=request.url.path
        )
    kind, text = message or ("", "")
    values = {
        "session": session,
        "user": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "notice": text if kind == "notice" else None,
        "error": text if kind == "error" else None,
        "path": request.url.path,
        **context,
    }
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def short_id(value: str | None) -> str:
    """`sha256:` ids (72 characters: a page 1,100 px wide on a phone) as the docker CLI shows
    them; the template keeps the whole value in a title."""
    text = value or ""
    if text.startswith("sha256:") and len(text) > 19:
        return text[7:19]
    return text


TEMPLATES.env.filters["bytes"] = human_bytes
TEMPLATES.env.filters["short"] = short_id
