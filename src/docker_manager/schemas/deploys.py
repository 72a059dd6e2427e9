"""Bodies of the deployment routes (localrun)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from docker_manager.schemas.builds import BuildArgName, DockerfileName
from docker_manager.schemas.common import (
    AppId,
    Argv,
    ContainerName,
    CpuSet,
    EnvMap,
    HttpPath,
    ImageRef,
    ImageTag,
    MemorySize,
    PortMap,
    ResponseModel,
    StrictModel,
    TaskId,
)
from docker_manager.schemas.containers import ContainerPath, LogDriver, LogOptions, NamedVolume
from docker_manager.schemas.sites import Domain, SiteTlsFields


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


# --- the deploy operation (`POST /apps/{app_id}/deploy`) -----------------------------------------

# Placement constraints as Swarm writes them: `node.role==worker`, `node.labels.zone!=b`...
PlacementConstraint = Annotated[
    str,
    StringConstraints(
        pattern=r"^(node\.(id|hostname|role|platform\.os|platform\.arch)|(node|engine)\.labels\.[A-Za-z0-9_.-]{1,100})"
        r" ?(==|!=) ?[A-Za-z0-9_.:-]{1,200}$"
    ),
]
GitRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")]


class GitSource(StrictModel):
    url: str = Field(max_length=2048, description="Under the pipeline's rules (DM_GIT_ALLOWED_SCHEMES...).")
    ref: GitRef | None = Field(None, description="A branch or tag (default: the remote's HEAD).")


class DeployHealth(StrictModel):
    """When the new version counts as serving: an HTTP answer on `path` before the switch."""

    path: HttpPath = "/"
    expected_status: int | None = Field(None, ge=100, le=599, description="Default: any status below 500.")
    interval: float = Field(
        0.5,
        ge=0.05,
        le=30,
        description="Longest pause between probes (the first come sooner, doubling from 0.02 s).",
    )
    timeout: float = Field(30.0, ge=0.5, le=600, description="Seconds the answer may take to come, in all.")
    start_period: float = Field(0.0, ge=0, le=600, description="Seconds given to start before probing.")


class DeployRestartPolicy(StrictModel):
    """A deployed container's restart policy. Not `always`: the engine starts an `always`
    container again when it restarts even after it was stopped, so a retired release would come
    back beside the live one (`unless-stopped` is `always` without that)."""

    name: Literal["no", "unless-stopped", "on-failure"] = "unless-stopped"
    maximum_retry_count: int = Field(
        0, ge=0, le=100, description="on-failure: at most this many (0: no limit)."
    )

    @model_validator(mode="after")
    def _count_with_on_failure(self) -> DeployRestartPolicy:
        if self.maximum_retry_count and self.name != "on-failure":
            raise ValueError("maximum_retry_count goes with on-failure")
        return self


class RegistryLogin(StrictModel):
    """Credentials for one pull from a private registry: sent to the engine with that pull only,
    never stored, logged, audited or shown."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
    password: SecretStr = Field(min_length=1, max_length=4096)


class DeployRequest(SiteTlsFields):
    """Exactly one source: a context folder, a git repository, an image, or an artefact."""

    context: str | None = Field(None, max_length=4096, description="A folder inside DM_CONTEXT_ROOTS.")
    dockerfile: DockerfileName | None = Field(None, description="Its Dockerfile's name (default Dockerfile).")
    build_args: dict[BuildArgName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict, max_length=100
    )
    nocache: bool = False
    tag: ImageTag | None = Field(
        None, description="The built or loaded image's tag (default `{app}:latest`)."
    )
    git: GitSource | None = None
    image: ImageRef | None = Field(
        None,
        description=(
            "An image on the engine, else pulled (with `registry_auth` if given). A token limited to apps: "
            "only its apps' images on this host."
        ),
    )
    registry_auth: RegistryLogin | None = Field(
        None, description="With `image`: the registry's credentials for its pull (used once, kept nowhere)."
    )
    artefact: str | None = Field(
        None, max_length=4096, description="A .tar.lz4 in the upload or builds root."
    )
    container_port: int = Field(80, ge=1, le=65535, description="The port the app listens on inside.")
    port: int | None = Field(
        None, ge=1, le=65535, description="A host port to publish it on (default: one the engine chooses)."
    )
    env: EnvMap = Field(default_factory=dict)
    memory: MemorySize | None = None
    cpus: float | None = Field(None, gt=0)
    domain: Domain | None = Field(None, description="Serve this domain (its site made if missing).")
    health: DeployHealth = Field(default_factory=DeployHealth)
    drain_seconds: float | None = Field(None, ge=0, le=300, description="Before the previous one stops.")
    restart_policy: DeployRestartPolicy | None = Field(
        None,
        description=(
            "The container's restart policy (default unless-stopped: the app comes back after the "
            "engine or the host restarts, and stays down when stopped on purpose)."
        ),
    )
    log_driver: LogDriver | None = Field(
        None, description="The container's log driver (default: the engine's; a remote one needs admin)."
    )
    log_options: LogOptions = Field(default_factory=dict, max_length=32)
    export: bool = Field(False, description="Also save the image as a .tar.lz4 in the task's folder.")
    mode: Literal["container", "swarm"] = Field(
        "container", description="swarm: replicas on the swarm this engine manages (a rolling release)."
    )
    replicas: int | None = Field(None, ge=0, le=64, description="swarm: how many (default 1, or as now).")
    placement: list[PlacementConstraint] | None = Field(
        None, max_length=20, description="swarm: constraints such as `node.role==worker` (default: as now)."
    )

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_as_before(cls, value: object) -> object:
        # (the first version of this route took a bool: true was TLS, false said nothing)
        if isinstance(value, bool):
            return "auto" if value else None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DeployRequest:
        given = [name for name in ("context", "git", "image", "artefact") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source: context, git, image or artefact"
                + (f" (given: {', '.join(given)})" if given else "")
            )
        if (self.dockerfile or self.build_args or self.nocache) and not (self.context or self.git):
            raise ValueError("dockerfile, build_args and nocache go with a context or git source")
        if self.mode == "container" and (self.replicas is not None or self.placement is not None):
            raise ValueError('replicas and placement go with mode "swarm"')
        if self.mode == "swarm" and self.port is not None:
            # (a fixed host port: a start-first rollout could never place the new replica beside
            # the old one on that node)
            raise ValueError('mode "swarm" publishes each replica on a port the engine chooses: drop port')
        if self.mode == "swarm" and self.export:
            raise ValueError('export goes with mode "container"')
        if self.mode == "swarm" and (self.restart_policy or self.log_driver or self.log_options):
            # (a swarm restarts replicas by itself, and its tasks log through the engine's driver)
            raise ValueError('restart_policy and log options go with mode "container"')
        if self.registry_auth is not None and self.image is None:
            raise ValueError("registry_auth goes with an image source")
        if self.log_options and not self.log_driver:
            raise ValueError("log_options go with a log_driver")
        if (self.tls is not None or self.hsts_max_age is not None) and self.domain is None:
            raise ValueError("tls and hsts_max_age are the options of `domain`'s site: give the domain")
        return self


class DeployStarted(ResponseModel):
    task_id: str
    status: str = Field("started", description="started")
    app_id: str
