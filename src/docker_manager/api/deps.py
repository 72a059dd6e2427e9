"""`Annotated` dependencies: who is calling (with which scope), and one typed getter per service.

The getters read the runtime straight from the app: each level of dependency costs time on every
request, and the status routes are polled hard. They are typed, so a service renamed in
`runtime.py` fails in mypy, not at request time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from docker_manager.api.streaming import StreamSlots
from docker_manager.auth import Principal, Scope
from docker_manager.errors import InsufficientScope, Unauthorized
from docker_manager.runtime import Runtime
from docker_manager.services.backups import BackupService
from docker_manager.services.builds import BuildService
from docker_manager.services.certificates import CertificateService
from docker_manager.services.commands.service import CommandService
from docker_manager.services.containers import ContainerFiles, ContainerService
from docker_manager.services.deploys.localrun import LocalRunService
from docker_manager.services.deploys.service import DeployService
from docker_manager.services.host.disk import DiskService
from docker_manager.services.host.doctor import Doctor
from docker_manager.services.host.system import HostService
from docker_manager.services.images.service import ImageService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.observability.observers import Observers
from docker_manager.services.pipelines.service import PipelineService
from docker_manager.services.releases import ReleaseService, RetentionService, RollbackService
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm import SwarmService
from docker_manager.services.swarm.operations import SwarmOperations
from docker_manager.services.tasks.service import TaskService
from docker_manager.services.tokens import TokenStore


def runtime_of(request: Request) -> Runtime:
    """The app's runtime (`runtime.py`), set by its lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


class RequireScope(HTTPBearer):
    """Dependency: a valid bearer token holding `scope` (401 without one, 403 without the scope).

    It is the security scheme itself, so OpenAPI marks every operation as needing the token.
    Every route of the app declares one of these; `tests/app/test_tokens.py` walks the routes to check.
    """

    def __init__(self, scope: Scope, *, also: tuple[Scope, ...] = (), apps: bool = False) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="bearer",
            description="`Authorization: Bearer <token>`; scopes: read, operate, exec, admin, metrics.",
        )
        self.scope = scope
        self.also = also  # other scopes that are enough too
        # A route that names an app (or an object of one): a token limited to apps may call it
        # (the route checks the app). Every other route is host-level: 403 app_not_allowed.
        self.apps = apps

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        # The AuthGate middleware has checked the token already, before the body was read.
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        if principal is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("a bearer token is required")
            principal = await runtime_of(request).tokens.authenticate(token)
        if principal is None:
            raise Unauthorized("unknown, expired or revoked token")
        if not (principal.has(self.scope) or any(principal.has(scope) for scope in self.also)):
            raise InsufficientScope(f"this needs a token with the {self.scope.value!r} scope")
        if principal.apps is not None and not self.apps:
            principal.require_app(None, "this route")
        return principal


ReadAccess = Annotated[Principal, Depends(RequireScope(Scope.READ))]
OperateAccess = Annotated[Principal, Depends(RequireScope(Scope.OPERATE))]
ExecAccess = Annotated[Principal, Depends(RequireScope(Scope.EXEC))]
AdminAccess = Annotated[Principal, Depends(RequireScope(Scope.ADMIN))]
MetricsAccess = Annotated[Principal, Depends(RequireScope(Scope.METRICS, also=(Scope.READ,)))]
# Any valid token (whoami): every scope is enough.
AnyAccess = Annotated[
    Principal,
    Depends(RequireScope(Scope.READ, also=(Scope.OPERATE, Scope.EXEC, Scope.METRICS), apps=True)),
]
# Routes that name an app or an object of one: tokens limited to apps may call them, and the
# route (or its service) checks the app.
AppReadAccess = Annotated[Principal, Depends(RequireScope(Scope.READ, apps=True))]
AppOperateAccess = Annotated[Principal, Depends(RequireScope(Scope.OPERATE, apps=True))]
AppExecAccess = Annotated[Principal, Depends(RequireScope(Scope.EXEC, apps=True))]


