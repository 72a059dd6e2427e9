"""Bodies and answers of the container routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from docker_manager.schemas.common import (
    AppId,
    Argv,
    ContainerName,
    ContainerRef,
    CpuSet,
    EnvMap,
    ImageRef,
    MemorySize,
    PortMap,
    ResponseModel,
    StrictModel,
    TaskId,
)

VolumeName = Annotated[
    str, StringConstraints(pattern=r"^(/[^\x00]{0,4095}|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})$")
]
NamedVolume = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
NetworkName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
ContainerPath = Annotated[str, StringConstraints(pattern=r"^/[^\x00:]{0,4095}$")]


class RunRequest(StrictModel):
    """`POST /docker/run`: the API README's simple run."""

    image: ImageRef
    name: ContainerName | None = Field(None, description="Overrides the `{app_id}-{task_id}` rule.")
    command: Argv | None = None
    ports: PortMap = Field(default_factory=dict)
    env: EnvMap = Field(default_factory=dict)
    detach: bool = Field(True, description="False waits for the container to exit and returns its output.")
    cpu: float | None = Field(None, gt=0, description="CPUs, e.g. 0.5 (becomes NanoCpus).")
    cpuset: CpuSet | None = None
    memory: MemorySize | None = None
    app_id: AppId | None = None
    task_id: TaskId | None = None


class VolumeBind(StrictModel):
    bind: ContainerPath
    mode: Literal["rw", "ro"] = "rw"


LogDriver = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
LogOptions = dict[
    Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,64}$")],
    Annotated[str, StringConstraints(max_length=1024)],
]


class RestartPolicy(StrictModel):
    name: Literal["no", "always", "unless-stopped", "on-failure"] = "no"
    maximum_retry_count: int = Field(0, ge=0, le=100)


class RunExtendedRequest(StrictModel):
    """`POST /docker/run-extended`: the README's fields plus volumes, network and restart policy.

    The last block of fields gives away the host; they are refused unless the token is `admin`
    and `DM_ALLOW_PRIVILEGED_OPTIONS` is on.
    """

    image: ImageRef
    name: ContainerName | None = None
    command: Argv | None = None
    ports: PortMap = Field(default_factory=dict)
    env: EnvMap = Field(default_factory=dict)
    volumes: dict[VolumeName, VolumeBind] = Field(
        default_factory=dict,
        max_length=50,
        description="Named volume (or, admin only, host path) -> {bind, mode}.",
    )
    network: NetworkName | None = Field(None, description="Network to join; created if missing.")
    mem_limit: MemorySize | None = None
    memswap_limit: MemorySize | None = None
    nano_cpus: int | None = Field(None, gt=0)
    cpu_shares: int | None = Field(None, ge=2, le=262144)
    cpuset_cpus: CpuSet | None = None
    cpuset_mems: CpuSet | None = None
    pids_limit: int | None = Field(None, ge=1, le=4194304)
    restart_policy: RestartPolicy | None = None
    log_driver: LogDriver | None = None
    log_options: LogOptions = Field(default_factory=dict, max_length=32)
    detach: bool = True
    app_id: AppId | None = None
    task_id: TaskId | None = None
    # --- host-level options (admin + DM_ALLOW_PRIVILEGED_OPTIONS) ---
    privileged: bool = False
    cap_add: list[Annotated[str, StringConstraints(pattern=r"^[A-Z_]{2,40}$")]] = Field(default_factory=list)
    cap_drop: list[Annotated[str, StringConstraints(pattern=r"^[A-Z_]{2,40}$")]] = Field(default_factory=list)
    devices: list[Annotated[str, StringConstraints(pattern=r"^/dev/[^\x00]{1,200}$")]] = Field(
        default_factory=list
    )
    network_mode: (
        Annotated[
            str,
            StringConstraints(pattern=r"^(bridge|none|host|(container:)?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})$"),
        ]
        | None
    ) = None
    pid_mode: Literal["host"] | None = None
    ipc_mode: Literal["host", "private", "shareable", "none"] | None = None
    userns_mode: Literal["host"] | None = None
    security_opt: list[Annotated[str, StringConstraints(max_length=256)]] = Field(default_factory=list)
    sysctls: dict[str, str] = Field(default_factory=dict, max_length=64)
    storage_opt: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,64}$")],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict, max_length=16, description='e.g. {"size": "10G"}; host-level.')

    @model_validator(mode="after")
    def _memswap_needs_memory(self) -> RunExtendedRequest:
        if self.memswap_limit is not None and self.mem_limit is None:
            raise ValueError("memswap_limit needs mem_limit")
        return self


class ContainerRefRequest(StrictModel):
    id_or_name: ContainerRef


class StopRequest(StrictModel):
    id_or_name: ContainerRef
    timeout: int = Field(10, ge=0, le=600, description="Seconds before SIGKILL.")
    force: bool = Field(False, description="Accepted for compatibility; stop always ends in SIGKILL.")


class RemoveRequest(StrictModel):
    id_or_name: ContainerRef
    force: bool = False
    volumes: bool = Field(False, description="Also remove anonymous volumes.")


