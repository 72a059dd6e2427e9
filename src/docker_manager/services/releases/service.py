"""Apps and their releases: every successful deploy recorded with what is needed to run it again.

A release keeps the engine create body of its container (command, entrypoint, env, ports, limits,
restart and log policy, mounts, network, labels) and the image id. Env values are secrets: they
are kept only sealed (`util.sealing`), never in clear in the database or in an answer.

A release's status is read from the engine, never stored: `live` is the newest release whose
container runs; `gone` one whose image is no longer on the host (or that retention pruned);
every other is `retained` and can be rolled back to.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.docker import Docker
from docker_manager.adapters.site_header import managed_sites
from docker_manager.auth import Principal
from docker_manager.errors import NotFound
from docker_manager.runner.summary import Summary
from docker_manager.schemas.containers import RunResult
from docker_manager.schemas.releases import AppDetail, AppView, ReleaseView
from docker_manager.services.containers import ContainerService, ContainerSpec, create_body_of
from docker_manager.services.ownership.record import Kind, Ownership
from docker_manager.services.releases.engine_view import EngineView, host_port_of, read_engine_view
from docker_manager.services.releases.options import ReleaseOptions
from docker_manager.services.releases.retention import RetentionService
from docker_manager.services.releases.store import Release, ReleaseStore
from docker_manager.services.swarm.replicas import AppReplicas, ReplicaReader
from docker_manager.services.tasks.service import find_task_dir
from docker_manager.util.locks import KeyedLocks
from docker_manager.util.sealing import Sealer

log = logging.getLogger(__name__)

IMPORTED_KEY = "releases_imported"


class ReleaseService:
    def __init__(
        self,
        *,
        store: ReleaseStore,
        docker: Docker,
        containers: ContainerService,
        ownership: Ownership,
        sealer: Sealer,
        retention: RetentionService,
        replicas: ReplicaReader,
        options: ReleaseOptions,
    ) -> None:
        self.store = store
        self._replicas = replicas  # swarm apps' replicas, for the app views
        self._docker = docker
        self._containers = containers
        self._ownership = ownership
        self.sealer = sealer
        self._retention = retention  # told after each new release: it keeps the last N
        self._options = options
        self._locks = KeyedLocks()

    # --- recording ---------------------------------------------------------------------------
    async def record(
        self,
        container_id: str,
        *,
        app_id: str,
        source: str,
        principal: Principal | None,
        task_id: str | None = None,
        origin_task_id: str | None = None,
        artefact: str | None = None,
        health: dict[str, Any] | None = None,
        restored_from: int | None = None,
    ) -> Release:
        """Record the running container of a successful deploy as the app's next release."""
        info = await self._docker.containers.info(container_id)
        body = create_body_of(info)
        env = body.pop("Env", None) or []
        image = str(body.get("Image") or "")
        release = Release(
            app_id=app_id,
            number=0,
            source=source,
            image_id=str(info.raw.get("Image") or ""),
            config=body,
            task_id=task_id,
            origin_task_id=origin_task_id,
            tag=None if image.startswith("sha256:") else image or None,
            container_id=info.id,
            container_name=info.name,
            host_port=host_port_of(info),
            env_sealed=self.sealer.seal(env) if env else None,
            artefact=artefact,
            health=health,
            restored_from=restored_from,
            deployed_by=principal.token_id if principal else None,
            deployed_by_name=principal.name if principal else None,
        )
        async with self._locks.hold(app_id):
            stored = await self.store.add(release)
        metrics.RELEASES.labels(source=source).inc()
        log.info("app %s: release %d recorded (%s, container %s)", app_id, stored.number, source, info.name)
        self._retention.after_deploy(app_id)
        return stored

    async def record_spec(
        self,
        spec: dict[str, Any],
        *,
        app_id: str,
        image_id: str,
        source: str,
        principal: Principal | None,
        task_id: str,
        health: dict[str, Any] | None = None,
        restored_from: int | None = None,
    ) -> Release:
        """Record a swarm app's service spec (written by task `task_id`) as the app's next release."""
        container = spec["TaskTemplate"]["ContainerSpec"]
        env = list(container.get("Env") or [])
        kept = {**spec, "TaskTemplate": {**spec["TaskTemplate"], "ContainerSpec": dict(container)}}
        kept["TaskTemplate"]["ContainerSpec"].pop("Env", None)
        release = Release(
            app_id=app_id,
            number=0,
            source=source,
            image_id=image_id,
            config={"swarm": kept},
            task_id=task_id,
            tag=str(container.get("Image") or "") or None,
            env_sealed=self.sealer.seal(env) if env else None,
            health=health,
            restored_from=restored_from,
            deployed_by=principal.token_id if principal else None,
            deployed_by_name=principal.name if principal else None,
        )
        async with self._locks.hold(app_id):
            stored = await self.store.add(release)
        metrics.RELEASES.labels(source=source).inc()
        log.info(
            "app %s: release %d recorded (%s, service spec of %s)", app_id, stored.number, source, task_id
        )
        self._retention.after_deploy(app_id)
        return stored

    async def record_deploy(self, container_id: str, **fields: Any) -> Release | None:
        """`record` for a deploy that has succeeded already: a failure to record it is logged, never
        turned into a failed deploy (the container serves)."""
        try:
            return await self.record(container_id, **fields)
        except Exception:
            log.exception("could not record the release of %s (app %s)", container_id, fields.get("app_id"))
            return None

    async def run_container(self, spec: ContainerSpec, principal: Principal, *, detach: bool) -> RunResult:
        """`/docker/run` and `/docker/run-extended`: a running container with an app id is a release."""
        result = await self._containers.run(spec, principal, detach=detach)
        if spec.app_id and detach and result.status == "running":
            await self.record_deploy(
                result.id, app_id=spec.app_id, source="run", principal=principal, task_id=spec.task_id
            )
        return result

    async def import_existing(self) -> int:
        """Once per installation: containers made before releases existed become each app's releases."""
        if await self.store.count():
            return 0
        owned = sorted(
            (
                o
                for o in (
                    self._ownership.get(Kind.CONTAINER, ref) for ref in self._ownership.refs(Kind.CONTAINER)
                )
                if o
            ),
            key=lambda o: o.created_at,
        )
        imported = 0
        for item in owned:
            if not item.app_id:
                continue
            try:
                await self.record(
                    item.ref, app_id=item.app_id, source="imported", principal=None, task_id=item.task_id
                )
            except NotFound:
                continue
            imported += 1
        return imported

    # --- reading -----------------------------------------------------------------------------
    async def running_besides(self, app_id: str, container_id: str) -> list[str]:
        """The app's releases' containers that run, other than `container_id` (after a switch,
        what must stop: never two containers of one app serving)."""
        engine = await self.engine_view()
        return sorted(
            {
                release.container_id
                for release in await self.store.list(app_id)
                if release.container_id
                and release.container_id != container_id
                and engine.states.get(release.container_id) == "running"
            }
        )

    async def engine_view(self, releases: list[Release] | None = None) -> EngineView:
        """What the engine says now; with `releases` that include a swarm app's, its service too."""
        swarm = any(release.on_swarm for release in releases or [])
        return await read_engine_view(self._containers, self._docker, swarm=swarm)

    def view(self, release: Release, engine: EngineView, live: int | None) -> ReleaseView:
        return ReleaseView(
            app_id=release.app_id,
            release=release.number,
            created_at=release.created_at,
            source=release.source,
            status=engine.status_of(release, live),
            task_id=release.task_id,
            origin_task_id=release.origin_task_id,
            image_id=release.image_id,
            tag=release.tag,
            container_id=release.container_id,
            container_name=release.container_name,
            container_state=engine.states.get(release.container_id or ""),
            host_port=engine.host_port(release),
            restored_from=release.restored_from,
            deployed_by=release.deployed_by_name,
            deployed_by_token=release.deployed_by,
            health=release.health,
            missing=engine.missing_of(release),
        )

    async def apps(self) -> list[AppView]:
        everything = await self.store.list()
        engine = await self.engine_view(everything)
        domains = await self._domains()
        by_app: dict[str, list[Release]] = {}
        for release in everything:
            by_app.setdefault(release.app_id, []).append(release)
        swarm = await self._replicas.of_apps([a for a, items in by_app.items() if items[0].on_swarm])
        return [
            await self._app_view(app_id, items, engine, domains.get(app_id, []), swarm.get(app_id))
            for app_id, items in sorted(by_app.items())
        ]

    async def app(self, app_id: str) -> AppDetail:
        items = await self.store.list(app_id)
        if not items:
            raise NotFound(f"no app {app_id!r}: it has no release", field="app_id")
        engine = await self.engine_view(items)
        domains = await self._domains()
        swarm = (await self._replicas.of_apps([app_id])).get(app_id) if items[0].on_swarm else None
        summary = await self._app_view(app_id, items, engine, domains.get(app_id, []), swarm)
        live = summary.live_release
        return AppDetail(
            **summary.model_dump(), recent_releases=[self.view(r, engine, live) for r in items[:10]]
        )

    async def releases(self, app_id: str, *, limit: int) -> list[ReleaseView]:
        items = await self.store.list(app_id)
        if not items:
            raise NotFound(f"no app {app_id!r}: it has no release", field="app_id")
        engine = await self.engine_view(items)
        live = engine.live_of(items)
        return [self.view(r, engine, live.number if live else None) for r in items[:limit]]

    async def _app_view(
        self,
        app_id: str,
        items: list[Release],
        engine: EngineView,
        domains: list[str],
        swarm: AppReplicas | None,
    ) -> AppView:
        live = engine.live_of(items)
        shown = live or items[0]
        return AppView(
            app_id=app_id,
            mode="swarm" if items[0].on_swarm else "container",
            replicas_desired=swarm.desired if swarm else None,
            replicas=swarm.replicas if swarm else None,
            live_release=live.number if live else None,
            container_id=shown.container_id,
            container_name=shown.container_name,
            state=engine.states.get(shown.container_id or ""),
            host_port=engine.host_port(shown),
            domains=domains,
            health=await self._health(shown),
            releases=len(items),
            latest_release=items[0].number,
        )

    async def _domains(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for _, header in await asyncio.to_thread(managed_sites, list(self._options.nginx_conf_dirs)):
            if header.app_id:
                found.setdefault(header.app_id, []).append(header.domain)
        return found

    async def _health(self, release: Release) -> dict[str, Any] | None:
        """The latest health verdict in the deploy's build.info.json, else what the deploy recorded."""
        folder_task = release.origin_task_id or release.task_id
        if folder_task:
            folder = await asyncio.to_thread(find_task_dir, self._options.roots, folder_task)
            summary = await asyncio.to_thread(Summary.read, folder)
            extra = summary.model_extra if summary is not None else None
            if extra and "healthchecksstatus" in extra:
                return {
                    "healthcheck": extra.get("healthcheck"),
                    "healthchecksstatus": extra.get("healthchecksstatus"),
                    "checked_at": extra.get("end_check_time"),
                }
        return release.health
