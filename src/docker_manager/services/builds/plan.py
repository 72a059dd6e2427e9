"""What a build request asks for (`BuildSource`), checked into what will run (`BuildPlan`).

All validation happens here, before anything starts: the context inside `DM_CONTEXT_ROOTS`, the
Dockerfile (inline, or a file of the context up to 1 MiB), where a kept inline Dockerfile goes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docker_manager.adapters.sftp import SftpTarget
from docker_manager.errors import InvalidInput
from docker_manager.services.builds.options import SftpOptions
from docker_manager.util.paths import confine


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


def plan_build(source: BuildSource, context_paths: Sequence[Path]) -> BuildPlan:
    """Check everything a build request asks for before anything starts (blocking: a thread)."""
    context_dir: Path | None = None
    keep: Path | None = None
    if source.context_path is not None:
        context_dir = confine(source.context_path, list(context_paths), field="context_path")
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
        raise InvalidInput("give a context_path, or dockerfile_content to build from", field="context_path")
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
    sftp: SftpOptions, *, host: str | None, port: int | None, username: str | None, password: str | None
) -> SftpTarget | None:
    """Where build/start uploads to: the request's fields over the `DM_SFTP_*` settings."""
    host = host or sftp.host
    if host is None:
        return None
    username = username or sftp.username
    if username is None:
        raise InvalidInput(
            "an SFTP upload needs a username (sftp_username or DM_SFTP_USERNAME)", field="sftp_username"
        )
    if password is None and sftp.key_file is None:
        raise InvalidInput("an SFTP upload needs sftp_password or DM_SFTP_KEY_FILE", field="sftp_password")
    return SftpTarget(
        host=host,
        port=port or sftp.port,
        username=username,
        remote_dir=sftp.remote_dir,
        password=password,
        key_file=sftp.key_file,
        known_hosts=sftp.known_hosts,
        accept_unknown_hosts=sftp.accept_unknown_hosts,
        client=sftp.client,
    )
