"""One router per area; `ROUTERS` lists them all (the app includes each directly)."""

from fastapi import APIRouter

from docker_manager.api.routes import (
    commands,
    container_fs,
    containers,
    deploy,
    health,
    images,
    nginx,
    system,
    tasks,
    tokens,
)

# Included one by one into the app: every level of router nesting costs time on each request.
ROUTERS: tuple[APIRouter, ...] = tuple(
    m.router
    for m in (health, images, containers, container_fs, deploy, nginx, commands, tasks, system, tokens)
)

__all__ = ["ROUTERS"]
