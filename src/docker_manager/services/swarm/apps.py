"""Swarm apps: the deploy operation's stages when an app runs as replicas on a swarm.

After the image exists (the deploy's own `build`/`pull`/`load`): `push` (to `DM_SWARM_REGISTRY`,
so that every node can pull it; the replicas then run it by digest), `rollout` (the whole service
spec written, Swarm's start-first rollout followed to its end: see rollout.py), `health` (every new
replica answers HTTP from this host, where nginx reaches it), `switch` (the app's sites follow the
service's replicas), then the release (source `swarm`, the spec kept). A rollout that fails ends
with the previous release serving (the engine rolled it back, or this service did); a first
deploy that fails leaves no service behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.docker import Docker, ProgressError
from docker_manager.adapters.site_header import Upstream
from docker_manager.auth import Principal
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    RolloutFailed,
    UnhealthyContainer,
    UpstreamError,
)
from docker_manager.runner import TaskContext
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.schemas.sites import HealthGate
from docker_manager.services.deploys.moves import SiteMove, move_sites, put_back, sites_to_move
from docker_manager.services.releases import ReleaseService
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm.follower import ReplicaFollower
from docker_manager.services.swarm.manager import as_manager
from docker_manager.services.swarm.options import SwarmOptions
from docker_manager.services.swarm.replicas import read_replicas, servers_of, swarm_upstream
from docker_manager.services.swarm.rollout import Written, converge, write_spec
from docker_manager.services.swarm.spec import (
    SwarmPlan,
    replicas_of,
    repository_name,
    service_name,
    service_spec,
)

Stage = Callable[[str, str], AbstractAsyncContextManager[None]]


class SwarmApps:
    def __init__(
        self,
        *,
        docker: Docker,
        sites: SiteService,
        releases: ReleaseService,
        follower: ReplicaFollower,
        options: SwarmOptions,
    ) -> None:
        self.docker = docker
        self._sites = sites
        self._releases = releases
        self.follower = follower
        self.options = options

    # --- checks before a task exists ---------------------------------------------------------
    async def check_mode(self, app_id: str, mode: str) -> None:
        """An app is one kind or the other for good: its releases say which."""
        items = await self._releases.store.list(app_id)
        if items and items[0].on_swarm != (mode == "swarm"):
            kind = "replicas on the swarm" if items[0].on_swarm else "a container on this host"
            raise Conflict(f"{app_id} runs as {kind}: give the other kind another app id", field="mode")

    async def check_deploy(self, app_id: str, principal: Principal) -> None:
        """This engine manages a swarm; the app's service is this service's; a swarm of more than
        one node has a registry to share images through."""
        principal.require_app(app_id)
        await as_manager(self.docker, self.docker.swarm.inspect)
        service = await self.service(app_id)
        if service is not None and not await self._releases.store.list(app_id):
            raise Conflict(
                f"a service named {service_name(app_id)} exists that this service did not deploy",
                field="app_id",
            )
        if self.options.registry is None:
            nodes = await as_manager(self.docker, self.docker.nodes.list)
            if len(nodes) > 1:
                raise Conflict(
                    f"a swarm of {len(nodes)} nodes needs DM_SWARM_REGISTRY: the nodes pull the "
                    "image from it",
                    field="mode",
                )

    async def service(self, app_id: str) -> dict[str, Any] | None:
        try:
            return await as_manager(self.docker, lambda: self.docker.services.inspect(service_name(app_id)))
        except DockerManagerError as exc:
            if exc.code == "not_found":
                return None
            raise

    # --- the deploy's stages -----------------------------------------------------------------
    async def deploy(
        self,
        ctx: TaskContext,
        stage: Stage,
        *,
        app_id: str,
        body: DeployRequest,
        principal: Principal,
        reference: str,
        image_id: str,
        gate: HealthGate,
    ) -> dict[str, Any]:
        started = time.monotonic()
        current = await self.service(app_id)
        image = reference
        if self.options.registry is not None:
            async with stage("push", f"the image to {self.options.registry}"):
                image = await self._push(ctx, app_id, reference)
        spec = service_spec(plan_of(body, app_id=app_id, task_id=ctx.task_id, image=image, current=current))
        replicas = replicas_of({"Spec": spec})
        await ctx.merge_summary({"status": "rolling out", "image": image, "replicas": replicas})
        written = await self._roll_out(ctx, stage, spec, replicas)
        switched: list[SiteMove] = []
        try:
            servers = await self._healthy(ctx, stage, app_id, gate, body.health.interval)
            upstream = swarm_upstream(service_name(app_id), servers)
            moves = [
                move
                for move in await sites_to_move(self._sites, app_id, body, principal)
                if not _serving(move, upstream)
            ]
            if moves:
                async with stage("switch", f"{len(moves)} site(s) to {len(servers)} replica(s)"):
                    await move_sites(self._sites, moves, upstream, app_id, switched)
            release = await self._releases.record_spec(
                spec, app_id=app_id, image_id=image_id, source="swarm", principal=principal,
                task_id=ctx.task_id, health={"status": "healthy", "replicas": len(servers)},
            )  # fmt: skip
        except BaseException:
            await asyncio.shield(self._undo(app_id, written, switched))
            raise
        metrics.SWARM_ROLLOUTS.labels(outcome="completed").inc()
        self.follower.apps.add(app_id)
        await ctx.merge_summary({"status": "successful", "stage": "completed", "release": release.number})
        return {
            "status": "ok",
            "app_id": app_id,
            "mode": "swarm",
            "release": release.number,
            "image_id": image_id,
            "image": image,
            "service": service_name(app_id),
            "replicas": replicas,
            "servers": list(servers),
            "domain": body.domain,
            "domains": [move.domain for move in switched],
            "seconds": round(time.monotonic() - started, 3),
        }

    async def _push(self, ctx: TaskContext, app_id: str, reference: str) -> str:
        """The image in the registry, as `<registry>/<repo>@<digest>`."""
        assert self.options.registry is not None
        repository = f"{self.options.registry}/{repository_name(app_id)}"
        tag = ctx.task_id.rpartition("-")[2]
        await self.docker.images.tag(reference, repo=repository, tag=tag)
        digest = None
        try:
            async with self.docker.images.push(
                repository, tag=tag, auth=self.options.registry_auth or "e30="
            ) as progress:
                async for record in progress:
                    aux = record.get("aux") or {}
                    digest = aux.get("Digest") or digest
                    if record.get("status") and record.get("id"):
                        await ctx.output([{"stream": "push", "text": f"{record['id']}: {record['status']}"}])
        except ProgressError as exc:
            raise UpstreamError(f"the registry refused the image: {exc.message}") from None
        finally:
            with contextlib.suppress(DockerManagerError):  # (the digest names it from now on)
                await self.docker.images.remove(f"{repository}:{tag}")
        if not digest:
            raise UpstreamError("the registry did not say the pushed image's digest")
        return f"{repository}@{digest}"

    async def _roll_out(self, ctx: TaskContext, stage: Stage, spec: dict[str, Any], replicas: int) -> Written:
        name = str(spec["Name"])
        async with stage("rollout", f"{replicas} replica(s) of {name}, start-first"):
            written = await write_spec(self.docker, name, spec, auth=self.options.registry_auth)
            try:
                await converge(
                    self.docker, written, task_id=ctx.task_id, replicas=replicas,
                    timeout=self.options.rollout_timeout,
                    progress=lambda text: ctx.event("rollout", "progress", message=text),
                )  # fmt: skip
            except RolloutFailed:
                metrics.SWARM_ROLLOUTS.labels(outcome="rolled_back").inc()
                if written.created:  # (nothing served before: no service left behind)
                    with contextlib.suppress(DockerManagerError):
                        await self.docker.services.remove(written.service_id)
                raise
            except asyncio.CancelledError:  # (cancelled mid-rollout: back to what served)
                await asyncio.shield(self._undo("", written, []))
                raise
        return written

    async def _healthy(
        self, ctx: TaskContext, stage: Stage, app_id: str, gate: HealthGate, interval: float
    ) -> tuple[str, ...]:
        """Every replica of this deploy answers HTTP where nginx will reach it (node address and
        host port, from this host): where the site's requests go."""
        async with stage("health", f"each replica, {gate.health_path}"):
            replicas = (await read_replicas(self.docker, [service_name(app_id)]))[service_name(app_id)]
            mine = [r for r in replicas if r.serving and r.release_task == ctx.task_id]
            servers = servers_of(mine)
            checks = [
                self._sites.switch.wait_healthy(swarm_upstream("", (server,)), gate, interval=interval)
                for server in servers
            ]
            await asyncio.gather(*checks)
            if not servers and mine:
                raise UnhealthyContainer("no replica is reachable from this host (no node address)")
        return servers

    async def _undo(self, app_id: str, written: Written, switched: list[SiteMove]) -> None:
        """After a failure past the rollout: the sites as they were, the service back to the spec
        it had (a first deploy's service removed)."""
        await put_back(self._sites, switched, app_id)
        metrics.SWARM_ROLLOUTS.labels(outcome="undone").inc()
        with contextlib.suppress(DockerManagerError):
            if written.created:
                await self.docker.services.remove(written.service_id)
                return
            service = await self.docker.services.inspect(written.service_id)
            version = int((service.get("Version") or {}).get("Index") or 0)
            await self.docker.services.update(
                written.service_id, version=version, spec=service["Spec"], auth=None, rollback=True
            )


