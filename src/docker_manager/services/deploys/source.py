"""A deploy's source: checked before anything starts, then turned into an image on this engine.

A context folder or a git repository is built here (the image stays in the engine: on the same host
nothing is exported or loaded); an image is used as it is (pulled first when the engine lacks it);
an artefact (`.tar.lz4`) is loaded. Each is a stage of the deploy task: `build`, `pull` or `load`.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from docker_manager.adapters.docker import Docker, ProgressError
from docker_manager.adapters.docker.registry import auth_header, registry_of
from docker_manager.adapters.git import (
    check_repo_url,
    clone,
    read_repo_dockerfile,
    redact_credentials,
    url_secrets,
)
from docker_manager.auth import Principal
from docker_manager.config import Roots
from docker_manager.errors import AppNotAllowed, BuildFailed, InvalidInput, NotFound, UpstreamError
from docker_manager.runner import TaskContext
from docker_manager.runner.summary import Summary
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.services.builds import BuildService, BuildSource
from docker_manager.services.builds.dockerfile import image_name_for
from docker_manager.services.builds.plan import BuildPlan
from docker_manager.services.deploys.localrun import LocalRunService, artefact_file
from docker_manager.services.deploys.options import DeployOptions
from docker_manager.services.images.service import ImageService

SourceKind = Literal["context", "git", "image", "artefact"]
STAGE_OF: dict[SourceKind, str] = {"context": "build", "git": "build", "image": "pull", "artefact": "load"}


@dataclass
class Source:
    kind: SourceKind
    tag: str  # what the built or loaded image is tagged (an image source: its own reference)
    build: BuildPlan | None = None
    git_url: str | None = None
    git_scheme: str | None = None
    git_ref: str | None = None
    secrets: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    dockerfile: str = "Dockerfile"
    nocache: bool = False
    artefact: Path | None = None
    pull_auth: str = field(default="", repr=False)  # X-Registry-Auth of an image's pull (a secret)

    @property
    def stage(self) -> str:
        return STAGE_OF[self.kind]


async def plan_source(
    body: DeployRequest,
    app_id: str,
    principal: Principal,
    *,
    builds: BuildService,
    images: ImageService,
    options: DeployOptions,
) -> Source:
    """Everything about the source that can be checked now (422/403/404 before a task exists)."""
    tag = body.tag or f"{image_name_for(app_id)}:latest"
    if principal.apps is not None and body.tag and _repository(body.tag) != image_name_for(app_id):
        # (else it could take a name another app's deploys tag, and stop them with a 403)
        raise AppNotAllowed(
            f"a token limited to apps tags images of its app only: {image_name_for(app_id)}:<tag>",
            field="tag",
        )
    if body.image is not None:
        await images.check_use(body.image, principal)
        return Source("image", body.image, pull_auth=_pull_auth(body))
    await images.check_tag(tag, principal)
    if body.context is not None:
        build = await builds.plan(
            BuildSource(
                context_path=body.context,
                tag=tag,
                dockerfile=body.dockerfile,
                build_args=dict(body.build_args),
                app_id=app_id,
                nocache=body.nocache,
            )
        )
        return Source("context", tag, build=build)
    if body.git is not None:
        url, scheme = check_repo_url(
            body.git.url, schemes=options.git_allowed_schemes, local_roots=options.git_local_roots
        )
        return Source(
            "git",
            tag,
            git_url=url,
            git_scheme=scheme,
            git_ref=body.git.ref,
            secrets=tuple(url_secrets(body.git.url)),
            build_args=dict(body.build_args),
            dockerfile=body.dockerfile or "Dockerfile",
            nocache=body.nocache,
        )
    assert body.artefact is not None  # (the schema wants exactly one source)
    path = await asyncio.to_thread(artefact_file, body.artefact, options.roots, field="artefact")
    if principal.apps is not None:
        await asyncio.to_thread(_check_artefact_app, path, options.roots, principal)
    return Source("artefact", tag, artefact=path)


def _repository(reference: str) -> str:
    """`name` of `name:tag` (a registry's port is not a tag)."""
    name, _, tag = reference.rpartition(":")
    return name if name and "/" not in tag else reference


def _check_artefact_app(path: Path, roots: Roots, principal: Principal) -> None:
    """A token limited to apps loads the artefacts of its apps' builds only (blocking)."""
    folder = path.parent
    summary = Summary.read(folder) if folder.parent == roots.builds_path else None
    if summary is None or not principal.allows_app(summary.app):
        raise AppNotAllowed("the artefact is not one of this token's apps' builds", field="artefact")


def _pull_auth(body: DeployRequest) -> str:
    """X-Registry-Auth for the image's registry from the deploy's `registry_auth` ("": none)."""
    login = body.registry_auth
    if login is None or body.image is None:
        return ""
    return auth_header(login.username, login.password.get_secret_value(), registry_of(body.image))


async def obtain_image(
    ctx: TaskContext,
    source: Source,
    app_id: str,
    principal: Principal,
    *,
    builds: BuildService,
    localrun: LocalRunService,
    docker: Docker,
    options: DeployOptions,
) -> tuple[str, str]:
    """The source as an image on this engine: (the reference to run, its image id)."""
    if source.kind == "context":
        assert source.build is not None
        built = await builds.build_in(ctx, source.build, principal)
        return source.tag, str(built["image_id"])
    if source.kind == "git":
        return source.tag, await _build_repository(ctx, source, app_id, principal, builds, options)
    if source.kind == "image":
        return source.tag, await _image_here(ctx, docker, source.tag, source.pull_auth)
    assert source.artefact is not None
    image_id, tag = await localrun.load_in(ctx, str(source.artefact), app_id, principal)
    return tag or image_id, image_id


async def _build_repository(
    ctx: TaskContext,
    source: Source,
    app_id: str,
    principal: Principal,
    builds: BuildService,
    options: DeployOptions,
) -> str:
    assert ctx.files is not None and source.git_url is not None and source.git_scheme is not None
    workdir = ctx.files.directory / "source"
    await asyncio.to_thread(workdir.mkdir, mode=0o700, exist_ok=True)

    async def on_line(stream: str, text: str) -> None:
        await ctx.output([{"stream": f"git-{stream}", "text": redact_credentials(text, source.secrets)}])

    try:
        commit = await clone(
            source.git_url,
            source.git_scheme,
            workdir / "repo",
            timeout=options.git_timeout,
            max_bytes=options.git_max_bytes,
            on_line=on_line,
            ref=source.git_ref,
        )
        await ctx.event("build", "cloned", message=f"cloned commit {commit}", commit=commit)
        text = await asyncio.to_thread(read_repo_dockerfile, workdir / "repo" / source.dockerfile)
        if text is None:
            raise InvalidInput(f"the repository has no {source.dockerfile}", field="git")
        await builds.check_tag(source.tag, principal)  # (again: it may have moved since the request)
        output = await builds.engine_build(
            ctx,
            root=workdir / "repo",
            dockerfile=source.dockerfile,
            dockerfile_text=text,
            tag=source.tag,
            app_id=app_id,
            build_args=source.build_args,
            nocache=source.nocache,
            exclude=(".git",),
            created_by=principal.token_id,
        )
        if output.image_id is None:
            raise BuildFailed("the build ended without an image")
        return output.image_id
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _image_here(ctx: TaskContext, docker: Docker, reference: str, auth: str) -> str:
    """The image's id, pulled first when the engine does not have it (with the credentials given
    for it, if any)."""
    try:
        return str((await docker.images.inspect(reference))["Id"])
    except NotFound:
        pass
    if "@" in reference:  # name@sha256:...: the engine takes the digest as the tag
        name, _, tag = reference.partition("@")
    else:
        name, _, tag = (
            reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "latest")
        )
    await ctx.event("pull", "pulling", message=f"{reference} is not on this host: pulling it")
    try:
        async with docker.images.pull(name, tag=tag or "latest", auth=auth) as progress:
            async for record in progress:
                status = " ".join(str(record[k]) for k in ("id", "status") if record.get(k))
                if status:
                    await ctx.output([{"stream": "pull", "text": status}])
    except (ProgressError, NotFound) as exc:
        raise UpstreamError(f"could not pull {reference}: {getattr(exc, 'message', None) or exc}") from exc
    return str((await docker.images.inspect(reference))["Id"])
