"""`POST /docker/localrun`: decompress an lz4 artefact straight into `docker load`, then run it.

It runs as a task of type `localrun` whose files are the build's folder (so the runtime side's
logs follow the build's), with stages `decompiling` then `running`. The route waits for it and
answers with the container; the health check is scheduled and reported in build.info.json.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import Docker, ProgressError
from docker_manager.auth import Principal
from docker_manager.config import Roots
from docker_manager.errors import InvalidInput, NotManaged
from docker_manager.runner import TaskContext, TaskKind, TaskRunner, TaskSpec
from docker_manager.runner.files import MANIFEST, read_json
from docker_manager.runner.summary import Summary
from docker_manager.schemas.common import APP_ID_RE
from docker_manager.schemas.containers import RunResult
from docker_manager.schemas.deploys import LocalRunRequest, LocalRunResult
from docker_manager.services.containers import ContainerService, ContainerSpec
from docker_manager.services.deploys.options import DeployOptions
from docker_manager.services.healthchecks.checker import HealthChecker
from docker_manager.services.host.disk import DiskService
from docker_manager.services.images.service import ImageService
from docker_manager.services.ownership.record import Kind, Ownership
from docker_manager.services.releases.service import ReleaseService
from docker_manager.services.tasks.service import find_task_dir
from docker_manager.util.lz4file import ArchiveError, decompress_file, decompressed_size
from docker_manager.util.paths import confine, plain_dir

LOCALRUN_TASK = "localrun"
_LOADED_RE = re.compile(r"Loaded image(?: ID)?: (\S+)")
_TASK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_UPLOAD_FOLDERS = 2000  # the listing stays cheap whatever the upload root holds


@dataclass(frozen=True)
class Artefact:
    path: Path
    folder: Path
    expected_sha256: str | None
    summary: Summary


def artefact_file(raw: str, roots: Roots, *, field: str = "lz4_path") -> Path:
    """An artefact: a regular file inside the upload or builds root (blocking)."""
    path = confine(raw, [roots.upload_path, roots.builds_path], field=field)
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise InvalidInput("the lz4 file does not exist", field=field) from exc
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{field} is not a regular file", field=field)
    return path


def _locate(body: LocalRunRequest, path: Path, roots: Roots) -> Artefact:
    """Find (or make) the task folder the run's files go to (blocking: run in a thread)."""
    folder = find_task_dir(roots, body.task_id)
    if folder.parent == roots.builds_path and not folder.is_dir():
        folder = roots.upload_path / body.task_id  # a new runtime folder, the README's first choice
    plain_dir(folder, create=True)  # never a symlink: the task's files are written in it
    manifest = read_json(folder / MANIFEST) or {}
    expected = manifest.get("sha256") if manifest.get("artefact") == path.name else None
    return Artefact(
        path=path, folder=folder, expected_sha256=expected, summary=Summary.read(folder) or Summary()
    )


@dataclass(frozen=True)
class Upload:
    """An artefact waiting in the upload root: the dashboard offers it for a deploy."""

    path: str  # relative to the upload root
    task_id: str | None  # its task folder's name (the build's task id); None for a loose file
    size: int
    mtime: float


def list_uploads(roots: Roots, limit: int = 100) -> list[Upload]:
    """`*.tar.lz4` regular files in the upload root and in its task folders (named as task ids,
    never through a symlink), newest first (blocking)."""
    root = roots.upload_path
    found: list[Upload] = []
    if not root.is_dir():
        return found
    candidates: list[tuple[Path, str | None]] = [(root, None)]
    with os.scandir(root) as entries:
        candidates += [
            (Path(e.path), e.name)
            for e in entries
            if e.is_dir(follow_symlinks=False) and _TASK_ID_RE.fullmatch(e.name)
        ]
    for folder, task_id in candidates[:MAX_UPLOAD_FOLDERS]:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".tar.lz4") and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    relative = str(Path(entry.path).relative_to(root))
                    found.append(Upload(relative, task_id, info.st_size, info.st_mtime))
    found.sort(key=lambda upload: upload.mtime, reverse=True)
    return found[:limit]


def _app_id(body: LocalRunRequest, summary: Summary) -> str | None:
    if body.app_id:
        return body.app_id
    for candidate in (summary.app, summary.tag_name):
        if candidate and APP_ID_RE.fullmatch(candidate):
            return candidate
    return None


