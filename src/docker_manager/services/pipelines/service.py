"""The html-site pipeline: clone → build → login → push → pull → run → probe, as one task.

Each stage records `starting`, then `completed` or `error`; a failed stage ends the pipeline as
`error` (the original went on to push after a failed build). Registry credentials come from the
request or `DOCKERHUB_USERNAME` / `DOCKERHUB_PASSWORD` and never reach logs, events, the external
stream or answers. The temporary folder is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import Docker, ProgressError
from docker_manager.adapters.docker.registry import DOCKER_HUB, auth_header, registry_of
from docker_manager.adapters.git import (
    check_repo_url,
    clone,
    read_repo_dockerfile,
    redact_credentials,
    shown_url,
    url_secrets,
)
from docker_manager.adapters.probe import HttpProbe, NoGoodAnswer
from docker_manager.auth import Principal
from docker_manager.errors import DockerManagerError, InvalidInput, NotFound, StageFailed, UpstreamError
from docker_manager.runner import TaskContext, TaskKind, TaskRecord, TaskRunner, TaskSpec, new_task_id
from docker_manager.schemas.pipelines import PipelineSummary
from docker_manager.services.builds import BuildService
from docker_manager.services.containers import ContainerService, ContainerSpec, check_host_port
from docker_manager.services.host.disk import DiskService
from docker_manager.services.images.service import ImageService
from docker_manager.services.ownership.record import Ownership
from docker_manager.services.pipelines.options import PipelineOptions
from docker_manager.services.releases.service import ReleaseService

PIPELINE_TASK = "html_site_pipeline"
_EVENT_ARGUMENTS = frozenset({"stage", "status", "message", "level", "change", "payload_extra"})


@dataclass(frozen=True)
class PipelinePlan:
    repo_url: str  # what git gets (a local path became a file:// URL)
    scheme: str
    shown_url: str  # without credentials, query or fragment
    repo: str  # e.g. 127.0.0.1:5000/team/site
    tag: str
    host_port: int
    username: str
    password: str
    registry: str  # server address for login (Docker Hub when the repo names no registry)
    app_id: str
    task_id: str | None = None
    secrets: tuple[str, ...] = ()  # hidden wherever they show up (password, URL credentials)

    @property
    def repo_tag(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def auth_header(self) -> str:
        return auth_header(self.username, self.password, self.registry)


def credentials_apply(repo: str, allowed: list[str]) -> bool:
    """Whether `repo` is in one of the registries or repository prefixes `allowed` names
    (`docker.io` means Docker Hub; `registry.example.com/team` a prefix there)."""
    registry = registry_of(repo)
    full = f"docker.io/{repo}" if registry == DOCKER_HUB else repo
    return any(full == entry.rstrip("/") or full.startswith(entry.rstrip("/") + "/") for entry in allowed)


class PipelineService:
    def __init__(
        self,
        *,
        docker: Docker,
        runner: TaskRunner,
        builds: BuildService,
        containers: ContainerService,
        images: ImageService,
        ownership: Ownership,
        probe: HttpProbe,
        releases: ReleaseService,
        disk: DiskService,
        options: PipelineOptions,
    ) -> None:
        self._probe_http = probe
        self._releases = releases
        self._disk = disk
        self._docker = docker
        self._runner = runner
        self._builds = builds
        self._containers = containers
        self._images = images
        self._ownership = ownership
        self._options = options

    def plan(
        self,
        *,
        repo_url: str,
        dockerhub_repo: str,
        tag: str,
        host_port: int,
        username: str | None,
        password: str | None,
        task_id: str | None = None,
    ) -> PipelinePlan:
        url, scheme = check_repo_url(
            repo_url,
            schemes=list(self._options.git_allowed_schemes),
            local_roots=list(self._options.git_local_roots),
        )
        check_host_port(host_port, self._options.forbidden_host_ports, field="host_port")
        username, password = self._credentials(dockerhub_repo, username, password)
        name = re.sub(r"[^a-z0-9-]", "-", dockerhub_repo.rsplit("/", 1)[-1])[:40].strip("-") or "site"
        return PipelinePlan(
            repo_url=url,
            scheme=scheme,
            shown_url=shown_url(repo_url),
            secrets=(password, *url_secrets(repo_url)),
            repo=dockerhub_repo,
            tag=tag,
            host_port=host_port,
            username=username,
            password=password,
            registry=registry_of(dockerhub_repo),
            app_id=f"html-site-{name}",
            task_id=task_id,
        )

    def _credentials(self, repo: str, username: str | None, password: str | None) -> tuple[str, str]:
        """The request's credentials; else the operator's (`DOCKERHUB_*`), but only as a pair and
        only for the registries and repository prefixes `DM_REGISTRY_CREDENTIALS_FOR` lists: a
        request must never be able to send them to a registry of its choosing."""
        if username or password:
            if not (username and password):
                raise InvalidInput(
                    "give both dockerhub_username and dockerhub_password", field="dockerhub_username"
                )
            return username, password
        env_user, env_password = os.environ.get("DOCKERHUB_USERNAME"), os.environ.get("DOCKERHUB_PASSWORD")
        if not (env_user and env_password):
            raise InvalidInput(
                "registry credentials are required (dockerhub_username/dockerhub_password, or the "
                "DOCKERHUB_USERNAME/DOCKERHUB_PASSWORD environment of the service)",
                field="dockerhub_username",
            )
        if not credentials_apply(repo, list(self._options.registry_credentials_for)):
            raise InvalidInput(
                f"the service's registry credentials are not for {registry_of(repo)!r} "
                "(DM_REGISTRY_CREDENTIALS_FOR); give dockerhub_username and dockerhub_password",
                field="dockerhub_username",
            )
        return env_user, env_password

    async def run(self, plan: PipelinePlan, principal: Principal) -> PipelineSummary:
        """The pipeline, waited for: its summary (a failed stage raises StageFailed)."""
        record = await self.start(plan, principal, wait=True)
        return PipelineSummary.model_validate({**(record.result or {}), "task_id": record.id})

    async def start(self, plan: PipelinePlan, principal: Principal, *, wait: bool) -> TaskRecord:
        task_id = plan.task_id or new_task_id(PIPELINE_TASK)
        await self._images.check_tag(plan.repo_tag, principal)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            return await self._pipeline(ctx, plan, principal)

        spec = TaskSpec(
            task_type=PIPELINE_TASK,
            work=work,
            task_id=task_id,
            app_id=plan.app_id,
            files_dir=self._options.roots.builds_path / task_id,
            kind=TaskKind.PIPELINE,
            stream_fields={"repo_url": plan.shown_url, "repo_tag": plan.repo_tag},
        )
        if wait:
            return await self._runner.run_and_wait(spec)
        return await self._runner.submit(spec)

    # --- the stages ----------------------------------------------------------------------------
    async def _pipeline(self, ctx: TaskContext, plan: PipelinePlan, principal: Principal) -> dict[str, Any]:
        # Room for the largest clone allowed, and for the image built from it, before anything starts.
        limit = self._options.git_max_bytes
        await self._disk.require(Path(tempfile.gettempdir()), limit, what="the clone")
        await self._disk.require_engine(limit, what="the build")
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"{ctx.task_id}-"))
        stages: dict[str, Any] = {}
        try:
            stages["clone"] = await self._stage(
                ctx, "clone", self._clone(ctx, plan, workdir), repo_url=plan.shown_url
            )
            stages["build"] = await self._stage(
                ctx, "build", self._build(ctx, plan, workdir), repo_tag=plan.repo_tag
            )
            stages["login"] = await self._stage(
                ctx, "login", self._login(plan), registry=_shown(plan.registry)
            )
            stages["push"] = await self._stage(
                ctx, "push", self._transfer(ctx, plan, push=True), repo_tag=plan.repo_tag
            )
            stages["pull"] = await self._stage(
                ctx, "pull", self._transfer(ctx, plan, push=False), repo_tag=plan.repo_tag
            )
            stages["run"] = await self._stage(
                ctx, "run", self._run(ctx, plan, principal), host_port=plan.host_port
            )
            probe = await self._stage(
                ctx, "probe", self._probe(plan), url=f"http://127.0.0.1:{plan.host_port}/"
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        release = await self._releases.record_deploy(
            stages["run"]["container_id"],
            app_id=plan.app_id,
            source="pipeline",
            principal=principal,
            task_id=ctx.task_id,
            health={"status": "healthy", "http_status": probe["status_code"]},
        )
        return {
            "status": "ok",
            "release": release.number if release else None,
            "repo_url": plan.shown_url,
            "repo_tag": plan.repo_tag,
            "host_port": plan.host_port,
            "run": stages["run"],
            "stages": stages,
            "probe": probe,
            "url": f"http://127.0.0.1:{plan.host_port}/",
        }

    async def _stage(self, ctx: TaskContext, stage: str, step: Any, **details: Any) -> dict[str, Any]:
        await ctx.event(stage, "starting", **details)
        try:
            result: dict[str, Any] = await step
        except DockerManagerError as exc:
            await ctx.event(stage, "error", level="error", message=exc.detail, **details)
            raise StageFailed(f"stage {stage} failed: {exc.detail}", stage=stage) from exc
        # The event's own arguments (its status above all) are not the stage's result fields.
        fields = {k: v for k, v in {**details, **result}.items() if k not in _EVENT_ARGUMENTS}
        await ctx.event(stage, "completed", **fields)
        return result

    async def _clone(self, ctx: TaskContext, plan: PipelinePlan, workdir: Path) -> dict[str, Any]:
        captured: dict[str, list[str]] = {"stdout": [], "stderr": []}

        async def on_line(stream: str, text: str) -> None:
            text = redact_credentials(text, plan.secrets)
            lines = captured.setdefault(stream, [])
            if len(lines) < 200:  # the answer keeps the first lines; the task's log keeps them all
                lines.append(text)
            await ctx.output([{"stream": f"git-{stream}", "text": text}])

        commit = await clone(
            plan.repo_url,
            plan.scheme,
            workdir / "repo",
            timeout=self._options.git_timeout,
            max_bytes=self._options.git_max_bytes,
            on_line=on_line,
        )
        return {
            "exit_code": 0,
            "stdout": "\n".join(captured["stdout"]),
            "stderr": "\n".join(captured["stderr"]),
            "commit": commit,
        }

    async def _build(self, ctx: TaskContext, plan: PipelinePlan, workdir: Path) -> dict[str, Any]:
        repo = workdir / "repo"
        own = await asyncio.to_thread(read_repo_dockerfile, repo / "Dockerfile")
        if own is not None:
            text, generated = own, False
        else:
            html = self._options.html_dir
            text = f"FROM {self._options.base_image}\nCOPY . {html}\n"
            generated = True
        output = await self._builds.engine_build(
            ctx,
            root=repo,
            dockerfile="Dockerfile",
            dockerfile_text=text,
            tag=plan.repo_tag,
            app_id=plan.app_id,
            exclude=(".git",),
        )
        return {"image_id": output.image_id, "dockerfile_generated": generated}

    async def _login(self, plan: PipelinePlan) -> dict[str, Any]:
        try:
            answer = await self._docker.system.auth(
                username=plan.username, password=plan.password, server=plan.registry
            )
        except DockerManagerError as exc:
            reason = redact_credentials(exc.detail, plan.secrets)
            raise UpstreamError(f"login to {_shown(plan.registry)} refused: {reason}") from None
        return {"login": str(answer.get("Status", "Login Succeeded"))}

    async def _transfer(self, ctx: TaskContext, plan: PipelinePlan, *, push: bool) -> dict[str, Any]:
        operation = self._docker.images.push if push else self._docker.images.pull
        try:
            async with operation(plan.repo, tag=plan.tag, auth=plan.auth_header) as progress:
                async for record in progress:
                    status = " ".join(str(record[k]) for k in ("id", "status") if record.get(k))
                    if status:
                        await ctx.output([{"stream": "push" if push else "pull", "text": status}])
        except ProgressError as exc:
            raise UpstreamError(redact_credentials(exc.message, plan.secrets)) from exc
        except NotFound as exc:
            raise UpstreamError(redact_credentials(exc.detail, plan.secrets)) from exc
        return {"repo_tag": plan.repo_tag}

    async def _run(self, ctx: TaskContext, plan: PipelinePlan, principal: Principal) -> dict[str, Any]:
        # Replace the previous container of this pipeline (it holds the port).
        for item in await self._containers.list(all=True, managed_only=True):
            if item.app_id == plan.app_id:
                await self._containers.remove(item.id, principal, force=True, volumes=False)
                await ctx.event(
                    "run",
                    "replaced",
                    message=f"removed the previous container {item.name}",
                    container_id=item.id,
                )
        result = await self._containers.run(
            ContainerSpec(
                image=plan.repo_tag,
                ports={"80/tcp": plan.host_port},
                app_id=plan.app_id,
                task_id=ctx.task_id,
            ),
            principal,
        )
        return {
            # The original's keys, then this service's.
            "id": result.id,
            "name": result.name,
            "status": result.status,
            "container_id": result.id,
            "container_name": result.name,
            "container_status": result.status,
        }

    async def _probe(self, plan: PipelinePlan) -> dict[str, Any]:
        url = f"http://127.0.0.1:{plan.host_port}/"
        within = self._options.probe_timeout
        try:
            answer = await self._probe_http.wait(url, within=within, interval=0.5)
        except NoGoodAnswer as exc:
            raise UpstreamError(f"{url} did not answer within {within:.0f} s ({exc.last})") from None
        return {
            "status_code": answer.status_code,
            "length": answer.length,
            "ok": answer.status_code < 400,
            "body_head": answer.body_head,
        }


def _shown(registry: str) -> str:
    return "Docker Hub" if registry == DOCKER_HUB else registry
