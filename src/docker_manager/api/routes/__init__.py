"""One router per area; `ROUTERS` lists them all (the app includes each directly)."""

from fastapi import APIRouter

from docker_manager.api.routes import (
    apps,
    commands,
    container_fs,
    containers,
    deploy,
    health,
    images,
    nginx,
    observability,
    system,
    tasks,
    tokens,
)

# Included one by one into the app: every level of router nesting costs time on each request.
# FastAPI tries routes in order (about 5 us each): the routes dashboards poll come first.
ROUTERS: tuple[APIRouter, ...] = tuple(
    m.router
    for m in (
        tasks,
        system,
        containers,
        apps,
        health,
        images,
        container_fs,
        deploy,
        nginx,
        commands,
        tokens,
        observability,
    )
)

__all__ = ["ROUTERS"]
