"""Bodies of the deployment routes (localrun)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from docker_manager.schemas.common import (
    AppId,
    Argv,
    ContainerName,
    CpuSet,
    EnvMap,
    MemorySize,
    PortMap,
    ResponseModel,
    StrictModel,
    TaskId,
)
from docker_manager.schemas.containers import ContainerPath, NamedVolume

HttpPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,511}$")]


class LocalRunRequest(StrictModel):
    """`POST /docker/localrun`: load a `.tar.lz4` artefact and run it."""

    lz4_path: str = Field(
        max_length=4096,
        description="The artefact, in the upload or builds root; relative paths start at the upload root.",
    )
    task_id: TaskId = Field(description="The build's task id: its folder gets the logs and build.info.json.")
    app_id: AppId | None = Field(None, description="Default: the app_id of the build, else the tag's name.")
    ports: PortMap = Field(default_factory=dict)
    env: EnvMap = Field(default_factory=dict)
    command: Argv | None = None
    name: ContainerName | None = Field(None, description="Overrides the `{app_id}-{task_id}` rule.")
    cpu: float | None = Field(None, gt=0)
    cpuset: CpuSet | None = None
    memory: MemorySize | None = None
    healthcheck_time: int | None = Field(None, ge=1, le=3600, description="Seconds before the check (15).")
    healthcheck_path: HttpPath = Field("/", description="Path probed when a port is published.")
    volume_name: NamedVolume | None = Field(
        None, description="A named volume of the app (created if missing)."
    )
    mount_path: ContainerPath | None = Field(None, description="Where the volume is mounted.")
    mode: Literal["rw", "ro"] = "rw"

    @model_validator(mode="after")
    def _volume_needs_mount(self) -> LocalRunRequest:
        if (self.volume_name is None) != (self.mount_path is None):
            raise ValueError("volume_name and mount_path go together")
        return self


class ContainerRefResult(ResponseModel):
    id: str
    name: str
    status: str | None = None


class LocalRunResult(ResponseModel):
    status: str = Field(description="ok")
    task_id: str = Field(description="The build's task id (its folder got the logs).")
    localrun_task_id: str = Field(description="This localrun's own task.")
    image_id: str
    tag: str | None
    container: ContainerRefResult
    container_id: str
    container_name: str
    host_port: int | None
    app_id: str | None
    generated_name: str = Field(description="The container's name (the original's field).")
    name_generated: bool = Field(description="True when the name came from the {app_id}-{task_id} rule.")
    release: int | None = Field(None, description="The app's release this deploy became (with an app_id).")
    healthcheck: bool
    healthchecksstatus: str
    isChecking: bool
    healthcheck_time: int
    start_check_time: str
    end_check_time: str
