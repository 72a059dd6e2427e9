"""One build request to the engine: the context streamed, the output fed into the task, the
steps an unfinished build leaves recorded (claims.py), the engine's errors as BuildFailed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from docker_manager.adapters.docker import Docker, ProgressError
from docker_manager.adapters.docker.build_context import BuildContext
from docker_manager.errors import BuildFailed
from docker_manager.labels import managed_labels
from docker_manager.runner import TaskContext
from docker_manager.services.builds.claims import ImageClaims
from docker_manager.services.builds.dockerfile import with_labels
from docker_manager.services.builds.options import BuildOptions
from docker_manager.services.builds.output import BuildOutput
from docker_manager.util.clock import utcnow


@dataclass(frozen=True)
class EngineJob:
    """What one engine build is asked to do (a build may take two passes: see engine_build)."""

    root: Path | None
    dockerfile: str
    dockerfile_text: str
    tag: str | None
    app_id: str | None
    build_args: dict[str, str] | None
    nocache: bool
    exclude: tuple[str, ...]
    created_by: str | None


_CLEANUPS: set[asyncio.Task[None]] = set()


class EnginePass:
    def __init__(self, docker: Docker, claims: ImageClaims, options: BuildOptions) -> None:
        self._docker = docker
        self._claims = claims
        self._options = options

    async def run(self, ctx: TaskContext, job: EngineJob, *, labelled: bool) -> tuple[BuildOutput, datetime]:
        """One build request to the engine; the output (image id included) and when it started."""
        output = BuildOutput()
        sent = job.dockerfile_text
        if labelled:
            sent = with_labels(sent, managed_labels(app_id=job.app_id, task_id=ctx.task_id))
        context = BuildContext(
            root=job.root,
            dockerfile=job.dockerfile,
            inline_files={job.dockerfile: sent.encode()},
            max_bytes=self._options.max_context_bytes,
            exclude=job.exclude,
        )
        limit = self._options.build_timeout
        started = utcnow()
        try:
            try:
                async with asyncio.timeout(limit):
                    await self._stream(ctx, output, context, job.tag, job.build_args, job.nocache)
            except BaseException:
                # Failed, timed out or cancelled: the steps it completed stay as untagged images.
                steps = asyncio.create_task(
                    self._claims.steps(
                        output, started, app_id=job.app_id, task_id=ctx.task_id, created_by=job.created_by
                    )
                )
                _CLEANUPS.add(steps)  # held until done, even if a second cancel ends the wait
                steps.add_done_callback(_CLEANUPS.discard)
                await asyncio.shield(steps)
                raise
        except ProgressError as exc:
            chunk = {"errorDetail": {"message": exc.message}, "error": exc.message}
            await ctx.output([{"stream": "error", "text": exc.message, "chunk": chunk}])
            raise BuildFailed(f"the build failed: {exc.message}", logs=list(output.tail)) from exc
        except TimeoutError as exc:
            # Leaving the block closed the engine request, which stops the build there too.
            raise BuildFailed(f"the build took longer than {limit:.0f} s", logs=list(output.tail)) from exc
        if output.image_id is None:
            raise BuildFailed("the engine finished without reporting an image id", logs=list(output.tail))
        return output, started

    async def _stream(
        self,
        ctx: TaskContext,
        output: BuildOutput,
        context: BuildContext,
        tag: str | None,
        build_args: dict[str, str] | None,
        nocache: bool,
    ) -> None:
        build = self._docker.images.build(
            context.stream(),
            tag=tag,
            dockerfile=context.dockerfile,
            buildargs=build_args,
            nocache=nocache,
        )
        async with build as progress:
            async for record in progress:
                await ctx.output(output.feed(record))
