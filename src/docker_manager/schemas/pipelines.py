"""The html-site pipeline: what it takes and answers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, StringConstraints

from docker_manager.schemas.common import RepoName, ResponseModel, StrictModel, TagName, TaskId


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