class LocalRunService:
    def __init__(
        self,
        *,
        docker: Docker,
        runner: TaskRunner,
        containers: ContainerService,
        images: ImageService,
        ownership: Ownership,
        health: HealthChecker,
        releases: ReleaseService,
        disk: DiskService,
        options: DeployOptions,
    ) -> None:
        self._releases = releases
        self._disk = disk
        self._docker = docker
        self._runner = runner
        self._containers = containers
        self._images = images
        self._ownership = ownership
        self._health = health
        self._options = options

    async def run(self, body: LocalRunRequest, principal: Principal) -> LocalRunResult:
        """Load and run, answering when the task has ended (`POST /docker/localrun`)."""
        record = await self._runner.run_and_wait(await self._task(body, principal))
        return LocalRunResult.model_validate({**(record.result or {}), "localrun_task_id": record.id})

    async def start(self, body: LocalRunRequest, principal: Principal) -> str:
        """The same task, answered as soon as it is queued (the dashboard's deploy): its id."""
        record = await self._runner.submit(await self._task(body, principal))
        return record.id

    async def load_in(
        self, ctx: TaskContext, lz4_path: str, app_id: str, principal: Principal
    ) -> tuple[str, str | None]:
        """Load an artefact as a step of another task (a deploy): its checksum checked when its
        folder's manifest names it; the image id and tag."""
        path = await asyncio.to_thread(
            confine,
            lz4_path,
            [self._options.roots.upload_path, self._options.roots.builds_path],
            field="artefact",
        )
        manifest = await asyncio.to_thread(read_json, path.parent / MANIFEST) or {}
        expected = manifest.get("sha256") if manifest.get("artefact") == path.name else None
        artefact = Artefact(path=path, folder=path.parent, expected_sha256=expected, summary=Summary())
        return await self._decompile(ctx, artefact, app_id, principal)

    async def uploads(self) -> list[Upload]:
        """The artefacts waiting in the upload root (the dashboard's deploy form offers them)."""
        return await asyncio.to_thread(list_uploads, self._options.roots)

    async def _task(self, body: LocalRunRequest, principal: Principal) -> TaskSpec:
        path = await asyncio.to_thread(artefact_file, body.lz4_path, self._options.roots)
        needed = await asyncio.to_thread(decompressed_size, path)
        await self._disk.require_engine(needed, what="loading the image")  # 507 before anything is made
        artefact = await asyncio.to_thread(_locate, body, path, self._options.roots)
        app_id = _app_id(body, artefact.summary)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            return await self._localrun(ctx, body, artefact, app_id, principal)

        return TaskSpec(
            task_type=LOCALRUN_TASK,
            work=work,
            app_id=app_id,
            files_dir=artefact.folder,
            kind=TaskKind.LOCALRUN,
            stream_fields={"build_task_id": body.task_id, "lz4_path": str(artefact.path)},
        )

    async def _localrun(
        self,
        ctx: TaskContext,
        body: LocalRunRequest,
        artefact: Artefact,
        app_id: str | None,
        principal: Principal,
    ) -> dict[str, Any]:
        image_id, tag = await self._decompile(ctx, artefact, app_id, principal)
        run = await self._run(
            ctx, ContainerSpec.from_localrun(body, image=tag or image_id, app_id=app_id), principal
        )
        host_port = next((port for port in run.ports.values() if port), None)
        health = await self._health.schedule(
            folder=artefact.folder,
            container_id=run.id,
            host_port=host_port,
            path=body.healthcheck_path,
            after=body.healthcheck_time or self._options.healthcheck_time,
        )
        section = _localrun_section(body, artefact, app_id, image_id, tag, run)
        release = None
        if app_id:
            release = await self._releases.record_deploy(
                run.id,
                app_id=app_id,
                source="localrun",
                principal=principal,
                task_id=ctx.task_id,
                origin_task_id=body.task_id,
                artefact=str(artefact.path),
                health=health,
            )
        await ctx.merge_summary(
            {
                "status": "building",
                "stage": "running",
                "container_id": run.id,
                "container_name": run.name,
                "host_port": host_port,
                **health,
                "localrun": section,
                "release": release.number if release else None,
            }
        )
        return {
            "status": "ok",
            "task_id": body.task_id,
            "image_id": image_id,
            "tag": tag,
            "container": section["container"],
            "container_id": run.id,
            "container_name": run.name,
            "host_port": host_port,
            "app_id": app_id,
            "generated_name": run.name,
            "name_generated": body.name is None,
            "release": release.number if release else None,
            **health,
        }

    async def _decompile(
        self, ctx: TaskContext, artefact: Artefact, app_id: str | None, principal: Principal
    ) -> tuple[str, str | None]:
        """Stage `decompiling`: the artefact streamed into the engine's image load."""
        await ctx.merge_summary({"status": "building", "stage": "decompiling", "app_id": app_id})
        await ctx.event(
            "decompiling",
            "starting",
            message=f"decompiling {artefact.path.name}",
            lz4_path=str(artefact.path),
            checksum_verified=artefact.expected_sha256 is not None,
        )
        image_id, tag = await self._load(ctx, artefact, app_id, principal)
        await ctx.event(
            "decompiling",
            "completed",
            message=f"image loaded id={image_id} tag={tag or ''}",
            image_id=image_id,
            tag=tag,
        )
        return image_id, tag

    async def _run(self, ctx: TaskContext, spec: ContainerSpec, principal: Principal) -> RunResult:
        await ctx.merge_summary({"stage": "running"})
        await ctx.event("running", "starting", message="running container", image=spec.image)
        run = await self._containers.run(spec, principal)
        await ctx.event(
            "running",
            "completed",
            message=f"run completed container_id={run.id} container_name={run.name}",
            container_id=run.id,
            container_name=run.name,
            host_port=next((port for port in run.ports.values() if port), None),
        )
        return run

    async def _load(
        self, ctx: TaskContext, artefact: Artefact, app_id: str | None, principal: Principal
    ) -> tuple[str, str | None]:
        # One load at a time from the tag snapshot to the check after: two loads interleaved
        # could each take the other's moved tag for the way things were.
        async with self._images.load_lock:
            return await self._load_checked(ctx, artefact, app_id, principal)

    async def _load_checked(
        self, ctx: TaskContext, artefact: Artefact, app_id: str | None, principal: Principal
    ) -> tuple[str, str | None]:
        before = await self._images.tag_map()
        archive = decompress_file(
            artefact.path, expected_sha256=artefact.expected_sha256, max_bytes=self._options.max_image_bytes
        )
        loaded: list[str] = []
        try:
            async with self._docker.images.load(archive) as progress:
                async for record in progress:
                    text = str(record.get("stream") or record.get("status") or "").strip()
                    if text:
                        await ctx.output([{"stream": "load", "text": text}])
                        loaded.extend(_LOADED_RE.findall(text))
        except ArchiveError as exc:
            raise InvalidInput(f"the artefact cannot be loaded: {exc}", field="lz4_path") from exc
        except ProgressError as exc:
            raise InvalidInput(f"the engine refused the archive: {exc.message}", field="lz4_path") from exc
        tags = [name for name in loaded if not name.startswith("sha256:")]
        ids = [name for name in loaded if name.startswith("sha256:")]
        reference = tags[0] if tags else (ids[0] if ids else None)
        if reference is None:
            raise InvalidInput("the archive held no image", field="lz4_path")
        image_id = str((await self._docker.images.inspect(reference))["Id"])
        restored = await self._images.restore_foreign_tags(before, principal)
        if restored:
            raise NotManaged(
                f"the archive moves tags of images this service did not build ({', '.join(restored)}); "
                "they were put back, and loading such an archive needs an admin token",
                field="lz4_path",
            )
        if image_id not in before.values() or self._ownership.owns(Kind.IMAGE, image_id):
            # A new image (or one of ours): this service's from now on. A copy of someone else's
            # image stays theirs.
            await self._ownership.record(
                Kind.IMAGE,
                image_id,
                name=tags[0] if tags else None,
                app_id=app_id,
                task_id=ctx.task_id,
                created_by=principal.token_id,
            )
        return image_id, tags[0] if tags else None


def _localrun_section(
    body: LocalRunRequest,
    artefact: Artefact,
    app_id: str | None,
    image_id: str,
    tag: str | None,
    run: RunResult,
) -> dict[str, Any]:
    """The summary's `localrun` section: what is needed to know and redo this run."""
    volume = {"name": body.volume_name, "mount_path": body.mount_path, "mode": body.mode}
    return {
        "lz4_path": str(artefact.path),
        "image_id": image_id,
        "image_tag": tag,
        "container": {"id": run.id, "name": run.name, "status": run.status},
        "resources": {"cpu": body.cpu, "cpuset": body.cpuset, "memory": body.memory},
        "app_id": app_id,
        "generated_name": run.name,
        "name_generated": body.name is None,
        "volume": volume if body.volume_name else None,
        "ports_requested": body.ports,
        # Environment values are secrets: only their names are kept.
        "env": dict.fromkeys(body.env, "<redacted>"),
        "command": body.command,
        "internal_port_key": next(iter(body.ports), None),
    }
