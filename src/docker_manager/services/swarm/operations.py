"""A swarm app's rollback and scale, each a task holding the app's lock (no deploy, rollback or
switch of the app runs beside it).

- Rollback (`POST /apps/{app_id}/rollback` of a swarm app): the release's recorded spec (image by
  digest, env unsealed, limits, placement, health) written again with the replica count the app
  has now (a scale is no release), rolled out start-first like a deploy, recorded as a release
  (source `rollback`, `restored_from`). The sites follow the service: nothing to switch.
- Scale (`POST /apps/{app_id}/scale`): only the replica count changes; done when as many replicas
  of the current spec run (or the deadline passes, with the engine's reasons).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from docker_manager import metrics
from docker_manager.auth import Principal
from docker_manager.errors import Conflict, NotFound, RolloutFailed
from docker_manager.runner import TaskContext, TaskKind, TaskRunner, TaskSpec, new_task_id
from docker_manager.schemas.releases import RollbackRequest, RollbackStarted, ScaleRequest, ScaleStarted
from docker_manager.services.releases import ReleaseService
from docker_manager.services.releases.rules import choose_target
from docker_manager.services.releases.store import Release
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm.apps import SwarmApps
from docker_manager.services.swarm.follower import ReplicaFollower
from docker_manager.services.swarm.logs import AppLog, open_app_log
from docker_manager.services.swarm.rollout import converge, write_spec
from docker_manager.services.swarm.spec import for_release, replicas_of, service_name, spec_task_id
from docker_manager.util.sealing import SealError

ROLLBACK_TASK = "rollback"
SCALE_TASK = "scale"


class SwarmOperations:
    def __init__(
        self,
        *,
        apps: SwarmApps,
        releases: ReleaseService,
        sites: SiteService,
        follower: ReplicaFollower,
        runner: TaskRunner,
    ) -> None:
        self._apps = apps
        self._releases = releases
        self._sites = sites
        self._follower = follower
        self._runner = runner

    async def is_swarm_app(self, app_id: str) -> bool:
        items = await self._releases.store.list(app_id)
        return bool(items) and items[0].on_swarm

    # --- rollback ----------------------------------------------------------------------------
    async def rollback(self, app_id: str, body: RollbackRequest, principal: Principal) -> RollbackStarted:
        principal.require_app(app_id)
        target, live = await self._plan(app_id, body.release)
        task_id = new_task_id(ROLLBACK_TASK)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            async with self._sites.switch.app_locks.hold(app_id):
                current, now_live = await self._plan(app_id, target.number)  # (again: a deploy may have run)
                return await self._rollback(ctx, current, now_live, principal)

        await self._submit(ROLLBACK_TASK, task_id, app_id, work, TaskKind.ROLLBACK, release=target.number)
        return RollbackStarted(
            task_id=task_id,
            status="started",
            app_id=app_id,
            release=target.number,
            from_release=live.number if live else None,
        )

    async def _plan(self, app_id: str, number: int | None) -> tuple[Release, Release | None]:
        items = await self._releases.store.list(app_id)
        if not items:
            raise NotFound(f"no app {app_id!r}: it has no release", field="app_id")
        live = (await self._releases.engine_view(items)).live_of(items)
        target = choose_target(items, number, live)
        if target.pruned_at is not None or not target.on_swarm:
            raise Conflict(f"release {target.number} cannot run again (pruned, or not a swarm release)")
        return target, live

    async def _rollback(
        self, ctx: TaskContext, target: Release, live: Release | None, principal: Principal
    ) -> dict[str, Any]:
        started = time.monotonic()
        try:
            env = self._releases.sealer.open(target.env_sealed) if target.env_sealed else []
        except SealError as exc:
            raise Conflict(f"release {target.number}'s environment cannot be opened: {exc}") from None
        spec = for_release(target.config, env, ctx.task_id)
        current = await self._apps.service(target.app_id)
        replicas = replicas_of(current) if current else 1
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        await ctx.event("rollout", "starting", message=f"release {target.number}, {replicas} replica(s)")
        await self._converged(ctx, spec, ctx.task_id, replicas, change_spec=True)
        release = await self._releases.record_spec(
            spec, app_id=target.app_id, image_id=target.image_id, source="rollback", principal=principal,
            task_id=ctx.task_id, health=target.health, restored_from=target.number,
        )  # fmt: skip
        await self._follower.refresh()  # (the sites point at the new replicas before the answer)
        await ctx.event("rollout", "completed", message=f"release {target.number} runs again")
        return {
            "status": "ok",
            "app_id": target.app_id,
            "mode": "swarm",
            "release": release.number,
            "restored_release": target.number,
            "from_release": live.number if live else None,
            "image": spec["TaskTemplate"]["ContainerSpec"]["Image"],
            "replicas": replicas,
            "seconds": round(time.monotonic() - started, 3),
        }

    # --- scale -------------------------------------------------------------------------------
    async def scale(self, app_id: str, body: ScaleRequest, principal: Principal) -> ScaleStarted:
        principal.require_app(app_id)
        if not await self.is_swarm_app(app_id):
            raise Conflict(f"{app_id} is not a swarm app: only its replicas can be scaled", field="app_id")
        current = await self._apps.service(app_id)
        if current is None:
            raise NotFound(f"{app_id}'s service {service_name(app_id)} is not on the swarm", field="app_id")
        task_id = new_task_id(SCALE_TASK)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            async with self._sites.switch.app_locks.hold(app_id):
                service = await self._apps.service(app_id)
                if service is None:
                    raise NotFound(f"{app_id}'s service is gone", field="app_id")
                spec = {**service["Spec"], "Mode": {"Replicated": {"Replicas": body.replicas}}}
                await self._converged(ctx, spec, spec_task_id(service), body.replicas, change_spec=False)
                await self._follower.refresh()
                return {"status": "ok", "app_id": app_id, "replicas": body.replicas}

        await self._submit(SCALE_TASK, task_id, app_id, work, TaskKind.DEPLOY, replicas=body.replicas)
        return ScaleStarted(
            task_id=task_id,
            status="started",
            app_id=app_id,
            replicas=body.replicas,
            from_replicas=replicas_of(current),
        )

    # --- log ---------------------------------------------------------------------------------
    async def log(self, app_id: str) -> AppLog:
        """A swarm app's log (its replicas' lines merged); a container app's is its container's."""
        items = await self._releases.store.list(app_id)
        if not items:
            raise NotFound(f"no app {app_id!r}: it has no release", field="app_id")
        if not items[0].on_swarm:
            raise Conflict(
                f"{app_id} is not a swarm app: its container's log is at /docker/logs/{{container}}",
                field="app_id",
            )
        return await open_app_log(self._apps.docker, app_id)

    # --- shared ------------------------------------------------------------------------------
    async def _converged(
        self, ctx: TaskContext, spec: dict[str, Any], task_id: str | None, replicas: int, *, change_spec: bool
    ) -> None:
        name = str(spec["Name"])
        written = await write_spec(
            self._apps.docker, name, spec, auth=self._apps.options.registry_auth, change_spec=change_spec
        )
        try:
            await converge(
                self._apps.docker, written, task_id=task_id, replicas=replicas,
                timeout=self._apps.options.rollout_timeout,
                progress=lambda text: ctx.event("rollout", "progress", message=text),
            )  # fmt: skip
        except RolloutFailed:
            metrics.SWARM_ROLLOUTS.labels(outcome="rolled_back").inc()
            raise
        metrics.SWARM_ROLLOUTS.labels(outcome="completed").inc()

    async def _submit(
        self,
        task_type: str,
        task_id: str,
        app_id: str,
        work: Callable[[TaskContext], Awaitable[dict[str, Any]]],
        kind: TaskKind,
        **fields: Any,
    ) -> None:
        await self._runner.submit(
            TaskSpec(
                task_type=task_type,
                work=work,
                app_id=app_id,
                task_id=task_id,
                files_dir=self._apps.options.roots.builds_path / task_id,
                kind=kind,
                stream_fields={"app_id": app_id, **fields},
            )
        )
