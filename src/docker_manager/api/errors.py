"""The one place where errors become HTTP responses: `{code, detail, field?, ...}`."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from docker_manager.db.engine import database_error
from docker_manager.errors import (
    BadRequest,
    Conflict,
    DatabaseUnavailable,
    DockerManagerError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from docker_manager.util.requestctx import REQUEST_ID

log = logging.getLogger(__name__)

# Starlette's own HTTP errors (no route, a wrong method...) as the tree's classes.
HTTP_ERRORS: dict[int, type[DockerManagerError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: Throttled,
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def error_headers(exc: DockerManagerError) -> dict[str, str]:
    """What an error's answer says besides its body: the auth challenge, when to retry."""
    if exc.status_code == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, Throttled):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, DatabaseUnavailable):
        return {"Retry-After": "2"}
    return {}


def error_response(exc: DockerManagerError) -> JSONResponse:
    """The one JSON answer of an error: `{code, detail, field?, ...}` with its status and headers."""
    return _json(exc.status_code, exc.to_dict(), error_headers(exc) or None)


async def send_error(send: Send, exc: DockerManagerError) -> None:
    """The same answer from a pure-ASGI guard (before any route or handler runs)."""
    body = json.dumps(exc.to_dict()).encode()
    headers = [(name.lower().encode(), value.encode()) for name, value in error_headers(exc).items()]
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo the rejected input back: it may be a secret, or megabytes long.
    return [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": error.get("msg", ""),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DockerManagerError)
    if exc.status_code >= 500:
        log.warning("%s: %s", exc.code, exc.detail)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    field = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    return error_response(
        ValidationFailed(f"{field or 'request'}: {first['msg']}", field=field or None, errors=errors)
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = HTTP_ERRORS.get(exc.status_code) or (BadRequest if exc.status_code < 500 else DockerManagerError)
    response = error_response(kind(str(exc.detail)))
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # Logged once here, with what the database said; the answer says only that it is busy or down.
    log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return await _service_error(request, database_error(exc))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    # Logged once, with its traceback and the request id; the answer never has the traceback.
    incident = REQUEST_ID.get() or uuid.uuid4().hex[:12]
    log.exception("unexpected error (request %s)", incident, exc_info=exc)
    return error_response(
        DockerManagerError(f"internal error; the service log has request {incident}", request_id=incident)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DockerManagerError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # The database itself failing (locked, down, unreachable), whichever query met it.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    # asyncpg's connect errors come through SQLAlchemy unwrapped (a refused connection is a plain
    # ConnectionRefusedError). Every other outside service is reached through an adapter that maps
    # its errors (engine, SFTP, nginx, git), so a bare connection error here is the database's.
    app.add_exception_handler(ConnectionError, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