def plan_of(
    body: DeployRequest, *, app_id: str, task_id: str, image: str, current: dict[str, Any] | None
) -> SwarmPlan:
    """What a deploy asks for; replicas and placement not given stay as the service has them."""
    replicas = body.replicas if body.replicas is not None else (replicas_of(current) if current else 1)
    if body.placement is not None:
        placement = tuple(body.placement)
    else:
        placement = tuple(_constraints(current)) if current else ()
    return SwarmPlan(
        app_id=app_id,
        task_id=task_id,
        image=image,
        container_port=body.container_port,
        replicas=replicas,
        env=dict(body.env),
        placement=placement,
        memory=body.memory,
        nano_cpus=round(body.cpus * 1e9) if body.cpus is not None else None,
        health_path=body.health.path,
        health_interval=body.health.interval,
        health_timeout=body.health.timeout,
        start_period=body.health.start_period,
    )


def _serving(move: SiteMove, upstream: Upstream) -> bool:
    """A site that sends to these replicas already (the follower saw them first): nothing to do."""
    before = move.before
    return (
        before is not None
        and move.tls is None
        and before.domain == move.domain
        and (before.upstream.service, before.upstream.servers, before.upstream.down)
        == (upstream.service, upstream.servers, upstream.down)
    )


def _constraints(service: dict[str, Any]) -> list[str]:
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    return [str(c) for c in placement.get("Constraints") or []]
