"""`POST /apps/{app_id}/deploy`: one deploy operation run by the server, as one task.

Stages: the image (`build`, `pull` or `load`: source.py), `run` (a new container beside the live
one, or in its place when it holds the host port asked for), `health` (an HTTP answer before any
traffic moves), `switch` (every site of the app, and the domain given, pointed at it: health-gated,
undone as a whole if one site refuses), then the release is recorded (once, when the new version
serves), `retire` (the previous container stopped after the drain, kept for a rollback) and
optionally `export`.

A failure or a cancel at any stage leaves the previous release live and serving: the new container
is stopped and kept for inspection (no release names it; the clean-up removes it with its task),
the task ends `error` (or `cancelled`) naming the stage. A client that goes away stops nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.auth import Principal
from docker_manager.errors import (
    DeployInProgress,
    DockerManagerError,
    InvalidInput,
    NotFound,
    UnhealthyContainer,
)
from docker_manager.runner import TaskContext, TaskKind, TaskRecord, TaskRunner, TaskSpec, new_task_id
from docker_manager.schemas.common import APP_ID_RE
from docker_manager.schemas.deploys import DeployRequest, DeployRestartPolicy
from docker_manager.schemas.sites import HealthGate
from docker_manager.services.builds import BuildService
from docker_manager.services.builds.shipping import export_image
from docker_manager.services.containers import ContainerService, ContainerSpec, check_host_port
from docker_manager.services.deploys.localrun import LocalRunService
from docker_manager.services.deploys.moves import move_sites, put_back, sites_to_move, upstream_for
from docker_manager.services.deploys.options import DeployOptions
from docker_manager.services.deploys.progress import Deploy, Progress
from docker_manager.services.deploys.source import obtain_image, plan_source
from docker_manager.services.host.disk import DiskService
from docker_manager.services.images.service import ImageService
from docker_manager.services.releases import ReleaseService
from docker_manager.services.sites import SiteService
from docker_manager.services.swarm.apps import SwarmApps
from docker_manager.util.shield import run_to_the_end

log = logging.getLogger(__name__)

DEPLOY_TASK = "deploy"
_CLAIMED = "-"  # an app's deploy being checked (DM_DEPLOY_QUEUE=refuse), before its task exists


class DeployService:
    def __init__(
        self,
        *,
        docker: Docker,
        runner: TaskRunner,
        builds: BuildService,
        images: ImageService,
        localrun: LocalRunService,
        containers: ContainerService,
        sites: SiteService,
        releases: ReleaseService,
        disk: DiskService,
        swarm: SwarmApps,
        options: DeployOptions,
    ) -> None:
        self._swarm = swarm  # the stages of an app on a swarm
        self._docker = docker
        self._runner = runner
        self._builds = builds
        self._images = images
        self._localrun = localrun
        self._containers = containers
        self._sites = sites
        self._releases = releases
        self._disk = disk
        self._options = options
        self._pending: dict[str, str] = {}  # app id -> its deploy task queued or running

    # --- starting ---------------------------------------------------------------------------
    async def start(self, app_id: str, body: DeployRequest, principal: Principal) -> TaskRecord:
        """Check everything that can be checked (4xx before a task exists), then queue the task."""
        if not APP_ID_RE.fullmatch(app_id):
            raise InvalidInput("app_id: letters, digits, . _ - (64 at most)", field="app_id")
        pending = self._pending.get(app_id)
        if pending is not None and not self._runner.is_live(pending) and pending != _CLAIMED:
            del self._pending[app_id]  # (a task cancelled while queued never ran its clean-up)
            pending = None
        if pending is not None and self._options.queue == "refuse":
            which = "" if pending == _CLAIMED else f" (task {pending})"
            raise DeployInProgress(f"a deploy of {app_id} is queued or running{which}", field="app_id")
        if self._options.queue == "refuse":
            self._pending[app_id] = _CLAIMED  # (the checks below await: a second request must see it)
        try:
            record = await self._checked_start(app_id, body, principal)
        except BaseException:
            if self._pending.get(app_id) == _CLAIMED:
                del self._pending[app_id]
            raise
        return record

    async def _checked_start(self, app_id: str, body: DeployRequest, principal: Principal) -> TaskRecord:
        await self._swarm.check_mode(app_id, body.mode)
        if body.mode == "swarm":
            await self._swarm.check_deploy(app_id, principal)
        if body.port is not None:
            check_host_port(body.port, self._options.forbidden_host_ports, field="port")
        if body.log_driver is not None:  # (a driver that ships logs off the host is an admin's)
            log_config = {"Type": body.log_driver, "Config": dict(body.log_options)}
            await self._containers.policy.check({"HostConfig": {"LogConfig": log_config}}, principal)
        source = await plan_source(
            body, app_id, principal, builds=self._builds, images=self._images, options=self._options
        )
        if body.domain is not None:
            await self._sites.require_nginx()
        # Every site the deploy will move, checked now: another app's file, an admin's site.
        await sites_to_move(self._sites, app_id, body, principal)
        health = body.health
        gate = HealthGate.model_construct(  # (validated as the deploy's body already)
            health_path=health.path,
            expected_status=health.expected_status,
            health_timeout=health.timeout,
            drain_seconds=body.drain_seconds,
        )
        deploy = Deploy(app_id, body, source, principal, gate)
        task_id = new_task_id(DEPLOY_TASK)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            try:
                with metrics.outcome(metrics.SWITCHES, kind="deploy"):
                    async with self._sites.switch.app_locks.hold(app_id):
                        return await self._deploy(ctx, deploy)
            finally:
                if self._pending.get(app_id) == ctx.task_id:
                    del self._pending[app_id]

        self._pending[app_id] = task_id  # (before the task can start, and end)
        try:
            record = await self._runner.submit(
                TaskSpec(
                    task_type=DEPLOY_TASK,
                    work=work,
                    app_id=app_id,
                    task_id=task_id,
                    files_dir=self._options.roots.builds_path / task_id,
                    kind=TaskKind.DEPLOY,
                    stream_fields={"source": source.kind, "domain": body.domain},
                )
            )
        except BaseException:
            if self._pending.get(app_id) == task_id:
                del self._pending[app_id]
            raise
        return record

    # --- the task ---------------------------------------------------------------------------
    async def _deploy(self, ctx: TaskContext, deploy: Deploy) -> dict[str, Any]:
        started, progress = time.monotonic(), Progress()
        await ctx.merge_summary(
            {
                "task_id": ctx.task_id,
                "status": "building",
                "app_id": deploy.app_id,
                "source": deploy.source.kind,
            }
        )
        # What serves now is looked up while the image is made (the app's lock is held: no other
        # deploy, rollback or switch of the app runs), so `run` starts the moment the image exists.
        previous = asyncio.ensure_future(self._live_container(deploy.app_id, deploy.principal))
        try:
            async with self._stage(ctx, deploy.source.stage, progress, f"{deploy.source.kind} to an image"):
                progress.reference, progress.image_id = await obtain_image(
                    ctx,
                    deploy.source,
                    deploy.app_id,
                    deploy.principal,
                    builds=self._builds,
                    localrun=self._localrun,
                    docker=self._docker,
                    options=self._options,
                )
            progress.previous = await previous
            if deploy.body.mode == "swarm":  # (the rest of its stages: services/swarm/apps.py)
                return await self._swarm.deploy(
                    ctx, lambda stage, what: self._stage(ctx, stage, progress, what),
                    app_id=deploy.app_id, body=deploy.body, principal=deploy.principal,
                    reference=progress.reference, image_id=progress.image_id, gate=deploy.gate,
                )  # fmt: skip
        finally:
            previous.cancel()
            if previous.done() and not previous.cancelled():
                previous.exception()  # (read: a failed build's lookup is no "never retrieved" warning)
        try:
            await self._bring_up(ctx, deploy, progress)
        except BaseException:
            await asyncio.shield(self._undo(ctx, deploy, progress))
            raise
        # From the switch on the deploy runs to its end: a cancel then is too late (the sites may
        # already serve the new version), and is answered by finishing.
        result, refused = await run_to_the_end(self._complete(ctx, deploy, progress, started))
        if refused:
            result["cancel"] = "refused: it came after the switch had begun; the deploy finished"
        return result

    async def _bring_up(self, ctx: TaskContext, deploy: Deploy, progress: Progress) -> None:
        """run and health: undone by the caller when they fail or are cancelled."""
        body = deploy.body
        previous = progress.previous
        progress.in_place = bool(previous and body.port and body.port in previous.published_ports.values())
        async with self._stage(ctx, "run", progress, "a new container"):
            if previous is not None and progress.in_place:  # it holds the host port asked for
                await self._containers.act(
                    previous.id, deploy.principal, "stop", timeout=self._options.stop_timeout
                )
            progress.new = await self._run(ctx, deploy, progress.reference)
        async with self._stage(
            ctx, "health", progress, f"port {body.container_port}{deploy.gate.health_path}"
        ):
            upstream = progress.upstream = upstream_for(progress.new, body.container_port)
            address = f"{upstream.address}{deploy.gate.health_path}"
            if body.health.start_period:
                await asyncio.sleep(body.health.start_period)
            status = await self._sites.switch.wait_healthy(
                upstream, deploy.gate, interval=body.health.interval
            )
            progress.health = {"status": "healthy", "http_status": status, "url": f"http://{address}"}
            # Its restart policy from here on: a version that crashes at start is reported as
            # such (by `run` or this check), not restarted in a loop while it is judged.
            policy = {"RestartPolicy": _restart_policy(body.restart_policy)}
            await self._docker.containers.update(progress.new.id, policy)

    async def _complete(
        self, ctx: TaskContext, deploy: Deploy, progress: Progress, started: float
    ) -> dict[str, Any]:
        """switch and the release recorded (undone together if either fails), then retire and
        export, which only report their failures: the new version serves by then."""
        new, upstream = progress.new, progress.upstream
        assert new is not None and upstream is not None
        try:
            moves = await sites_to_move(self._sites, deploy.app_id, deploy.body, deploy.principal)
            if moves:
                async with self._stage(ctx, "switch", progress, f"{len(moves)} site(s)"):
                    kind = "managed" if self._containers.manageable(new.id) else "host"
                    await move_sites(
                        self._sites, moves, replace(upstream, kind=kind), deploy.app_id, progress.switched
                    )
            progress.release = await self._releases.record(
                new.id,
                app_id=deploy.app_id,
                source="deploy",
                principal=deploy.principal,
                task_id=ctx.task_id,
                artefact=str(deploy.source.artefact) if deploy.source.artefact else None,
                health=progress.health,
            )
        except BaseException:
            await self._undo(ctx, deploy, progress)
            raise
        return await self._finish(ctx, deploy, progress, started)

    async def _finish(
        self, ctx: TaskContext, deploy: Deploy, progress: Progress, started: float
    ) -> dict[str, Any]:
        """retire and export (the new version serves already), then the task's result."""
        new, release, upstream = progress.new, progress.release, progress.upstream
        assert new is not None and release is not None and upstream is not None
        retired: list[dict[str, Any]] = []
        if not progress.in_place:
            async with self._stage(ctx, "retire", progress, "the previous container after the drain"):
                retired = await self._retire(deploy.app_id, new, deploy)
        exported: dict[str, Any] = {}
        if deploy.body.export:
            try:
                async with self._stage(ctx, "export", progress, "the image as an artefact"):
                    exported = await export_image(ctx, self._docker, progress.reference, self._disk)
            except DockerManagerError as exc:  # the new version serves: the deploy is done anyway
                exported = {"export": {"status": "error", "error": exc.detail}}
        served = {"container_id": new.id, "container_name": new.name, "host_port": release.host_port}
        await ctx.merge_summary(
            {"status": "successful", "stage": "completed", "release": release.number, **served}
        )
        return {
            "status": "ok",
            "app_id": deploy.app_id,
            "release": release.number,
            "image_id": progress.image_id,
            "tag": progress.reference,
            **served,
            "domain": deploy.body.domain,
            "domains": [move.domain for move in progress.switched],
            "upstream": upstream.address,
            "health": progress.health,
            "retired": retired,
            "stages": progress.timings,
            "seconds": round(time.monotonic() - started, 3),
            **exported,
        }

    @asynccontextmanager
    async def _stage(
        self, ctx: TaskContext, stage: str, progress: Progress, what: str
    ) -> AsyncIterator[None]:
        """A stage's events: starting, then completed or failed (the failure's detail names it)."""
        began = time.monotonic()
        await ctx.event(stage, "starting", message=what)
        try:
            yield
        except DockerManagerError as exc:
            exc.detail = f"{stage}: {exc.detail}"
            await ctx.event(stage, "failed", message=exc.detail, level="error")
            raise
        except asyncio.CancelledError:
            await asyncio.shield(ctx.event(stage, "cancelled", message=f"cancelled during {stage}"))
            raise
        progress.timings[stage] = round(time.monotonic() - began, 3)
        await ctx.event(stage, "completed", message=f"{stage} done in {progress.timings[stage]} s")

    async def _run(self, ctx: TaskContext, deploy: Deploy, reference: str) -> ContainerInfo:
        body = deploy.body
        spec = ContainerSpec(
            image=reference,
            name=f"{deploy.app_id}-{ctx.task_id.removeprefix(DEPLOY_TASK + '-')}",
            ports={f"{body.container_port}/tcp": body.port},
            env=dict(body.env),
            app_id=deploy.app_id,
            task_id=ctx.task_id,
            nano_cpus=round(body.cpus * 1e9) if body.cpus is not None else None,
            memory=body.memory,
            log_driver=body.log_driver,
            log_options=dict(body.log_options),
        )
        run = await self._containers.run(spec, deploy.principal)
        await ctx.merge_summary({"container_id": run.id, "container_name": run.name})
        info = await self._docker.containers.info(run.id)
        if not info.running:
            code = info.state.get("ExitCode")
            raise UnhealthyContainer(f"the new container stopped at once ({info.status}, exit code {code})")
        return info

    async def _live_container(self, app_id: str, principal: Principal) -> ContainerInfo | None:
        """The app's live release's container (what serves now), checked the caller may touch it."""
        items = await self._releases.store.list(app_id)
        live = (await self._releases.engine_view()).live_of(items)
        if live is None or not live.container_id:
            return None
        try:
            return await self._containers.owned(live.container_id, principal)
        except NotFound:
            return None

    async def _undo(self, ctx: TaskContext, deploy: Deploy, progress: Progress) -> None:
        """After a failure or a cancel: the previous version serves again, the new one is stopped
        and kept for inspection."""
        await put_back(self._sites, progress.switched, deploy.app_id)
        if progress.new is not None:
            with contextlib.suppress(Exception):
                await self._containers.act(
                    progress.new.id, deploy.principal, "stop", timeout=self._options.stop_timeout
                )
        if progress.previous is not None and progress.in_place:
            with contextlib.suppress(Exception):
                await self._containers.act(progress.previous.id, deploy.principal, "start")
        kept = progress.new.id if progress.new else None
        with contextlib.suppress(Exception):
            await ctx.merge_summary({"status": "failed", "stage": "rolled back", "container_kept": kept})

    async def _retire(self, app_id: str, new: ContainerInfo, deploy: Deploy) -> list[dict[str, Any]]:
        """After the drain, every other running container of the app's releases stops (kept for a
        rollback): the one that served, and any an earlier, interrupted deploy left running."""
        retired = []
        for index, container_id in enumerate(await self._releases.running_besides(app_id, new.id)):
            try:
                old = await self._containers.owned(container_id, deploy.principal)
            except NotFound:
                continue
            except DockerManagerError as exc:  # (not this caller's: reported, never the deploy's failure)
                retired.append({"status": "error", "id": container_id, "error": exc.detail})
                continue
            gate = deploy.gate if index == 0 else deploy.gate.model_copy(update={"drain_seconds": 0})
            outcome = await self._sites.switch.retire(old, deploy.principal, gate, remove=False)
            if outcome is not None:
                retired.append(outcome)
        return retired


def _restart_policy(asked: DeployRestartPolicy | None) -> dict[str, Any]:
    """The engine's form; by default unless-stopped (apps survive a reboot, a stop is kept)."""
    policy = asked or DeployRestartPolicy()
    return {"Name": policy.name, "MaximumRetryCount": policy.maximum_retry_count}
