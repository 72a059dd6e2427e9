"""`Annotated` dependencies: who is calling (with which scope) and the services they reach.

Dependencies read the services straight from the app: each level of dependency costs time on
every request, and the status routes are polled hard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from docker_manager.api.streaming import StreamSlots
from docker_manager.auth import Principal, Scope
from docker_manager.errors import InsufficientScope, Unauthorized
from docker_manager.services import Services
from docker_manager.services.builds import BuildService
from docker_manager.services.commands.service import CommandService
from docker_manager.services.containers import ContainerFiles, ContainerService
from docker_manager.services.deploys.localrun import LocalRunService
from docker_manager.services.host.disk import DiskService
from docker_manager.services.host.system import SystemService
from docker_manager.services.images.service import ImageService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.pipelines.service import PipelineService
from docker_manager.services.releases import ReleaseService, RetentionService, RollbackService
from docker_manager.services.sites import SiteService
from docker_manager.services.tasks.service import TaskService


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class RequireScope(HTTPBearer):
    """Dependency: a valid bearer token holding `scope` (401 without one, 403 without the scope).

    It is the security scheme itself, so OpenAPI marks every operation as needing the token.
    Every route of the app declares one of these; `tests/test_auth.py` walks the routes to check.
    """

    def __init__(self, scope: Scope, *, also: tuple[Scope, ...] = ()) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="bearer",
            description="`Authorization: Bearer <token>`; scopes: read, operate, exec, admin, metrics.",
        )
        self.scope = scope
        self.also = also  # other scopes that are enough too

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        # The AuthGate middleware has checked the token already, before the body was read.
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        if principal is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("a bearer token is required")
            services: Services = request.app.state.services
            principal = await services.tokens.authenticate(token)
        if principal is None:
            raise Unauthorized("unknown, expired or revoked token")
        if not (principal.has(self.scope) or any(principal.has(scope) for scope in self.also)):
            raise InsufficientScope(f"this needs a token with the {self.scope.value!r} scope")
        return principal


ReadAccess = Annotated[Principal, Depends(RequireScope(Scope.READ))]
OperateAccess = Annotated[Principal, Depends(RequireScope(Scope.OPERATE))]
ExecAccess = Annotated[Principal, Depends(RequireScope(Scope.EXEC))]
AdminAccess = Annotated[Principal, Depends(RequireScope(Scope.ADMIN))]
MetricsAccess = Annotated[Principal, Depends(RequireScope(Scope.METRICS, also=(Scope.READ,)))]
# Any valid token (whoami): every scope is enough.
AnyAccess = Annotated[
    Principal, Depends(RequireScope(Scope.READ, also=(Scope.OPERATE, Scope.EXEC, Scope.METRICS)))
]


def _service(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency handing out one of the services by its attribute name on `Services`."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state.services, name)

    dependency.__name__ = f"get_{name}"
    return dependency


ContainersDep = Annotated[ContainerService, Depends(_service("containers"))]
ContainerFilesDep = Annotated[ContainerFiles, Depends(_service("container_files"))]
ImagesDep = Annotated[ImageService, Depends(_service("images"))]
SystemDep = Annotated[SystemService, Depends(_service("system"))]
BuildsDep = Annotated[BuildService, Depends(_service("builds"))]
TasksDep = Annotated[TaskService, Depends(_service("tasks"))]
LocalRunDep = Annotated[LocalRunService, Depends(_service("localrun"))]
SitesDep = Annotated[SiteService, Depends(_service("sites"))]
CommandsDep = Annotated[CommandService, Depends(_service("commands"))]
PipelineDep = Annotated[PipelineService, Depends(_service("pipeline"))]
ReleasesDep = Annotated[ReleaseService, Depends(_service("releases"))]
RollbackDep = Annotated[RollbackService, Depends(_service("rollbacks"))]
RetentionDep = Annotated[RetentionService, Depends(_service("retention"))]
DiskDep = Annotated[DiskService, Depends(_service("disk"))]
AuditDep = Annotated[AuditLog, Depends(_service("audit"))]


async def get_streams(request: Request) -> StreamSlots:
    """The live-stream slots (429 past a cap); a route takes one after its own checks."""
    slots: StreamSlots = request.app.state.streams
    return slots


StreamsDep = Annotated[StreamSlots, Depends(get_streams)]
