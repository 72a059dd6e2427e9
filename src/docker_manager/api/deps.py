"""`Annotated` dependencies: who is calling (with which scope) and the services they reach."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from docker_manager.auth import Principal, Scope
from docker_manager.errors import InsufficientScope, Unauthorized
from docker_manager.services import Services
from docker_manager.services.builds import BuildService
from docker_manager.services.containers import ContainerService
from docker_manager.services.images import ImageService
from docker_manager.services.system import SystemService
from docker_manager.services.tasks import TaskService

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class RequireScope:
    """Dependency: a valid bearer token holding `scope` (401 without one, 403 without the scope).

    Every route of the app declares one of these; `tests/test_auth.py` walks the routes to check.
    """

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(
        self,
        services: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise Unauthorized("a bearer token is required")
        principal = await services.tokens.authenticate(credentials.credentials)
        if principal is None:
            raise Unauthorized("unknown, expired or revoked token")
        if not principal.has(self.scope):
            raise InsufficientScope(f"this needs a token with the {self.scope.value!r} scope")
        return principal


ReadAccess = Annotated[Principal, Depends(RequireScope(Scope.READ))]
OperateAccess = Annotated[Principal, Depends(RequireScope(Scope.OPERATE))]
ExecAccess = Annotated[Principal, Depends(RequireScope(Scope.EXEC))]
AdminAccess = Annotated[Principal, Depends(RequireScope(Scope.ADMIN))]


def _containers(services: ServicesDep) -> ContainerService:
    return services.containers


def _images(services: ServicesDep) -> ImageService:
    return services.images


def _system(services: ServicesDep) -> SystemService:
    return services.system


ContainersDep = Annotated[ContainerService, Depends(_containers)]
ImagesDep = Annotated[ImageService, Depends(_images)]
SystemDep = Annotated[SystemService, Depends(_system)]


def _builds(services: ServicesDep) -> BuildService:
    return services.builds


def _tasks(services: ServicesDep) -> TaskService:
    return services.tasks


BuildsDep = Annotated[BuildService, Depends(_builds)]
TasksDep = Annotated[TaskService, Depends(_tasks)]
