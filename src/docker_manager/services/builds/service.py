"""Builds as tasks: `/docker/build`, `/docker/build-stream` and `/docker/build/start`.

A build runs as a task of kind "build" (at most `DM_MAX_CONCURRENT_BUILDS` at once, builds of one
app in order). Its folder `{builds_dir}/{task_id}/` gets the API README's files. Inline Dockerfile
content is added to the context stream sent to the engine, never written into the user's folder
before or during the build, so no file of the user's can be overwritten. With `cleanup: false`
the caller asks to keep it there: it is written after the build, and never over an existing file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.sftp import SftpTarget
from docker_manager.auth import Principal
from docker_manager.errors import BuildFailed, Conflict
from docker_manager.runner import (
    LOG,
    Status,
    TaskContext,
    TaskKind,
    TaskRecord,
    TaskRunner,
    TaskSpec,
    follow,
    new_task_id,
)
from docker_manager.runner.files import DOCKERFILE_PARSED, DOCKERFILE_USED, LogBatch
from docker_manager.services.builds.claims import ImageClaims
from docker_manager.services.builds.dockerfile import image_name_for, parse_dockerfile
from docker_manager.services.builds.engine import EngineJob, EnginePass
from docker_manager.services.builds.options import BuildOptions
from docker_manager.services.builds.output import LOG_TAIL, BuildOutput
from docker_manager.services.builds.plan import BuildPlan, BuildSource, plan_build, sftp_target
from docker_manager.services.builds.shipping import export_image, upload_folder
from docker_manager.services.host.disk import DiskService
from docker_manager.services.images.service import ImageService
from docker_manager.services.ownership.record import Ownership
from docker_manager.util.files import tree_size, write_new_file

log = logging.getLogger(__name__)

BUILD_TASK = "docker_build"


class BuildService:
    def __init__(
        self,
        *,
        docker: Docker,
        runner: TaskRunner,
        images: ImageService,
        ownership: Ownership,
        disk: DiskService,
        options: BuildOptions,
    ) -> None:
        self._docker = docker
        self._disk = disk
        self._runner = runner
        self._images = images
        self._ownership = ownership
        self._claims = ImageClaims(docker, ownership)
        self._engine = EnginePass(docker, self._claims, options)
        self._options = options

    # --- planning (all validation happens in `plan`, before anything starts) -------------------
    async def plan(self, source: BuildSource) -> BuildPlan:
        return await asyncio.to_thread(plan_build, source, self._options.context_paths)

    def sftp_target(
        self, *, host: str | None, port: int | None, username: str | None, password: str | None
    ) -> SftpTarget | None:
        """Where build/start uploads to: the request's fields over the `DM_SFTP_*` settings."""
        return sftp_target(self._options.sftp, host=host, port=port, username=username, password=password)

    # --- starting ------------------------------------------------------------------------------
    async def start(self, plan: BuildPlan, principal: Principal, *, task_id: str | None) -> TaskRecord:
        task_id = task_id or new_task_id(BUILD_TASK)
        files_dir = self._options.builds_path / task_id
        if await asyncio.to_thread(files_dir.exists):
            raise Conflict(f"task id {task_id!r} is already in use", field="task_id")
        if plan.export and plan.tag is None:
            plan.tag = f"{image_name_for(plan.app_id or task_id)}:latest"
        await self._images.check_tag(plan.tag, principal)
        plan.created_by = principal.token_id

        async def work(ctx: TaskContext) -> dict[str, Any]:
            return await self._build(ctx, plan)

        return await self._runner.submit(
            TaskSpec(
                task_type=BUILD_TASK,
                work=work,
                app_id=plan.app_id,
                task_id=task_id,
                files_dir=files_dir,
                kind=TaskKind.BUILD,
                stream_fields={
                    "tag": plan.tag,
                    "context_path": str(plan.context_dir) if plan.context_dir else None,
                    "dockerfile": plan.dockerfile_used,
                    "inline": plan.inline,
                },
            )
        )

    async def stream_view(self, task_id: str, plan: BuildPlan) -> AsyncIterator[dict[str, Any]]:
        """The build-stream response: what the task does, as it happens, then a summary line."""
        meta = {"dockerfile": plan.dockerfile_used, "inline": plan.inline}
        yield {"task_id": task_id, "status": "started", "tag": plan.tag, **meta}
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        store, bus = self._runner.store, self._runner.bus
        async for event in follow(store, bus, task_id, stop=self._runner.closing):
            if event is None or event.data.get("final"):
                continue
            if event.status == LOG:
                for line in event.data.get("lines", []):
                    if line.get("text", "").strip():
                        tail.append(line["text"])
                    yield {
                        "task_id": task_id,
                        "stream": line.get("text", ""),
                        "source": line.get("stream"),
                        **{k: v for k, v in line.items() if k.startswith("step_")},
                        **meta,
                    }
            else:
                yield {
                    "task_id": task_id,
                    "stage": event.stage,
                    "status": event.status,
                    **event.data,
                    **meta,
                }
        record = await store.get(task_id, with_events=False)
        result = record.result or {}
        yield {
            "task_id": task_id,
            "status": "ok" if record.status is Status.COMPLETED else "error",
            "task_status": record.status.value,
            "image_id": result.get("image_id"),
            "tag": plan.tag,
            "dockerfile_used": plan.dockerfile_used,
            "inline": plan.inline,
            "logs": list(tail),
            "error": record.error,
            "dockerfile_kept": result.get("dockerfile_kept"),
            "summary": True,
        }

    async def summary_when_done(self, task_id: str, plan: BuildPlan) -> dict[str, Any]:
        """The stream's last line (the build's summary), once the build has ended."""
        summary: dict[str, Any] = {}
        async for item in self.stream_view(task_id, plan):
            summary = item
        summary.pop("summary", None)
        return summary

    async def build_and_wait(self, plan: BuildPlan, principal: Principal) -> dict[str, Any]:
        """`POST /docker/build`: the same build task, awaited. A failure raises `BuildFailed`."""
        await self.preflight(plan)  # 507 before anything starts
        record = await self.start(plan, principal, task_id=None)
        async for event in follow(self._runner.store, self._runner.bus, record.id, stop=self._runner.closing):
            if event is not None and event.data.get("final"):
                break
        final = await self._runner.store.get(record.id, with_events=False)
        result = dict(final.result or {})
        if final.status is not Status.COMPLETED:
            raise BuildFailed(
                final.error or f"the build ended {final.status.value}",
                task_id=record.id,
                logs=result.get("logs", []),
            )
        return {**result, "task_id": record.id}

    # --- the work ------------------------------------------------------------------------------
    async def preflight(self, plan: BuildPlan) -> None:
        """Refuse (507) a build the disks cannot take: the context's size, in the engine's root
        (the image) and in the builds root (the artefact)."""
        if plan.context_dir is not None:
            size = await asyncio.to_thread(tree_size, plan.context_dir, self._options.max_context_bytes)
        else:
            size = len(plan.dockerfile_text)
        await self._disk.require_engine(size, what="the build")
        if plan.export:
            await self._disk.require(self._options.builds_path, size, what="the build's artefact")

    async def check_tag(self, tag: str | None, principal: Principal) -> None:
        """Whether `principal` may point `tag` at a new build (ImageService.check_tag)."""
        await self._images.check_tag(tag, principal)

    async def build_in(self, ctx: TaskContext, plan: BuildPlan, principal: Principal) -> dict[str, Any]:
        """The build as a step of another task (a deploy): the same checks, events and files."""
        await self._images.check_tag(plan.tag, principal)
        plan.created_by = principal.token_id
        return await self._build(ctx, plan)

    async def _build(self, ctx: TaskContext, plan: BuildPlan) -> dict[str, Any]:
        started = time.monotonic()
        await self.preflight(plan)  # a /start route's task ends at once with the reason
        await self._prepare(ctx, plan)
        try:
            output = await self.engine_build(
                ctx,
                root=plan.context_dir,
                dockerfile=plan.dockerfile,
                dockerfile_text=plan.dockerfile_text,
                tag=plan.tag,
                app_id=plan.app_id,
                build_args=plan.build_args,
                nocache=plan.nocache,
                created_by=plan.created_by,
            )
        except BuildFailed as exc:
            if ctx.files is not None:
                text = f"Dockerfile ({plan.dockerfile_used}):\n{plan.dockerfile_text}"
                await ctx.files.append(LogBatch(errors=[text]))
            exc.extra.update(await self._keep_dockerfile(ctx, plan))
            raise
        kept = await self._keep_dockerfile(ctx, plan)
        duration = round(time.monotonic() - started, 3)
        await ctx.event(
            "building",
            "built",
            message=f"build completed image_id={output.image_id} duration={duration}s",
            image_id=output.image_id,
            tag=plan.tag,
            duration_sec=duration,
        )
        summary: dict[str, Any] = {
            "image_id": output.image_id,
            "tag": plan.tag,
            "duration_sec": duration,
        }
        if plan.export and plan.tag:
            summary.update(await export_image(ctx, self._docker, plan.tag, self._disk))
        await ctx.merge_summary(summary)
        await ctx.event("building", "completed", message="build completed", **summary)
        if plan.upload is not None and plan.export:
            summary["sftp_deployment"] = await upload_folder(
                ctx, plan.upload, summary, self._options.sftp, self._disk
            )
        return {
            "status": "ok",
            "dockerfile_used": plan.dockerfile_used,
            "inline": plan.inline,
            "logs": list(output.tail),
            **summary,
            **kept,
        }

    async def _prepare(self, ctx: TaskContext, plan: BuildPlan) -> None:
        """The Dockerfile's files, the summary's first fields, the `starting` step."""
        assert ctx.files is not None  # a build task always has its folder
        ops = parse_dockerfile(plan.dockerfile_text)
        await ctx.files.write_text(DOCKERFILE_USED, plan.dockerfile_text)
        await ctx.files.write_json(DOCKERFILE_PARSED, {"ops": ops})
        await ctx.merge_summary(
            {
                "task_id": ctx.task_id,
                "status": "building",
                "stage": "building",
                "tag": plan.tag,
                "app_id": plan.app_id,
                "dockerfile_used": plan.dockerfile_used,
                "inline": plan.inline,
                "steps_detected": len(ops),
                # Build args may carry secrets: only their names are kept.
                "build_args": dict.fromkeys(plan.build_args, "<redacted>"),
            }
        )
        await ctx.event(
            "building",
            "starting",
            message=f"build starting tag={plan.tag or ''} dockerfile={plan.dockerfile_used}",
            tag=plan.tag,
            dockerfile=plan.dockerfile_used,
            inline=plan.inline,
        )

    async def _keep_dockerfile(self, ctx: TaskContext, plan: BuildPlan) -> dict[str, Any]:
        """`cleanup: false`: leave the inline Dockerfile in the context, never over another file."""
        if plan.keep_dockerfile is None:
            return {}
        target = plan.keep_dockerfile
        written = await asyncio.to_thread(write_new_file, target, plan.dockerfile_text.encode(), 0o644)
        kept = {
            "path": str(target),
            "written": written,
            "reason": None
            if written
            else f"{target.name} already exists in the context; it was left as it is",
        }
        await ctx.merge_summary({"dockerfile_kept": kept})
        await ctx.event(
            "building",
            "dockerfile_kept" if written else "dockerfile_not_kept",
            message=f"inline Dockerfile {'written to' if written else 'not written over'} {target}",
            level="info" if written else "warn",
            dockerfile_kept=kept,
        )
        return {"dockerfile_kept": kept}

    async def engine_build(
        self,
        ctx: TaskContext,
        *,
        root: Path | None,
        dockerfile: str,
        dockerfile_text: str,
        tag: str | None,
        app_id: str | None,
        build_args: dict[str, str] | None = None,
        nocache: bool = False,
        exclude: tuple[str, ...] = (),
        created_by: str | None = None,
    ) -> BuildOutput:
        """One engine build, its output streamed into the task; a failed step raises BuildFailed.

        The Dockerfile always travels in the context stream (the user's file on disk is never
        changed). The image is this service's by its ownership record, not by labels: they are
        appended only with DM_BUILD_LABELS, since the classic builder commits a LABEL as one more
        step and a task id label makes every rebuild a new image.
        """
        job = EngineJob(
            root, dockerfile, dockerfile_text, tag, app_id, build_args, nocache, exclude, created_by
        )
        output, started = await self._engine.run(ctx, job, labelled=self._options.build_labels)
        if await self._claims.final_image(
            output, started, tag=tag, app_id=app_id, task_id=ctx.task_id, created_by=created_by
        ):
            return output
        # Every step came from a cache, or the Dockerfile is only FROM: the image existed before
        # and may be anyone's. One label step on top of it gives the build an image of its own:
        # built FROM that image with no context, so a large context is not sent a second time.
        await ctx.event(
            "building",
            "labelling",
            message=f"build ended on {output.image_id}, which existed before it: a label step follows",
        )
        on_top = replace(
            job, root=None, dockerfile="Dockerfile", dockerfile_text=f"FROM {output.image_id}\n",
            build_args=None, nocache=False, exclude=(),
        )  # fmt: skip
        labelled, started = await self._engine.run(ctx, on_top, labelled=True)
        if not await self._claims.final_image(
            labelled, started, tag=tag, app_id=app_id, task_id=ctx.task_id, created_by=created_by
        ):
            log.warning("build %s: image %s is not this service's", ctx.task_id, labelled.image_id)
        output.image_id = labelled.image_id
        output.tail.extend(labelled.tail)
        return output