# --- one getter per service ---------------------------------------------------------------------
async def get_containers(request: Request) -> ContainerService:
    return runtime_of(request).containers


async def get_container_files(request: Request) -> ContainerFiles:
    return runtime_of(request).container_files


async def get_images(request: Request) -> ImageService:
    return runtime_of(request).images


async def get_builds(request: Request) -> BuildService:
    return runtime_of(request).builds


async def get_localrun(request: Request) -> LocalRunService:
    return runtime_of(request).localrun


async def get_deploys(request: Request) -> DeployService:
    return runtime_of(request).deploys


async def get_sites(request: Request) -> SiteService:
    return runtime_of(request).sites


async def get_certificates(request: Request) -> CertificateService:
    return runtime_of(request).certificates


async def get_swarm(request: Request) -> SwarmService:
    return runtime_of(request).swarm


async def get_releases(request: Request) -> ReleaseService:
    return runtime_of(request).releases


async def get_rollbacks(request: Request) -> RollbackService:
    return runtime_of(request).rollbacks


async def get_swarm_operations(request: Request) -> SwarmOperations:
    return runtime_of(request).swarm_operations


async def get_retention(request: Request) -> RetentionService:
    return runtime_of(request).retention


async def get_host(request: Request) -> HostService:
    return runtime_of(request).host


async def get_disk(request: Request) -> DiskService:
    return runtime_of(request).disk


async def get_doctor(request: Request) -> Doctor:
    return runtime_of(request).doctor


async def get_backups(request: Request) -> BackupService:
    return runtime_of(request).backups


async def get_tasks(request: Request) -> TaskService:
    return runtime_of(request).tasks


async def get_commands(request: Request) -> CommandService:
    return runtime_of(request).commands


async def get_pipelines(request: Request) -> PipelineService:
    return runtime_of(request).pipelines


async def get_tokens(request: Request) -> TokenStore:
    return runtime_of(request).tokens


async def get_audit(request: Request) -> AuditLog:
    return runtime_of(request).audit


async def get_observers(request: Request) -> Observers:
    return runtime_of(request).observers


async def get_streams(request: Request) -> StreamSlots:
    """The live-stream slots (429 past a cap); a route takes one after its own checks. (HTTP's,
    not a service's: kept on the app.)"""
    slots: StreamSlots = request.app.state.streams
    return slots


ContainersDep = Annotated[ContainerService, Depends(get_containers)]
ContainerFilesDep = Annotated[ContainerFiles, Depends(get_container_files)]
ImagesDep = Annotated[ImageService, Depends(get_images)]
BuildsDep = Annotated[BuildService, Depends(get_builds)]
LocalRunDep = Annotated[LocalRunService, Depends(get_localrun)]
DeploysDep = Annotated[DeployService, Depends(get_deploys)]
SitesDep = Annotated[SiteService, Depends(get_sites)]
CertificatesDep = Annotated[CertificateService, Depends(get_certificates)]
SwarmDep = Annotated[SwarmService, Depends(get_swarm)]
ReleasesDep = Annotated[ReleaseService, Depends(get_releases)]
RollbackDep = Annotated[RollbackService, Depends(get_rollbacks)]
SwarmOperationsDep = Annotated[SwarmOperations, Depends(get_swarm_operations)]
RetentionDep = Annotated[RetentionService, Depends(get_retention)]
HostDep = Annotated[HostService, Depends(get_host)]
DiskDep = Annotated[DiskService, Depends(get_disk)]
DoctorDep = Annotated[Doctor, Depends(get_doctor)]
BackupsDep = Annotated[BackupService, Depends(get_backups)]
TasksDep = Annotated[TaskService, Depends(get_tasks)]
CommandsDep = Annotated[CommandService, Depends(get_commands)]
PipelineDep = Annotated[PipelineService, Depends(get_pipelines)]
TokensDep = Annotated[TokenStore, Depends(get_tokens)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
ObserversDep = Annotated[Observers, Depends(get_observers)]
StreamsDep = Annotated[StreamSlots, Depends(get_streams)]
