"""Builds: what `/docker/build`, `/docker/build-stream` and `/docker/build/start` take and answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, StringConstraints, field_validator

from docker_manager.schemas.common import (
    AppId,
    ImageTag,
    ResponseModel,
    StrictModel,
    TaskId,
)


class BuildRequest(StrictModel):
    """`POST /docker/build`: build a context folder that lies inside `DM_CONTEXT_ROOTS`."""

    path: str = Field(".", max_length=4096, description="Context folder, relative to the first context root.")
    tag: ImageTag | None = None
    nocache: bool = False


class BuildResult(ResponseModel):
    status: str = "ok"
    image_id: str
    tag: str | None
    logs: list[str] = Field(description="The last lines of the build output.")
    task_id: str = Field(description="The build's task: its files are under builds/{task_id}.")


def _plain_file_name(value: str) -> str:
    if value in (".", ".."):
        raise ValueError("not a file name")
    return value


DockerfileName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$"),
    AfterValidator(_plain_file_name),
    Field(description="A plain file name (no directories)."),
]


BuildArgName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class _BuildFields(StrictModel):
    tag: ImageTag | None = None
    dockerfile: str | None = Field(
        None, max_length=4096, description="Dockerfile path relative to the context (default `Dockerfile`)."
    )
    dockerfile_content: str | None = Field(
        None,
        max_length=512 * 1024,
        description="Inline Dockerfile; sent with the context, not written to disk.",
    )
    dockerfile_name: DockerfileName = "Dockerfile"
    cleanup: bool = Field(
        True,
        description="With inline content: true (the default) leaves the context untouched; false keeps "
        "the Dockerfile there as `dockerfile_name`, written after the build, never over an existing file.",
    )
    build_args: dict[BuildArgName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict, max_length=100
    )
    task_id: TaskId | None = Field(None, description="Your own id for the task; must be unused.")
    app_id: AppId | None = None
    nocache: bool = False

    @field_validator("dockerfile_content")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("the Dockerfile contains a NUL byte")
        return value


class BuildStreamRequest(_BuildFields):
    """`POST /docker/build-stream`."""

    context_path: str = Field(max_length=4096, description="Context folder inside DM_CONTEXT_ROOTS.")


HostName = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^\[?[0-9a-fA-F:.]{2,45}\]?$"
    ),
]


UserName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]


class BuildStartRequest(_BuildFields):
    """`POST /docker/build/start`: as build-stream, the context being optional, plus the upload.

    The `sftp_*` fields override the `DM_SFTP_*` settings for this build; the password is used for
    the connection only and never stored, logged or echoed. Host keys are always verified.
    """

    context_path: str | None = Field(None, max_length=4096)
    sftp_host: HostName | None = None
    sftp_port: int | None = Field(None, ge=1, le=65535)
    sftp_username: UserName | None = None
    sftp_password: SecretStr | None = Field(None, max_length=1024)


class BuildStreamResult(ResponseModel):
    """The original's answer to `/docker/build-stream`, with the task's fields beside it."""

    status: str = Field(description="ok when the image was built, else error (the reason in `error`)")
    image_id: str | None
    tag: str | None
    dockerfile_used: str
    inline: bool
    logs: list[str] = Field(description="The last lines of the build output.")
    task_id: str
    task_status: str
    error: str | None


class TaskStarted(ResponseModel):
    task_id: str
    status: str = "started"
