"""The FastAPI application: middleware, error handlers, routes, and the runtime's lifetime
(`runtime.py` builds what the routes use)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from docker_manager import __version__
from docker_manager.api.connections import raise_open_files_limit
from docker_manager.api.errors import install_error_handlers
from docker_manager.api.fastpath import TaskStatusFastPath
from docker_manager.api.middleware import AuthGate, BodySizeLimit, FailureLimiter, TrustedHostGuard
from docker_manager.api.observe import RequestObserver
from docker_manager.api.routes import ROUTERS, tasks
from docker_manager.api.routes.docs import router as docs_router
from docker_manager.api.streaming import StreamSlots
from docker_manager.config import Settings
from docker_manager.runtime import Runtime
from docker_manager.ui.setup import UI_ROUTERS, install_ui_handlers

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing touches the disk or the engine until the lifespan starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise_open_files_limit()  # `serve` did already; `uvicorn main:app` did not
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall the event loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await runtime.stop()

    docs = settings.public_docs
    app = FastAPI(
        title="docker-manager",
        version=__version__,
        summary="Builds, ships, runs and routes Docker containers on one host.",
        lifespan=lifespan,
        docs_url=None,  # our own /docs (api/routes/docs.py): no CDN
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's own OpenTelemetry hooks: off (this service has its /metrics; each request
        # asked whether a tracer was configured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    # Whether the server hands the app the real peer address (`serve` sets it; see peer_of).
    app.state.peer_verified = False
    app.state.streams = StreamSlots(total=settings.max_streams, per_token=settings.max_streams_per_token)
    install_error_handlers(app)
    for router in ROUTERS:
        # The routes themselves, not the router: FastAPI walks nested routers on every request,
        # which costs more than the rest of a status request together (measured with wrk).
        app.router.routes.extend(router.routes)
    if docs:
        app.router.routes.extend(docs_router.routes)
    # The dashboard: its own cookie sessions (ui/), outside the OpenAPI document.
    for router in UI_ROUTERS:
        app.router.routes.extend(router.routes)
    install_ui_handlers(app)
    # Vendored front-end files (with their licences): public, like the pages that load them.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_middleware(app, settings)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The guards before any route. Added innermost first: the body cap, authentication, the
    request observer (id, metrics, audit), CORS, and outermost the Host check (a bad Host is
    refused before anything else looks)."""
    # A file written into a container may be DM_FS_MAX_BYTES, base64-encoded (4/3) in JSON.
    fs_write_body = settings.fs_max_bytes * 4 // 3 + (64 << 10)
    status_route = next(
        r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is tasks.task_status
    )
    app.add_middleware(TaskStatusFastPath, route=status_route)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        per_path={"/docker/container/fs/write": max(fs_write_body, settings.max_body_bytes)},
    )
    # Outside the body cap: a request without a valid token is refused before its body is read.
    public = ["/healthz", "/ui", *(["/docs", "/openapi.json"] if settings.public_docs else [])]
    limiter = FailureLimiter(limit=settings.auth_failure_limit, window=settings.auth_failure_window)
    app.state.auth_failures = limiter  # the dashboard's login counts its failures here too
    # /ui/ pages check their session cookie themselves (ui/deps.py); the login form is limited.
    # A CA's HTTP-01 check (nginx forwards port 80's) carries no token: only live answers are given.
    public_prefixes = ["/static/", "/ui/", "/.well-known/acme-challenge/"]
    app.add_middleware(AuthGate, public_paths=public, public_prefixes=public_prefixes, limiter=limiter)
    # Outside authentication: refused requests get a request id, metrics and an audit entry too.
    app.add_middleware(RequestObserver)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(TrustedHostGuard, allowed_hosts=settings.accepted_hosts)
