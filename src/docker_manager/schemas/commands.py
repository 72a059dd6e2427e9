"""Host commands: what `/tasks/run-stream` takes and answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from docker_manager.schemas.common import EnvMap, ResponseModel, StrictModel, TaskId


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
