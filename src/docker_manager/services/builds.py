"""Builds as tasks: `/docker/build-stream` and `/docker/build/start`.

A build runs as a task of kind "build" (at most `DM_MAX_CONCURRENT_BUILDS` at once, builds of one
app in order). Its folder `{builds_dir}/{task_id}/` gets the API README's files. Inline Dockerfile
content is added to the context stream sent to the engine, never written into the user's folder
before or during the build, so no file of the user's can be overwritten. With `cleanup: false`
the caller asks to keep it there: it is written after the build, and never over an existing file.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import Docker, ProgressError
from docker_manager.docker.build_context import BuildContext
from docker_manager.errors import BuildFailed, Conflict, InvalidInput, UploadFailed
from docker_manager.labels import managed_labels
from docker_manager.ownership import Kind, Ownership
from docker_manager.schemas.common import IMAGE_NAME_RE
from docker_manager.services.images import ImageService
from docker_manager.sftp import SftpTarget, Uploaded, upload
from docker_manager.tasks import (
    LOG,
    Status,
    TaskContext,
    TaskRecord,
    TaskRunner,
    TaskSpec,
    follow,
    new_task_id,
)
from docker_manager.tasks.files import (
    BUILD_JSONL,
    BUILD_LOG,
    DOCKERFILE_PARSED,
    DOCKERFILE_USED,
    ERROR_LOG,
    EVENTS_LOG,
    INFO_JSON,
    LogBatch,
)
from docker_manager.util.files import write_new_file
from docker_manager.util.lz4file import compress_to_file
from docker_manager.util.paths import confine

BUILD_TASK = "docker_build"
LOG_TAIL = 20
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (\S+)\s*(.*)$")


def parse_dockerfile(text: str) -> list[dict[str, Any]]:
    """Instructions of a Dockerfile, continuation lines joined: [{line, op, instruction, args}]."""
    escape = "\\"
    directive = re.match(r"^#\s*escape\s*=\s*(\S)", text)
    if directive:
        escape = directive.group(1)
    ops: list[dict[str, Any]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith(escape):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        instruction = " ".join(part for part in pending if part)
        pending = []
        op, _, args = instruction.partition(" ")
        ops.append({"line": start, "op": op.upper(), "instruction": instruction, "args": args.strip()})
    if pending:
        instruction = " ".join(part for part in pending if part)
        op, _, args = instruction.partition(" ")
        ops.append({"line": start, "op": op.upper(), "instruction": instruction, "args": args.strip()})
    return ops


def with_labels(dockerfile: str, labels: dict[str, str]) -> str:
    """The Dockerfile with one LABEL instruction appended (it applies to the final stage).

    The engine's `labels` build parameter adds one build step per label (each a container commit);
    one instruction for all of them costs a single step. Values are validated names, quoted anyway.
    """
    pairs = " ".join(f'"{key}"="{value}"' for key, value in sorted(labels.items()))
    return dockerfile.rstrip("\n") + f"\n\nLABEL {pairs}\n"


def image_name_for(name: str) -> str:
    """An app or task id as an image name: lower-cased (`Web` -> `web`), and where its `.`/`_`/`-`
    would not make a valid name, those runs become one dash."""
    lowered = name.lower()
    if IMAGE_NAME_RE.fullmatch(lowered):
        return lowered
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-") or "app"


def artefact_name(tag: str) -> str:
    """`{tag with : and / replaced by _}.tar.lz4`, as the original named it."""
    return tag.replace("/", "_").replace(":", "_") + ".tar.lz4"


@dataclass(frozen=True)
class BuildSource:
    """What a build request asks for, before any checking."""

    context_path: str | None
    tag: str | None
    dockerfile: str | None = None
    dockerfile_content: str | None = None
    dockerfile_name: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    app_id: str | None = None
    nocache: bool = False
    export: bool = False
    cleanup: bool = True


@dataclass
class BuildPlan:
    """A validated build: nothing in it still needs checking."""

    context_dir: Path | None
    dockerfile: str  # the Dockerfile's path inside the context sent to the engine
    dockerfile_used: str  # the name the caller knows it by
    dockerfile_text: str
    inline: bool
    tag: str | None
    build_args: dict[str, str] = field(default_factory=dict)
    app_id: str | None = None
    nocache: bool = False
    export: bool = False
    upload: SftpTarget | None = None
    # `cleanup: false` with inline content: where the Dockerfile is kept after the build.
    keep_dockerfile: Path | None = None
    created_by: str | None = None  # the token that asked (the image is recorded as its)


MANIFEST = "build.manifest.json"
# What goes to the runtime host besides the artefact; build.info.json travels last.
UPLOADED_FILES = (MANIFEST, DOCKERFILE_USED, DOCKERFILE_PARSED, BUILD_LOG, BUILD_JSONL, EVENTS_LOG, ERROR_LOG)


class BuildOutput:
    """Turns the engine's build records into output lines, tracking steps and the image id."""

    def __init__(self) -> None:
        self.image_id: str | None = None
        self.step: dict[str, Any] = {}
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)

    def feed(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        aux = record.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
            return []
        if "stream" in record:
            text = str(record["stream"])
            stream = "build"
        elif "status" in record:
            text = " ".join(str(p) for p in (record.get("status"), record.get("progress")) if p) + "\n"
            stream = "status"
        else:
            return []
        items = []
        for line in text.splitlines():
            match = _STEP_RE.match(line)
            if match:
                self.step = {
                    "step_index": int(match.group(1)),
                    "step_total": int(match.group(2)),
                    "instruction": match.group(3).upper(),
                }
            if line.strip():
                self.tail.append(line)
            # `chunk` is the engine's record as the original posted it to the log stream: one per
            # line here, so that receivers joining `chunk.stream` get the output exactly once.
            chunk = {"stream": line + "\n"} if stream == "build" else record
            items.append({"stream": stream, "text": line, **self.step, "chunk": chunk})
        return items


class BuildService:
    def __init__(
        self,
        docker: Docker,
        runner: TaskRunner,
        images: ImageService,
        ownership: Ownership,
        settings: Settings,
    ) -> None:
        self._docker = docker
        self._runner = runner
        self._images = images
        self._ownership = ownership
        self._settings = settings

    # --- planning (all validation happens here, before anything starts) ---------------------
    async def plan(self, source: BuildSource) -> BuildPlan:
        return await asyncio.to_thread(self._plan, source)

    def _plan(self, source: BuildSource) -> BuildPlan:
        context_dir: Path | None = None
        keep: Path | None = None
        if source.context_path is not None:
            context_dir = confine(source.context_path, self._settings.context_paths, field="context_path")
            if source.dockerfile_content is not None and not source.cleanup:
                keep = context_dir / source.dockerfile_name
            if not context_dir.is_dir():
                if source.dockerfile_content is None:
                    raise InvalidInput("the build context is not a directory", field="context_path")
                context_dir = None  # inline-only build: an empty context, nothing created on disk
        if source.dockerfile_content is not None:
            used, text = source.dockerfile_name, source.dockerfile_content
            dockerfile = used
            if context_dir is not None and (context_dir / used).exists():
                # Never overwrite or shadow the user's file: the inline one travels under its own name.
                dockerfile = f".dm-inline-{secrets.token_hex(4)}.{used}"
        elif context_dir is None:
            raise InvalidInput(
                "give a context_path, or dockerfile_content to build from", field="context_path"
            )
        else:
            used = source.dockerfile or "Dockerfile"
            path = confine(str(context_dir / used), [context_dir], field="dockerfile")
            if not path.is_file():
                raise InvalidInput(f"the context has no {used}", field="dockerfile")
            if path.stat().st_size > 1 << 20:
                raise InvalidInput("the Dockerfile is larger than 1 MiB", field="dockerfile")
            dockerfile, text = path.relative_to(context_dir).as_posix(), path.read_text("utf-8", "replace")
        return BuildPlan(
            context_dir=context_dir,
            dockerfile=dockerfile,
            dockerfile_used=used,
            dockerfile_text=text,
            inline=source.dockerfile_content is not None,
            tag=source.tag,
            build_args=source.build_args,
            app_id=source.app_id,
            nocache=source.nocache,
            export=source.export,
            keep_dockerfile=keep,
        )

    def sftp_target(
        self, *, host: str | None, port: int | None, username: str | None, password: str | None
    ) -> SftpTarget | None:
        """Where build/start uploads to: the request's fields over the `DM_SFTP_*` settings."""
        settings = self._settings
        host = host or settings.sftp_host
        if host is None:
            return None
        username = username or settings.sftp_username
        if username is None:
            raise InvalidInput(
                "an SFTP upload needs a username (sftp_username or DM_SFTP_USERNAME)", field="sftp_username"
            )
        if password is None and settings.sftp_key_file is None:
            raise InvalidInput(
                "an SFTP upload needs sftp_password or DM_SFTP_KEY_FILE", field="sftp_password"
            )
        return SftpTarget(
            host=host,
            port=port or settings.sftp_port,
            username=username,
            remote_dir=settings.sftp_remote_dir,
            password=password,
            key_file=settings.sftp_key_file,
            known_hosts=settings.sftp_known_hosts,
            accept_unknown_hosts=settings.sftp_accept_unknown_hosts,
        )

    # --- starting ------------------------------------------------------------------------------
    async def start(self, plan: BuildPlan, principal: Principal, *, task_id: str | None) -> TaskRecord:
        task_id = task_id or new_task_id(BUILD_TASK)
        files_dir = self._settings.builds_path / task_id
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
                kind="build",
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
                yield {"task_id": task_id, "stage": event.stage, "status": event.status, **event.data, **meta}
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
    async def _build(self, ctx: TaskContext, plan: BuildPlan) -> dict[str, Any]:
        assert ctx.files is not None
        started = time.monotonic()
        ops = parse_dockerfile(plan.dockerfile_text)
        await ctx.files.write_text(DOCKERFILE_USED, plan.dockerfile_text)
        await ctx.files.write_json(DOCKERFILE_PARSED, {"ops": ops})
        await ctx.info(
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
            await ctx.files.append(
                LogBatch(errors=[f"Dockerfile ({plan.dockerfile_used}):\n{plan.dockerfile_text}"])
            )
            kept = await self._keep_dockerfile(ctx, plan)
            if kept:
                exc.extra.update(kept)
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
        summary: dict[str, Any] = {"image_id": output.image_id, "tag": plan.tag, "duration_sec": duration}
        if plan.export and plan.tag:
            summary.update(await self._export(ctx, plan.tag))
        await ctx.info(summary)
        await ctx.event("building", "completed", message="build completed", **summary)
        if plan.upload is not None and plan.export:
            summary["sftp_deployment"] = await self._upload(ctx, plan.upload, summary)
        return {
            "status": "ok",
            "dockerfile_used": plan.dockerfile_used,
            "inline": plan.inline,
            "logs": list(output.tail),
            **summary,
            **kept,
        }

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
        await ctx.info({"dockerfile_kept": kept})
        await ctx.event(
            "building",
            "dockerfile_kept" if written else "dockerfile_not_kept",
            message=f"inline Dockerfile {'written to' if written else 'not written over'} {target}",
            level="info" if written else "warn",
            dockerfile_kept=kept,
        )
        return {"dockerfile_kept": kept}

    async def _upload(self, ctx: TaskContext, target: SftpTarget, summary: dict[str, Any]) -> dict[str, Any]:
        """Ship the task folder to `{remote_dir}/{task_id}/`; build.info.json goes last, complete."""
        assert ctx.files is not None
        files = ctx.files
        artefact = Path(summary["compressed_image_path"])
        await files.write_json(
            MANIFEST,
            {
                "task_id": ctx.task_id,
                "artefact": artefact.name,
                "size": summary["compressed_image_size_bytes"],
                "sha256": summary["compressed_image_sha256"],
                "image_id": summary["image_id"],
                "tag": summary["tag"],
            },
        )
        remote = f"{target.remote_dir.rstrip('/')}/{ctx.task_id}"
        await ctx.info({"status": "building", "stage": "uploading"})
        await ctx.event(
            "uploading",
            "starting",
            message=f"SFTP transfer to {target.host}:{target.port}",
            remote_path=remote,
            **target.describe(),
        )

        async def progress(name: str, done: int, total: int) -> None:
            await ctx.event("uploading", "progress", file=name, bytes_done=done, bytes_total=total)

        await ctx.flush()
        names = [artefact.name, *UPLOADED_FILES]
        paths = [files.path(n) for n in names if await asyncio.to_thread(files.path(n).is_file)]
        try:
            first = await self._send(target, ctx.task_id, paths, progress)
            deployment: dict[str, Any] = {
                "status": "success",
                "remote_path": first.remote_path,
                "files_transferred": len(first.files) + 1,
                "total_size_bytes": first.total_bytes,
                **target.describe(),
            }
            await ctx.info({"status": "building", "stage": "uploading", "sftp_deployment": deployment})
            last = await self._send(target, ctx.task_id, [files.path(INFO_JSON)], None)
        except UploadFailed as exc:
            await ctx.info({"sftp_deployment": {"status": "error", "error": exc.detail, **target.describe()}})
            raise
        deployment["total_size_bytes"] = first.total_bytes + last.total_bytes
        await ctx.info({"sftp_deployment": deployment})
        await ctx.event(
            "uploading", "completed", message=f"SFTP transfer done to {remote}", sftp_deployment=deployment
        )
        return deployment

    async def _send(self, target: SftpTarget, task_id: str, paths: list[Path], progress: Any) -> Uploaded:
        return await upload(
            target,
            task_id,
            paths,
            progress=progress,
            attempts=self._settings.sftp_attempts,
            deadline=self._settings.sftp_deadline,
        )

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

        The Dockerfile always travels in the context stream, with the service's labels appended
        (the user's file on disk is never changed).
        """
        output = BuildOutput()
        sent = with_labels(dockerfile_text, managed_labels(app_id=app_id, task_id=ctx.task_id))
        context = BuildContext(
            root=root,
            dockerfile=dockerfile,
            inline_files={dockerfile: sent.encode()},
            max_bytes=self._settings.max_context_bytes,
            exclude=exclude,
        )
        limit = self._settings.build_timeout
        try:
            async with (
                asyncio.timeout(limit),
                self._docker.images.build(
                    context.stream(), tag=tag, dockerfile=dockerfile, buildargs=build_args, nocache=nocache
                ) as progress,
            ):
                async for record in progress:
                    await ctx.output(output.feed(record))
        except ProgressError as exc:
            chunk = {"errorDetail": {"message": exc.message}, "error": exc.message}
            await ctx.output([{"stream": "error", "text": exc.message, "chunk": chunk}])
            raise BuildFailed(f"the build failed: {exc.message}", logs=list(output.tail)) from exc
        except TimeoutError as exc:
            # Leaving the block closed the engine request, which stops the build there too.
            raise BuildFailed(f"the build took longer than {limit:.0f} s", logs=list(output.tail)) from exc
        if output.image_id is None:
            raise BuildFailed("the engine finished without reporting an image id", logs=list(output.tail))
        await self._ownership.record(
            Kind.IMAGE, output.image_id, name=tag, app_id=app_id, task_id=ctx.task_id, created_by=created_by
        )
        return output

    async def _export(self, ctx: TaskContext, tag: str) -> dict[str, Any]:
        """Save the image by its tag and lz4-compress it into the task folder, in one stream."""
        assert ctx.files is not None
        target = ctx.files.path(artefact_name(tag))
        await ctx.event("building", "exporting", message=f"exporting {tag} to {target.name}", tag=tag)
        started = time.monotonic()
        async with self._docker.images.export(tag) as chunks:
            compressed = await compress_to_file(chunks, target)
        fields: dict[str, Any] = {
            "compressed_image_path": str(compressed.path),
            "compressed_image_size_bytes": compressed.size,
            "compressed_image_sha256": compressed.sha256,
            "image_tar_size_bytes": compressed.raw_size,
        }
        await ctx.event(
            "building",
            "exported",
            message=f"image exported and compressed size={compressed.size} bytes",
            duration_sec=round(time.monotonic() - started, 3),
            compression_ratio_percent=round(compressed.size / max(compressed.raw_size, 1) * 100, 1),
            **fields,
        )
        return fields
