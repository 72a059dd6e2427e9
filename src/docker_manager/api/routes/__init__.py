"""One route module per domain (the same word as its schema module, its service package, its tests
and its docs page); `ROUTERS` lists their routers in the order the app includes them."""

from fastapi import APIRouter

from docker_manager.api.routes import (
    backups,
    builds,
    certificates,
    commands,
    containers,
    deploys,
    host,
    images,
    observability,
    pipelines,
    releases,
    sites,
    swarm,
    tasks,
    tokens,
)

# Included one by one into the app: every level of router nesting costs time on each request.
# FastAPI tries routes in order (about 5 us each): the routes dashboards poll come first. The
# order is also the API document's: a new domain's router goes at the end.
ROUTERS: tuple[APIRouter, ...] = (
    tasks.router,
    host.router,
    containers.router,
    releases.router,
    host.liveness,
    builds.router,
    images.router,
    containers.files,
    deploys.router,
    sites.router,
    commands.router,
    pipelines.router,
    tokens.router,
    observability.router,
    certificates.router,
    swarm.router,
    backups.router,
)

__all__ = ["ROUTERS"]
