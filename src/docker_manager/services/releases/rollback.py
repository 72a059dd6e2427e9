"""`POST /apps/{app_id}/rollback`: run an earlier release again, exactly as it was recorded.

A task of type `rollback` (stages `preparing`, `starting`, `health`, `switching` or `stopping`,
`retiring`). The new container gets the release's create body (image id, command, env, ports,
limits, labels); only its name and, beside a live one, its host port differ.

- The app has a site: the release starts beside the live container on a free port, must answer
  HTTP, then every site of the app is pointed at it (verified reloads; undone if one fails), then
  the live container is stopped after the drain. Nothing changes if any step before fails.
- No site: the app keeps its host port. The live container stops, the release starts; if it does
  not come up healthy, it is removed and the previous container is started again.

The rollback is itself a release (source `rollback`, `restored_from` the release it ran again).
A swarm app's rollback is its own (services/swarm/operations.py): its release's spec rolled out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.adapters.site_header import SiteHeader, Upstream
from docker_manager.auth import Principal
from docker_manager.errors import Conflict, DockerManagerError, NotFound, NotManaged, UnhealthyContainer
from docker_manager.runner import TaskContext, TaskKind, TaskRunner, TaskSpec
from docker_manager.runner.runner import new_task_id
from docker_manager.schemas.releases import RollbackRequest, RollbackStarted
from docker_manager.services.containers import ContainerService, check_host_port
from docker_manager.services.releases.engine_view import host_port_of
from docker_manager.services.releases.options import ReleaseOptions
from docker_manager.services.releases.rules import (
    check_runnable,
    choose_target,
    keep_host_ports,
    upstream_for,
)
from docker_manager.services.releases.service import ReleaseService
from docker_manager.services.releases.store import Release
from docker_manager.services.releases.swarm import SwarmRollbacks
from docker_manager.services.sites.switch import TrafficSwitch
from docker_manager.util.sealing import SealError

ROLLBACK_TASK = "rollback"
_ROLLBACK_SUFFIX = re.compile(r"-rb-[0-9a-f]{6}$")
# Without a published port, a container counts as up when it still runs after this long.
SETTLE_SECONDS = 2.0

Site = tuple[Path, SiteHeader]


@dataclass
class Plan:
    """What a rollback is about to do, checked before the task starts and again inside it."""

    app_id: str
    target: Release
    live: Release | None
    config: dict[str, Any]


class RollbackService:
    def __init__(
        self,
        *,
        swarm: SwarmRollbacks,
        releases: ReleaseService,
        containers: ContainerService,
        docker: Docker,
        switch: TrafficSwitch,
        runner: TaskRunner,
        options: ReleaseOptions,
    ) -> None:
        self._swarm = swarm
        self._releases = releases
        self._containers = containers
        self._docker = docker
        self._switch = switch
        self._runner = runner
        self._options = options

    async def start(self, app_id: str, body: RollbackRequest, principal: Principal) -> RollbackStarted:
        if await self._swarm.is_swarm_app(app_id):
            return await self._swarm.rollback(app_id, body, principal)
        plan = await self._plan(app_id, body.release)
        # Refused now (403), before anything stops: a release an admin made with host-level
        # options runs again for an admin only.
        await self._containers.policy.check(plan.config, principal, recreated=True)
        task_id = new_task_id(ROLLBACK_TASK)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            with metrics.outcome(metrics.SWITCHES, kind="rollback"):
                async with self._switch.app_locks.hold(app_id):
                    # Checked again inside: another deploy may have run while this one queued.
                    current = await self._plan(app_id, plan.target.number)
                    return await self._rollback(ctx, current, body, principal)

        await self._runner.submit(
            TaskSpec(
                task_type=ROLLBACK_TASK,
                work=work,
                app_id=app_id,
                task_id=task_id,
                files_dir=self._options.roots.builds_path / task_id,
                kind=TaskKind.ROLLBACK,
                stream_fields={"app_id": app_id, "release": plan.target.number},
            )
        )
        return RollbackStarted(
            task_id=task_id,
            status="started",
            app_id=app_id,
            release=plan.target.number,
            from_release=plan.live.number if plan.live else None,
        )

    # --- planning ----------------------------------------------------------------------------
    async def _plan(self, app_id: str, number: int | None) -> Plan:
        items = await self._releases.store.list(app_id)
        if not items:
            raise NotFound(f"no app {app_id!r}: it has no release", field="app_id")
        engine = await self._releases.engine_view(items)
        live = engine.live_of(items)
        target = choose_target(items, number, live)
        check_runnable(target, engine)
        config = dict(target.config)
        config["Image"] = target.image_id  # the exact image, whatever its tag points at now
        if target.env_sealed:
            try:
                config["Env"] = self._releases.sealer.open(target.env_sealed)
            except SealError as exc:
                raise Conflict(
                    f"release {target.number}'s environment cannot be opened: {exc} "
                    "(was DM_SECRET_KEY_FILE replaced?)",
                    field="release",
                ) from None
        return Plan(app_id=app_id, target=target, live=live, config=config)

    # --- the task ----------------------------------------------------------------------------
    async def _rollback(
        self, ctx: TaskContext, plan: Plan, gate: RollbackRequest, principal: Principal
    ) -> dict[str, Any]:
        target, live = plan.target, plan.live
        sites = [
            site for site in await asyncio.to_thread(self._switch.sites) if site[1].app_id == plan.app_id
        ]
        if not principal.is_admin and any(header.upstream.kind == "host" for _, header in sites):
            raise NotManaged("a site of this app points at something only an admin manages", field="app_id")
        live_info = await self._live_container(live, principal)
        await _announce(ctx, plan, [header.domain for _, header in sites])
        name = f"{_ROLLBACK_SUFFIX.sub('', target.container_name or plan.app_id)}-rb-{secrets.token_hex(3)}"
        if sites:
            new, details = await self._beside(ctx, plan, name, sites, live_info, gate, principal)
        else:
            new, details = await self._in_place(ctx, plan, name, live_info, gate, principal)
        # Recorded as soon as it serves, whatever happens next (a cancel during the drain).
        release = await asyncio.shield(
            self._releases.record(
                new.id,
                app_id=plan.app_id,
                source="rollback",
                principal=principal,
                task_id=ctx.task_id,
                origin_task_id=target.origin_task_id or target.task_id,
                artefact=target.artefact,
                health=details.get("health"),
                restored_from=target.number,
            )
        )
        if sites:
            details["old_container"] = await self._retire(ctx, live_info, gate, principal)
        # Never two containers of the app running: one an earlier deploy left (the release's own
        # original, say, when it was never retired) stops too.
        details["also_stopped"] = await self._stop_others(plan.app_id, new.id, live_info, principal)
        result = {
            "status": "ok",
            "app_id": plan.app_id,
            "release": release.number,
            "restored_release": target.number,
            "from_release": live.number if live else None,
            "container_id": new.id,
            "container_name": new.name,
            "host_port": release.host_port,
            "image_id": target.image_id,
            **details,
        }
        await ctx.merge_summary(
            {"status": "successful", "stage": "completed", "container_id": new.id, "container_name": new.name}
        )
        return result

    async def _live_container(self, live: Release | None, principal: Principal) -> ContainerInfo | None:
        if live is None or not live.container_id:
            return None
        try:
            return await self._containers.owned(live.container_id, principal)
        except NotFound:
            return None

    async def _start(self, ctx: TaskContext, plan: Plan, name: str, principal: Principal) -> ContainerInfo:
        await ctx.event("starting", "starting", message=f"starting release {plan.target.number} as {name}")
        new_id = await self._containers.create_and_start(
            plan.config, name=name, principal=principal, recreated=True
        )
        info = await self._docker.containers.info(new_id)
        await ctx.event(
            "starting",
            "completed",
            message=f"started {name}",
            container_id=new_id,
            host_port=host_port_of(info),
        )
        return info

    async def _healthy(
        self, ctx: TaskContext, info: ContainerInfo, upstream: Upstream | None, gate: RollbackRequest
    ) -> dict[str, Any]:
        """The new container answers HTTP as required (or, without a port, still runs)."""
        await ctx.event("health", "starting", message="waiting for the new container to answer")
        if upstream is not None:
            status = await self._switch.wait_healthy(upstream, gate)
            health = {
                "status": "healthy",
                "http_status": status,
                "url": f"http://{upstream.address}{gate.health_path}",
            }
        else:
            await asyncio.sleep(SETTLE_SECONDS)
            after = await self._docker.containers.info(info.id)
            if not after.running:
                raise UnhealthyContainer(f"the new container stopped ({after.status}) right after it started")
            health = {"status": "running"}
        await ctx.event("health", "completed", message=f"new container {health['status']}", health=health)
        return health

    async def _beside(
        self,
        ctx: TaskContext,
        plan: Plan,
        name: str,
        sites: list[Site],
        live_info: ContainerInfo | None,
        gate: RollbackRequest,
        principal: Principal,
    ) -> tuple[ContainerInfo, dict[str, Any]]:
        """With a site: start beside the live one on free ports, check, point every site at it."""
        host = dict(plan.config.get("HostConfig") or {})
        host["PortBindings"] = {
            key: [{"HostIp": self._options.publish_host_ip, "HostPort": ""}]
            for key in (host.get("PortBindings") or {})
        }
        plan.config["HostConfig"] = host
        new = await self._start(ctx, plan, name, principal)
        kind = "managed" if self._containers.manageable(new.id) else "host"
        switched: list[tuple[Site, dict[str, Any]]] = []
        try:
            upstreams = [replace(upstream_for(header, live_info, new), kind=kind) for _, header in sites]
            health = await self._healthy(ctx, new, upstreams[0], gate)
            for other in upstreams[1:]:
                if other.address != upstreams[0].address:
                    await self._switch.wait_healthy(other, gate)
            await ctx.event("switching", "starting", message=f"pointing {len(sites)} site(s) at {name}")
            for site, upstream in zip(sites, upstreams, strict=True):
                path, header = site
                reload = await self._switch.point(
                    path, domain=header.domain, upstream=upstream, app_id=plan.app_id
                )
                switched.append((site, reload))
            await ctx.event("switching", "completed", message="sites switched", upstream=upstreams[0].address)
        except BaseException:
            await self._undo_switch(switched, plan.app_id)
            with contextlib.suppress(Exception):
                await self._containers.remove(new.id, principal, force=True, volumes=False)
            raise
        return new, {
            "health": health,
            "upstream": upstreams[0].address,
            "sites": [
                {"domain": site[1].domain, "conf_path": str(site[0]), "nginx_reload": r}
                for site, r in switched
            ],
        }

    async def _retire(
        self, ctx: TaskContext, live_info: ContainerInfo | None, gate: RollbackRequest, principal: Principal
    ) -> dict[str, Any] | None:
        await ctx.event("retiring", "starting", message="draining, then stopping the previous container")
        retired = await self._switch.retire(live_info, principal, gate, remove=False)
        await ctx.event("retiring", "completed", message="previous container retired", old_container=retired)
        return retired

    async def _stop_others(
        self, app_id: str, new_id: str, live_info: ContainerInfo | None, principal: Principal
    ) -> list[str]:
        stopped = []
        for container_id in await self._releases.running_besides(app_id, new_id):
            if live_info is not None and container_id == live_info.id:
                continue  # (retired above, after its drain)
            with contextlib.suppress(DockerManagerError):
                await self._containers.act(
                    container_id, principal, "stop", timeout=self._options.switch_stop_timeout
                )
                stopped.append(container_id)
        return stopped

    async def _undo_switch(self, switched: list[tuple[Site, dict[str, Any]]], app_id: str) -> None:
        for (path, header), _ in reversed(switched):
            with contextlib.suppress(Exception):
                await self._switch.point(path, domain=header.domain, upstream=header.upstream, app_id=app_id)

    async def _in_place(
        self,
        ctx: TaskContext,
        plan: Plan,
        name: str,
        live_info: ContainerInfo | None,
        gate: RollbackRequest,
        principal: Principal,
    ) -> tuple[ContainerInfo, dict[str, Any]]:
        """No site: the app keeps its host port; the live container makes way, and comes back
        if the release does not come up (or the task is cancelled)."""
        if live_info is not None:
            keep_host_ports(plan.config, live_info)
        for bindings in (plan.config.get("HostConfig") or {}).get("PortBindings", {}).values():
            for binding in bindings or []:
                if binding.get("HostPort"):
                    check_host_port(
                        int(binding["HostPort"]), self._options.forbidden_host_ports, field="release"
                    )
        new: ContainerInfo | None = None
        try:
            if live_info is not None:
                await ctx.event("stopping", "starting", message=f"stopping {live_info.name}")
                await self._containers.act(
                    live_info.id, principal, "stop", timeout=self._options.switch_stop_timeout
                )
                await ctx.event("stopping", "completed", message=f"stopped {live_info.name}")
            new = await self._start(ctx, plan, name, principal)
            port = host_port_of(new)
            health = await self._healthy(ctx, new, Upstream("127.0.0.1", port) if port else None, gate)
        except BaseException as exc:
            await asyncio.shield(self._restore(ctx, new, live_info, principal, exc))
            raise
        old = {"id": live_info.id, "status": "exited"} if live_info else None
        return new, {"health": health, "old_container": old}

    async def _restore(
        self,
        ctx: TaskContext,
        new: ContainerInfo | None,
        live_info: ContainerInfo | None,
        principal: Principal,
        exc: BaseException,
    ) -> None:
        """Undo an in-place rollback: the new container goes, the previous one starts again."""
        if new is not None:
            with contextlib.suppress(Exception):
                await self._containers.remove(new.id, principal, force=True, volumes=False)
        if live_info is None:
            return
        try:
            await self._containers.act(live_info.id, principal, "start")
        except DockerManagerError as failed:
            note = f"the previous container could not be started again: {failed.detail}"
        else:
            note = "the previous container was started again"
            with contextlib.suppress(Exception):
                await ctx.event("stopping", "restored", message=f"{live_info.name} started again")
        if isinstance(exc, DockerManagerError):
            exc.detail = f"{exc.detail}; {note}"


async def _announce(ctx: TaskContext, plan: Plan, domains: list[str]) -> None:
    """Stage `preparing`: what is about to happen, in the summary and the events."""
    target, live = plan.target, plan.live
    await ctx.merge_summary(
        {
            "status": "building",
            "stage": "preparing",
            "app_id": plan.app_id,
            "rollback": {"release": target.number, "from_release": live.number if live else None},
        }
    )
    await ctx.event(
        "preparing",
        "completed",
        message=f"rolling back {plan.app_id} to release {target.number}",
        release=target.number,
        from_release=live.number if live else None,
        image_id=target.image_id,
        sites=domains,
    )