class KillRequest(StrictModel):
    id_or_name: ContainerRef
    signal: Annotated[str, StringConstraints(pattern=r"^(SIG)?[A-Z0-9]{2,10}$|^\d{1,2}$")] = "SIGKILL"


class ExecRequest(StrictModel):
    id_or_name: ContainerRef
    cmd: Argv
    workdir: ContainerPath | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds; capped by DM_EXEC_TIMEOUT.")


class ContainerSummary(ResponseModel):
    id: str
    name: str
    image: list[str] = Field(description="The image's tags (the original's field).")
    status: str = Field(description="The state word: running, exited, created... (the original's field).")
    image_name: str = Field(description="The image as the container was created from it.")
    image_id: str | None = None
    state: str
    status_text: str = Field(description="The engine's own words, e.g. 'Up 5 minutes'.")
    managed: bool
    app_id: str | None = None
    task_id: str | None = None
    ports: dict[str, int | None] = Field(default_factory=dict)
    created: int | None = None


class RunResult(ResponseModel):
    id: str
    name: str
    status: str
    image: str
    ports: dict[str, int | None] = Field(default_factory=dict)
    exit_code: int | None = None
    output: str | None = None


class ActionResult(ResponseModel):
    id: str
    name: str
    status: str


class RemoveResult(ResponseModel):
    removed: bool
    id: str
    name: str


class LogLine(ResponseModel):
    stream: Literal["stdout", "stderr"]
    text: str


class LogsResult(ResponseModel):
    id: str
    name: str
    logs: str = Field(description="stdout and stderr interleaved as the engine sent them.")
    lines: list[LogLine]
    truncated: bool = False


class ExecResult(ResponseModel):
    exit_code: int | None
    output: str = Field(description="stdout and stderr together, in the order they came (the original's).")
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False


class StatsResult(ResponseModel):
    id: str
    name: str
    cpu_percent: float
    memory_usage: int
    memory_limit: int
    memory_percent: float
    pids: int | None = None
    network_rx: int = 0
    network_tx: int = 0
    raw: dict[str, Any] = Field(default_factory=dict)


ContainerPathField = Field(max_length=4096, description="Absolute path inside the container.")


class FsListRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    limit: int = Field(1000, ge=1, le=10_000)
    cursor: str | None = Field(None, max_length=4096, description="`next_cursor` of the previous page.")
    recursive: bool = Field(
        False, description="Everything below `path` (names relative to it); default: one level."
    )


class FsReadRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    offset: int = Field(0, ge=0, description="First byte to read.")
    length: int | None = Field(None, ge=0, description="Bytes to read (default: to the end).")


class FsWriteRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    content: str = Field(
        max_length=64 << 20, description="The file's content: text, or base64 when `base64` is true."
    )
    base64: bool = False
    mode: int = Field(0o644, ge=0, le=0o777, description="Permission bits (setuid and friends are refused).")
    parents: bool = Field(False, description="Create missing parent directories.")


class FsMkdirRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    parents: bool = Field(
        True,
        description="As `mkdir -p` (the original): create missing parents; an existing directory is fine.",
    )


class FsDeleteRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    recursive: bool = Field(
        True, description="As `rm -rf` (the original): a directory goes with its content; false refuses it."
    )


PathStatFields = dict[str, Any]


class FsEntry(ResponseModel):
    name: str = Field(description="Path relative to the listed directory.")
    path: str = Field(description="Absolute path in the container.")
    type: Literal["dir", "file"] = Field(description="The original's two kinds: dir, or file for the rest.")
    kind: Literal["file", "directory", "symlink", "hardlink", "char_device", "block_device", "fifo", "other"]
    size: int
    mode: int = Field(description="Permission bits as an integer (0o644 is 420).")
    mode_octal: str
    permissions: str
    mtime: float
    link_target: str | None = None
    uid: int = 0
    gid: int = 0


class FsListResult(ResponseModel):
    path: str
    entries: list[FsEntry]
    next_cursor: str | None
    stat: PathStatFields = Field(
        description="The engine's stat of `path`: name, size, mode, mtime, linkTarget."
    )


class FsReadResult(ResponseModel):
    path: str
    size: int = Field(description="Size of the whole file.")
    offset: int
    length: int = Field(description="Bytes returned.")
    encoding: Literal["utf-8", "base64"]
    content: str = Field(description="The bytes as text when they are UTF-8, else base64.")
    text: str | None = Field(description="The bytes as UTF-8 text, or null (the original's field).")
    base64: str = Field(description="The bytes in base64, always (the original's field).")
    truncated: bool = Field(description="True when the file goes on past what was returned.")
    stat: PathStatFields


class FsWriteResult(ResponseModel):
    path: str
    written: bool
    bytes: int = Field(description="Bytes written.")
    size: int
    mode: str
    created_dirs: list[str]


class FsMkdirResult(ResponseModel):
    path: str
    exit_code: int = Field(description="0, as `mkdir -p` answered in the original.")
    created: bool
    created_dirs: list[str]


class FsDeleteResult(ResponseModel):
    path: str
    exit_code: int = Field(description="0 when the path is gone (or was never there), as `rm -rf`.")
    deleted: bool = Field(description="False when there was nothing to delete.")
    type: str | None
    helper: bool = Field(False, description="True when the image had no rm and a helper did the work.")
