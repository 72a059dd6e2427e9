"""Containers: run with limits and labels, list, inspect, lifecycle, logs, exec, stats.

Every container the service creates goes through `ContainerService.create_and_start`, where the
create-body policy (`policy`) is checked and the container is recorded as this service's
(`ownership`): later paths (localrun, pipeline, update-port) get both for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.auth import Principal, Scope
from docker_manager.errors import Conflict, DockerManagerError, EngineTimeout, NotFound, NotManaged
from docker_manager.labels import APP_ID, MANAGED_FILTER, TASK_ID, managed_labels
from docker_manager.schemas.containers import (
    ActionResult,
    ContainerSummary,
    ExecResult,
    LogsResult,
    RemoveResult,
    RunResult,
    StatsResult,
)
from docker_manager.services.containers.options import ContainerOptions
from docker_manager.services.containers.output import collect_logs, redact_for_read, run_exec, stats_result
from docker_manager.services.containers.policy import BUILTIN_NETWORKS, ContainerPolicy
from docker_manager.services.containers.spec import ContainerSpec, check_limits, create_config
from docker_manager.services.ownership.record import Kind, Ownership
from docker_manager.util.cache import SingleFlightCache

# Actions after which a running container no longer answers on its ports (kill: by its signal).
STOPPING_ACTIONS = frozenset({"stop", "restart"})
# Signals whose default action ends a process (a container's main process may handle some).
ENDING_SIGNALS = frozenset({"KILL", "TERM", "INT", "QUIT", "9", "15", "2", "3"})


def _ends_process(action: str, kwargs: dict[str, Any]) -> bool:
    signal = str(kwargs.get("signal") or "KILL").upper().removeprefix("SIG")
    return action == "kill" and signal in ENDING_SIGNALS


SummaryList = list[ContainerSummary]
StrList = list[str]
StopListener = Callable[[str], Awaitable[None]]
log = logging.getLogger(__name__)


class StopNotices:
    """Who must act around this service's stops, kills and removals of a container: a site that
    reaches it through its host port answers 503 first (so the port is never free while nginx sends
    there), and after the action, whatever its outcome, looks again (a stop that failed, a signal
    that did not end the process: the container still serves)."""

    def __init__(self) -> None:
        self._before: list[StopListener] = []
        self._after: list[StopListener] = []

    def subscribe(self, *, before: StopListener, after: StopListener) -> None:
        self._before.append(before)
        self._after.append(after)

    async def before_stop(self, container_id: str) -> None:
        await self._tell(self._before, container_id)

    async def after_stop(self, container_id: str) -> None:
        await self._tell(self._after, container_id)

    @staticmethod
    async def _tell(listeners: list[StopListener], container_id: str) -> None:
        for listener in listeners:
            try:
                await listener(container_id)
            except DockerManagerError as exc:  # nginx is down: the engine's events retry
                log.warning("around stopping %s: %s", container_id[:12], exc.detail)


class ContainerService:
    def __init__(
        self, *, docker: Docker, ownership: Ownership, options: ContainerOptions, stop_notices: StopNotices
    ) -> None:
        self._docker = docker
        self._ownership = ownership
        self._stop_notices = stop_notices
        self._volumes_lock = asyncio.Lock()
        self.policy = ContainerPolicy(docker, ownership, options)
        self._options = options
        # Listing 100 containers costs the engine ~15 ms and it serialises them; dashboards poll.
        # One engine call per second at most, shared by everyone; our own changes clear it.
        self._listings: SingleFlightCache[list[Any]] = SingleFlightCache(ttl=1.0)

    # --- creating ------------------------------------------------------------------------
    async def run(self, spec: ContainerSpec, principal: Principal, *, detach: bool = True) -> RunResult:
        """Create and start a container; on any failure nothing is left behind."""
        check_limits(spec, self._options.forbidden_host_ports)
        config = create_config(spec, self._options.publish_host_ip)
        # Checked here too so that a refused request creates nothing (no network, no volume);
        # create_and_start checks again because every other path goes through it alone.
        await self.policy.check(config, principal)
        await self._require_image(spec.image)
        await self._ensure_network(spec, principal)
        await self._ensure_volumes(spec, principal)
        container_id = await self.create_and_start(config, name=spec.container_name, principal=principal)
        exit_code: int | None = None
        output: str | None = None
        if not detach:
            exit_code, output = await self._wait_for_exit(container_id)
        info = await self._docker.containers.info(container_id)
        return RunResult(
            id=container_id,
            name=info.name,
            status=info.status,
            image=spec.image,
            ports=info.published_ports,
            exit_code=exit_code,
            output=output,
        )

    async def create_and_start(
        self, config: dict[str, Any], *, name: str | None, principal: Principal, recreated: bool = False
    ) -> str:
        """The one place containers are created: the policy check, create, record, start.

        If the start fails (a port already taken leaves the container "Created"), the container is
        removed, so a failed call changes nothing. `recreated`: an app's own container made again
        (see `ContainerPolicy.check`).
        """
        host_level = await self.policy.check(config, principal, recreated=recreated)
        self._listings.clear()
        container_id = await self._docker.containers.create(config, name=name)
        labels = config.get("Labels") or {}
        try:
            await self._ownership.record(
                Kind.CONTAINER,
                container_id,
                name=name,
                app_id=labels.get(APP_ID),
                task_id=labels.get(TASK_ID),
                host_level=host_level,
                created_by=principal.token_id,
            )
            await self._docker.containers.start(container_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._docker.containers.remove(container_id, force=True)
                await self._ownership.forget(Kind.CONTAINER, container_id)
            raise
        return container_id

    async def _require_image(self, image: str) -> None:
        try:
            await self._docker.images.inspect(image)
        except NotFound as exc:
            raise NotFound(
                f"image {image!r} is not on this host (this service never pulls implicitly)", field="image"
            ) from exc

    async def _ensure_network(self, spec: ContainerSpec, principal: Principal) -> None:
        if not spec.network or spec.network in BUILTIN_NETWORKS or spec.network == "host":
            return
        try:
            await self._docker.networks.inspect(spec.network)
        except NotFound:
            labels = managed_labels(app_id=spec.app_id, task_id=spec.task_id)
            try:
                created = await self._docker.networks.create(spec.network, labels=labels)
            except Conflict:
                return  # created meanwhile by someone else: not ours (the policy check decides)
            await self._ownership.record(
                Kind.NETWORK,
                str(created["Id"]),
                name=spec.network,
                app_id=spec.app_id,
                task_id=spec.task_id,
                created_by=principal.token_id,
            )

    async def _ensure_volumes(self, spec: ContainerSpec, principal: Principal) -> None:
        async with self._volumes_lock:  # two runs naming one new volume: the first makes it theirs
            await self._make_volumes(spec, principal)

    async def _make_volumes(self, spec: ContainerSpec, principal: Principal) -> None:
        for source in spec.volumes:
            if source.startswith("/") or self._ownership.owns(Kind.VOLUME, source):
                continue
            try:
                await self._docker.volumes.inspect(source)
            except NotFound:
                # The local driver, no options: a plain volume of this app (never a host path).
                await self._docker.volumes.create(
                    source, labels=managed_labels(app_id=spec.app_id, task_id=spec.task_id)
                )
                await self._ownership.record(
                    Kind.VOLUME,
                    source,
                    name=source,
                    app_id=spec.app_id,
                    task_id=spec.task_id,
                    created_by=principal.token_id,
                )

    async def _wait_for_exit(self, container_id: str) -> tuple[int | None, str]:
        try:
            result = await self._docker.containers.wait(container_id, timeout=self._options.exec_timeout)
            exit_code: int | None = int(result.get("StatusCode", -1))
        except EngineTimeout:
            exit_code = None  # still running after the wait limit; it is left running
        logs = await collect_logs(
            self._docker,
            container_id,
            tty=False,
            tail=None,
            timestamps=False,
            limit=self._options.exec_max_output_bytes,
        )
        return exit_code, logs.logs

    # --- looking up ----------------------------------------------------------------------
    async def list(self, *, all: bool, managed_only: bool = False) -> SummaryList:
        filters = MANAGED_FILTER if managed_only else None
        items = await self._listings.get(
            (all, managed_only), lambda: self._docker.containers.list(all=all, filters=filters)
        )
        tags = await self._image_tags()
        result = []
        for item in items:
            managed = self._ownership.owns(Kind.CONTAINER, item["Id"])
            if managed_only and not managed:
                continue  # a label anyone can set; the record decides
            labels = item.get("Labels") or {}
            ports: dict[str, int | None] = {}
            for port in item.get("Ports") or []:
                key = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
                ports.setdefault(key, port.get("PublicPort"))
            result.append(
                ContainerSummary(
                    id=item["Id"],
                    name=(item.get("Names") or ["/"])[0].lstrip("/"),
                    # The original's shapes: the image's tags, and the state word as `status`.
                    image=tags.get(item.get("ImageID", ""), []),
                    status=item.get("State", ""),
                    image_name=item.get("Image", ""),
                    image_id=item.get("ImageID"),
                    state=item.get("State", ""),
                    status_text=item.get("Status", ""),
                    managed=managed,
                    app_id=labels.get(APP_ID) if managed else None,
                    task_id=labels.get(TASK_ID) if managed else None,
                    ports=ports,
                    created=item.get("Created"),
                )
            )
        return result

    async def _image_tags(self) -> dict[str, StrList]:
        images = await self._listings.get("images", self._docker.images.list)
        return {
            image["Id"]: [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] for image in images
        }

    async def inspect(self, ref: str, principal: Principal) -> dict[str, Any]:
        info = await self._docker.containers.info(ref)
        self._check_app(info, principal, ref)
        # Environment values are secrets: shown to exec tokens for this service's containers only.
        if not (principal.is_admin or (principal.has(Scope.EXEC) and self._may_touch(info, principal))):
            redact_for_read(info.raw)
        return info.raw

    def manageable(self, container_id: str) -> bool:
        """This service's, and without host-level options: what non-admin tokens may act on."""
        owned = self._ownership.get(Kind.CONTAINER, container_id)
        return owned is not None and not owned.host_level

    def _may_touch(self, info: ContainerInfo, principal: Principal) -> bool:
        return principal.is_admin or self.manageable(info.id)

    async def owned(self, ref: str, principal: Principal) -> ContainerInfo:
        """Inspect a container and check the caller may touch it: this service's (by its record,
        never by labels) and not given host-level options by an admin; or the caller is admin."""
        info = await self._docker.containers.info(ref)
        if not self._may_touch(info, principal):
            owned = self._ownership.get(Kind.CONTAINER, info.id)
            reason = "has host-level options" if owned is not None else "was not created by this service"
            raise NotManaged(f"container {ref!r} {reason}; that needs an admin token")
        self._check_app(info, principal, ref)
        return info

    def _check_app(self, info: ContainerInfo, principal: Principal, ref: str) -> None:
        """A token limited to apps reaches the containers of those apps only (by this service's
        record of the container, never by its label)."""
        if principal.apps is not None:
            owned = self._ownership.get(Kind.CONTAINER, info.id)
            principal.require_app(owned.app_id if owned else None, f"container {ref!r}")

    # --- lifecycle -----------------------------------------------------------------------
    async def act(self, ref: str, principal: Principal, action: str, **kwargs: Any) -> ActionResult:
        """start / stop / restart / pause / unpause / kill, on a container the caller owns."""
        info = await self.owned(ref, principal)
        self._listings.clear()
        stopping = info.running and (action in STOPPING_ACTIONS or _ends_process(action, kwargs))
        if stopping:
            await self._stop_notices.before_stop(info.id)
        try:
            await getattr(self._docker.containers, action)(info.id, **kwargs)
        finally:
            if stopping:
                await self._stop_notices.after_stop(info.id)
        after = await self._docker.containers.info(info.id)
        return ActionResult(id=info.id, name=after.name, status=after.status)

    async def remove(self, ref: str, principal: Principal, *, force: bool, volumes: bool) -> RemoveResult:
        info = await self.owned(ref, principal)
        self._listings.clear()
        if info.running:
            await self._stop_notices.before_stop(info.id)
        try:
            await self._docker.containers.remove(info.id, force=force, volumes=volumes)
        finally:
            if info.running:
                await self._stop_notices.after_stop(info.id)
        await self._ownership.forget(Kind.CONTAINER, info.id)
        return RemoveResult(removed=True, id=info.id, name=info.name)

    async def prune(self) -> StrList:
        """Remove this service's stopped containers (by its record: a forged label is not enough)."""
        self._listings.clear()
        stopped = await self._docker.containers.list(
            all=True, filters={**MANAGED_FILTER, "status": ["created", "exited", "dead"]}
        )
        deleted = []
        for item in stopped:
            owned = self._ownership.get(Kind.CONTAINER, item["Id"])
            if owned is None or owned.host_level:
                continue
            with contextlib.suppress(NotFound, Conflict):
                await self._docker.containers.remove(item["Id"])
                await self._ownership.forget(Kind.CONTAINER, item["Id"])
                deleted.append(item["Id"])
        return deleted

    # --- output --------------------------------------------------------------------------
    async def logs(self, ref: str, principal: Principal, *, tail: int | None, timestamps: bool) -> LogsResult:
        info = await self.owned(ref, principal)
        result = await collect_logs(
            self._docker,
            info.id,
            tty=info.tty,
            tail=tail,
            timestamps=timestamps,
            limit=self._options.exec_max_output_bytes,
        )
        result.name = info.name
        return result

    async def exec(
        self,
        ref: str,
        principal: Principal,
        *,
        cmd: StrList,
        workdir: str | None,
        timeout: float | None,
    ) -> ExecResult:
        """Run `cmd` (an argv list, no shell) in the container; output and time are capped."""
        info = await self.owned(ref, principal)
        if not info.running:
            raise Conflict(f"container {ref!r} is not running")
        return await run_exec(
            self._docker,
            info.id,
            cmd,
            workdir=workdir,
            timeout=min(timeout or self._options.exec_timeout, self._options.exec_timeout),
            limit=self._options.exec_max_output_bytes,
        )

    async def stats(self, ref: str) -> StatsResult:
        info = await self._docker.containers.info(ref)
        if not info.running:
            raise Conflict(f"container {ref!r} is not running; it has no live statistics")
        return stats_result(info, await self._docker.containers.stats(info.id))
