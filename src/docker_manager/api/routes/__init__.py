"""One router per area; `api_router` assembles them."""

from fastapi import APIRouter

from docker_manager.api.routes import containers, health, images, system, tasks, tokens

api_router = APIRouter()
for module in (health, images, containers, tasks, system, tokens):
    api_router.include_router(module.router)

__all__ = ["api_router"]
