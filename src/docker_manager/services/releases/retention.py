"""Retention: old releases, old tasks and dangling build images go, so the disk does not fill up.

- Releases: after each deploy (and at every clean-up) each app keeps its newest `DM_KEEP_RELEASES`
  releases and its live one. An older release loses its retired container, its image (unless a
  kept release or any container still uses it) and its `.tar.lz4` artefacts in the builds and
  upload roots; it stays listed, as `gone`.
- Tasks: final tasks older than `DM_TASK_RETENTION_DAYS` lose their rows, events, outbox rows and
  folders, unless a kept release refers to them.
- Images this service built that no tag names any more (dangling) go, unless a kept release runs
  on them.

Only objects this service's record says it created are removed, never a running container, and
never anything the engine still needs (removals are never forced). Every removal is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from docker_manager import metrics
from docker_manager.adapters.docker import Docker
from docker_manager.adapters.docker.images import deleted_ids
from docker_manager.errors import DockerManagerError, NotFound
from docker_manager.runner.store import TaskStore
from docker_manager.runner.summary import Summary
from docker_manager.schemas.host import GcReport
from docker_manager.services.containers import ContainerService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.ownership.record import Kind, Ownership
from docker_manager.services.releases.engine_view import EngineView, read_engine_view
from docker_manager.services.releases.options import ReleaseOptions
from docker_manager.services.releases.store import Release, ReleaseStore
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)

ARTEFACT_SUFFIX = ".tar.lz4"


@dataclass
class Kept:
    """What the releases still need: their images, artefacts and task folders."""

    images: set[str] = field(default_factory=set)
    artefacts: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)

    def add(self, release: Release) -> None:
        self.images.add(release.image_id)
        if release.artefact:
            self.artefacts.add(release.artefact)
        self.tasks |= release.task_ids


class RetentionService:
    def __init__(
        self,
        *,
        store: ReleaseStore,
        containers: ContainerService,
        docker: Docker,
        ownership: Ownership,
        tasks: TaskStore,
        options: ReleaseOptions,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._audit = audit
        self._store = store
        self._containers = containers
        self._docker = docker
        self._ownership = ownership
        self._tasks = tasks
        self._options = options
        self._clock = clock
        self._lock = asyncio.Lock()  # one clean-up at a time
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    # --- scheduling ----------------------------------------------------------------------------
    def after_deploy(self, app_id: str) -> None:
        """Prune the app's old releases in the background: a deploy never waits for it."""
        task = asyncio.create_task(self._quietly(app_id), name=f"retention-{app_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quietly(self, app_id: str) -> None:
        try:
            async with self._lock:
                report = GcReport()
                await self._prune_app(app_id, report, await read_engine_view(self._containers, self._docker))
                metrics.GC_RECLAIMED.inc(report.bytes_reclaimed)
        except Exception:
            log.exception("retention of app %s failed", app_id)

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._every_interval(), name="retention-loop")

    async def stop(self) -> None:
        tasks = [*self._background, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._options.gc_interval)
            try:
                report = await self.collect()
                log.info("clean-up: %d bytes reclaimed", report.bytes_reclaimed)
            except Exception:
                log.exception("the periodic clean-up failed")

    # --- the clean-up --------------------------------------------------------------------------
    async def collect(self, now: datetime | None = None) -> GcReport:
        """Everything at once: old releases of every app, old tasks, dangling build images."""
        now = now or self._clock()
        report = GcReport()
        async with self._lock:
            engine = await read_engine_view(self._containers, self._docker)
            apps = sorted({r.app_id for r in await self._store.list()})
            for app_id in apps:
                await self._prune_app(app_id, report, engine)
            kept = await self._kept()
            await self._old_tasks(now, kept, report)
            await self._dangling_images(kept, report)
            if self._audit is not None:
                cutoff = now - timedelta(days=self._options.audit_retention_days)
                report.audit_entries = await self._audit.prune(cutoff)
        metrics.GC_RECLAIMED.inc(report.bytes_reclaimed)
        return report

    async def _kept(self, *, pruning: Collection[tuple[str, int]] = ()) -> Kept:
        """What every release of every app that stays still needs (all apps: two apps may share an
        image or an artefact)."""
        kept = Kept()
        for release in await self._store.list():
            if release.pruned_at is None and (release.app_id, release.number) not in pruning:
                kept.add(release)
        return kept

    async def _prune_app(self, app_id: str, report: GcReport, engine: EngineView) -> None:
        items = await self._store.list(app_id)  # newest first
        if items and items[0].on_swarm:  # (what its service runs: read for swarm apps only)
            engine = await read_engine_view(self._containers, self._docker, swarm=True)
        live = engine.live_of(items)
        keep = self._options.keep_releases
        old = [
            r
            for r in items[keep:]
            if r.pruned_at is None
            and r is not live
            # still serving something: not this clean-up's to stop
            and not (r.container_id and engine.states.get(r.container_id) == "running")
        ]
        if not old:
            return
        kept = await self._kept(pruning={(r.app_id, r.number) for r in old})
        for release in old:
            before = len(report.errors)
            await self._remove_container(release, report)
            await self._remove_artefact(release, kept, report)
            # Read after the container went: any other container on the image keeps it.
            used_images = await self._images_in_use()
            if release.image_id not in kept.images and release.image_id not in used_images:
                await self._remove_image(release.image_id, {release.tag} if release.tag else set(), report)
            if len(report.errors) > before:
                continue  # not marked: the next clean-up tries again
            await self._store.update(app_id, release.number, pruned_at=self._clock())
            report.releases_pruned.append(f"{app_id}#{release.number}")
            log.info("retention: app %s release %d pruned", app_id, release.number)

    async def _images_in_use(self) -> set[str]:
        return {str(c.get("ImageID")) for c in await self._docker.containers.list(all=True)}

    async def _remove_container(self, release: Release, report: GcReport) -> None:
        ref = release.container_id
        owned = self._ownership.get(Kind.CONTAINER, ref) if ref else None
        if ref is None or owned is None or owned.host_level:
            return
        try:
            await self._docker.containers.remove(ref)
        except NotFound:
            pass
        except DockerManagerError as exc:
            report.errors.append(f"container {release.container_name}: {exc.detail}")
            return
        await self._ownership.forget(Kind.CONTAINER, ref)
        report.containers.append(release.container_name or ref)
        log.info(
            "retention: removed container %s of %s#%d", release.container_name, release.app_id, release.number
        )

    async def _remove_image(self, image_id: str, own_tags: set[str], report: GcReport) -> None:
        """Untag the tags this service gave it, then remove it if no other tag names it: an image
        the engine still needs, or that someone else tagged, stays."""
        if not self._ownership.owns(Kind.IMAGE, image_id):
            return
        try:
            image = await self._docker.images.inspect(image_id)
            size = int(image.get("Size") or 0)
            for tag in image.get("RepoTags") or []:
                if tag in own_tags:
                    await self._docker.images.remove(tag)
            if (await self._docker.images.inspect(image_id)).get("RepoTags"):
                return  # tagged by someone else: theirs to remove
            answer = await self._docker.images.remove(image_id)
        except NotFound:
            await self._ownership.forget(Kind.IMAGE, image_id)
            return
        except DockerManagerError as exc:
            report.errors.append(f"image {image_id}: {exc.detail}")
            return
        await self._ownership.forget(Kind.IMAGE, image_id)
        # The engine removes the untagged parents with it (an unfinished build's earlier steps).
        for parent in deleted_ids(answer) - {image_id}:
            await self._ownership.forget(Kind.IMAGE, parent)
        report.images.append(image_id)
        report.bytes_reclaimed += size
        log.info("retention: removed image %s (%d bytes)", image_id, size)

    async def _remove_artefact(self, release: Release, kept: Kept, report: GcReport) -> None:
        """The artefact the release was loaded from, when nothing that stays needs it and its
        folder's summary says it is this app's. Never any other file."""
        if not release.artefact or release.artefact in kept.artefacts:
            return
        roots = [self._options.roots.builds_path, self._options.roots.upload_path]
        path = Path(release.artefact)
        if path.parent.name in kept.tasks or not await asyncio.to_thread(
            _app_artefact, path, release.app_id, roots
        ):
            return
        size = await asyncio.to_thread(_unlink_regular, path)
        if size is not None:
            report.artefacts.append(str(path))
            report.bytes_reclaimed += size
            log.info("retention: removed artefact %s (%d bytes)", path, size)

    async def _old_tasks(self, now: datetime, kept: Kept, report: GcReport) -> None:
        cutoff = now - timedelta(days=self._options.task_retention_days)
        roots = [self._options.roots.builds_path, self._options.roots.upload_path]
        while old := await self._tasks.final_before(cutoff, exclude={*kept.tasks, *report.tasks}):
            ids = [r.id for r in old]
            # A folder another task still uses (a localrun writes into its build's) stays.
            in_use = {Path(f) for f in await self._tasks.folders_in_use(excluding=ids)}
            await self._tasks.purge(ids)
            await self._leftover_containers(set(ids), kept, report)
            for record in old:
                report.tasks.append(record.id)
                folders = {Path(record.files_dir)} if record.files_dir else set()
                folders |= {root / record.id for root in roots}
                for folder in folders - in_use:
                    if folder.name in kept.tasks:
                        continue
                    size = await asyncio.to_thread(_remove_task_folder, folder, roots)
                    if size is not None:
                        report.task_folders.append(str(folder))
                        report.bytes_reclaimed += size
                log.info("retention: removed task %s (ended %s)", record.id, record.finished_at)

    async def _leftover_containers(self, tasks: set[str], kept: Kept, report: GcReport) -> None:
        """The stopped containers these tasks made that no release names: what a failed or
        cancelled deploy kept for inspection goes with its task."""
        named = {r.container_id for r in await self._store.list() if r.container_id}
        for ref in self._ownership.refs(Kind.CONTAINER):
            owned = self._ownership.get(Kind.CONTAINER, ref)
            if owned is None or owned.task_id not in tasks or ref in named or owned.task_id in kept.tasks:
                continue
            try:
                info = await self._docker.containers.info(ref)
                if info.running:
                    continue
                await self._docker.containers.remove(ref)
            except NotFound:
                pass
            except DockerManagerError as exc:
                report.errors.append(f"container {ref[:12]}: {exc.detail}")
                continue
            await self._ownership.forget(Kind.CONTAINER, ref)
            report.containers.append(owned.name or ref[:12])

    async def _dangling_images(self, kept: Kept, report: GcReport) -> None:
        dangling = await self._docker.images.list(filters={"dangling": ["true"]})
        used = await self._images_in_use()
        for image in dangling:
            image_id = str(image["Id"])
            if image_id in kept.images or image_id in used:
                continue
            await self._remove_image(image_id, set(), report)


def _inside(path: Path, roots: list[Path]) -> bool:
    real = path.resolve()
    return any(real != root and real.is_relative_to(root) for root in roots)


def _app_artefact(path: Path, app_id: str, roots: list[Path]) -> bool:
    """A .tar.lz4 inside the roots whose folder's build.info.json records this app. Blocking."""
    if not path.name.endswith(ARTEFACT_SUFFIX) or not _inside(path, roots):
        return False
    summary = Summary.read(path.parent)
    return summary is not None and app_id in (summary.app, summary.tag_name)


def _unlink_regular(path: Path) -> int | None:
    """Remove a regular file (never through a symlink); its size, or None if there was none."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        os.unlink(path)
    except FileNotFoundError:
        return None
    return info.st_size


def _remove_task_folder(folder: Path, roots: list[Path]) -> int | None:
    """Remove a task folder that is a real directory directly inside one of the roots."""
    try:
        if folder.is_symlink() or not folder.is_dir() or folder.parent.resolve() not in roots:
            return None
    except OSError:
        return None
    size = sum(
        os.lstat(os.path.join(top, name)).st_size for top, _, names in os.walk(folder) for name in names
    )
    shutil.rmtree(folder, ignore_errors=True)
    return size
