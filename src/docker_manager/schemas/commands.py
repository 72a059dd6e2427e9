"""Bodies of `/tasks/run-stream` and the html-site pipeline."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, StringConstraints

from docker_manager.schemas.common import EnvMap, RepoName, ResponseModel, StrictModel, TagName, TaskId


class RunStreamRequest(StrictModel):
    """`POST /tasks/run-stream`."""

    cmd: Annotated[str, StringConstraints(max_length=65536)] | list[str] = Field(
        description="A shell command line (run by /bin/sh -c), or an argv list (run as it is)."
    )
    cwd: str | None = Field(None, max_length=4096, description="Inside DM_WORK_ROOTS (default: the first).")
    env: EnvMap = Field(
        default_factory=dict, description="Added to a clean environment; PATH and LD_* refused."
    )
    task_id: TaskId | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds; capped by DM_RUN_TIMEOUT.")


class RunStreamResult(ResponseModel):
    """The original's answer to `/tasks/run-stream`, with the task's fields beside it."""

    status: str = Field(description="completed once the command has exited (any exit code), else error")
    exit_code: str | None = Field(description="The exit code as a string, as the original sent it.")
    task_id: str
    task_status: str | None = Field(description="The task's status: completed only for exit code 0.")
    signal: str | None
    error: str | None
    output_lines: int


class PipelineRequest(StrictModel):
    """`POST /pipeline/html-site[/start]`: the API README's fields."""

    repo_url: str = Field("https://github.com/ikwerre-dev/html-site", max_length=2048)
    dockerhub_repo: RepoName = Field(description="e.g. youruser/html-site or 127.0.0.1:5000/team/site")
    tag: TagName = "latest"
    host_port: int = Field(8080, ge=1, le=65535)
    dockerhub_username: Annotated[str, StringConstraints(max_length=256)] | None = None
    dockerhub_password: SecretStr | None = None
    task_id: TaskId | None = Field(None, description="Your own id for the task; must be unused.")


class PipelineStarted(ResponseModel):
    task_id: str
    status: str = "started"


class ProbeResult(ResponseModel):
    status_code: int
    length: int
    ok: bool
    body_head: str


class PipelineSummary(ResponseModel):
    status: str = Field(description="ok")
    task_id: str
    repo_url: str = Field(description="Any password in it is shown as ***.")
    repo_tag: str
    host_port: int
    run: dict[str, Any] = Field(
        description="id, name, status (the original's), and container_id, container_name, container_status"
    )
    stages: dict[str, dict[str, Any]] = Field(description="What each stage reported.")
    probe: ProbeResult
    url: str
