"""Containers: run with limits and labels, lifecycle, logs, exec, stats.

Every container the service creates goes through `ContainerService.create_and_start`, where the
create-body policy (`container_policy`) is checked and the container is recorded as this
service's (`ownership`): later paths (localrun, pipeline, update-port) get both for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from docker_manager.auth import Principal, Scope
from docker_manager.config import Settings
from docker_manager.docker import Docker, StreamId
from docker_manager.errors import (
    Conflict,
    EngineTimeout,
    InvalidInput,
    NotFound,
    NotManaged,
)
from docker_manager.labels import APP_ID, MANAGED_FILTER, TASK_ID, managed_labels
from docker_manager.ownership import Kind, Ownership
from docker_manager.schemas.containers import (
    ActionResult,
    ContainerSummary,
    ExecResult,
    LogLine,
    LogsResult,
    RemoveResult,
    RunExtendedRequest,
    RunRequest,
    RunResult,
    StatsResult,
    VolumeBind,
)
from docker_manager.schemas.deploy import LocalRunRequest
from docker_manager.services.container_policy import BUILTIN_NETWORKS, ContainerPolicy
from docker_manager.util.cache import SingleFlightCache


@dataclass
class ContainerSpec:
    """Everything needed to create one container, whichever route asked for it."""

    image: str
    name: str | None = None
    command: list[str] | None = None
    ports: dict[str, int | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    app_id: str | None = None
    task_id: str | None = None
    nano_cpus: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    volumes: dict[str, VolumeBind] = field(default_factory=dict)
    network: str | None = None
    restart_policy: dict[str, Any] | None = None
    log_driver: str | None = None
    log_options: dict[str, str] = field(default_factory=dict)
    # Host-level options (see `container_policy`): admin only.
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    network_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    userns_mode: str | None = None
    security_opt: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    storage_opt: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_run(cls, body: RunRequest) -> ContainerSpec:
        return cls(
            image=body.image,
            name=body.name,
            command=body.command,
            ports=body.ports,
            env=body.env,
            app_id=body.app_id,
            task_id=body.task_id,
            nano_cpus=round(body.cpu * 1e9) if body.cpu is not None else None,
            cpuset_cpus=body.cpuset,
            memory=body.memory,
        )

    @classmethod
    def from_localrun(cls, body: LocalRunRequest, *, image: str, app_id: str | None) -> ContainerSpec:
        volumes = {}
        if body.volume_name and body.mount_path:
            volumes[body.volume_name] = VolumeBind(bind=body.mount_path, mode=body.mode)
        return cls(
            image=image,
            name=body.name,
            command=body.command,
            ports=body.ports,
            env=body.env,
            app_id=app_id,
            task_id=body.task_id,
            nano_cpus=round(body.cpu * 1e9) if body.cpu is not None else None,
            cpuset_cpus=body.cpuset,
            memory=body.memory,
            volumes=volumes,
        )

    @classmethod
    def from_run_extended(cls, body: RunExtendedRequest) -> ContainerSpec:
        policy = body.restart_policy
        return cls(
            image=body.image,
            name=body.name,
            command=body.command,
            ports=body.ports,
            env=body.env,
            app_id=body.app_id,
            task_id=body.task_id,
            nano_cpus=body.nano_cpus,
            cpuset_cpus=body.cpuset_cpus,
            cpuset_mems=body.cpuset_mems,
            memory=body.mem_limit,
            memory_swap=body.memswap_limit,
            cpu_shares=body.cpu_shares,
            pids_limit=body.pids_limit,
            volumes=body.volumes,
            network=body.network,
            restart_policy=(
                {"Name": policy.name, "MaximumRetryCount": policy.maximum_retry_count} if policy else None
            ),
            log_driver=body.log_driver,
            log_options=body.log_options,
            privileged=body.privileged,
            cap_add=body.cap_add,
            cap_drop=body.cap_drop,
            devices=body.devices,
            network_mode=body.network_mode,
            pid_mode=body.pid_mode,
            ipc_mode=body.ipc_mode,
            userns_mode=body.userns_mode,
            security_opt=body.security_opt,
            sysctls=body.sysctls,
            storage_opt=body.storage_opt,
        )

    @property
    def container_name(self) -> str | None:
        """The API README's rule: `name` wins, else `{app_id}-{task_id}` when both are given."""
        if self.name:
            return self.name
        if self.app_id and self.task_id:
            return f"{self.app_id}-{self.task_id}"
        return None


def _check_limits(spec: ContainerSpec, settings: Settings) -> None:
    cpus = os.cpu_count() or 1
    if spec.nano_cpus is not None and not 10_000_000 <= spec.nano_cpus <= cpus * 1_000_000_000:
        raise InvalidInput(f"cpu must be between 0.01 and {cpus} on this host", field="cpu")
    for name, cpuset in (("cpuset", spec.cpuset_cpus), ("cpuset_mems", spec.cpuset_mems)):
        if cpuset and any(int(n) >= cpus for n in cpuset.replace("-", ",").split(",")):
            raise InvalidInput(f"{name} names a CPU this host does not have (it has {cpus})", field=name)
    if spec.memory_swap is not None and spec.memory is not None and spec.memory_swap < spec.memory:
        raise InvalidInput("memswap_limit must not be below mem_limit", field="memswap_limit")
    for container_port, host_port in spec.ports.items():
        if host_port is not None and host_port in settings.forbidden_host_ports:
            raise InvalidInput(
                f"host port {host_port} is reserved on this host", field=f"ports.{container_port}"
            )


def create_config(spec: ContainerSpec, settings: Settings) -> dict[str, Any]:
    """The engine's create body for a spec (validated and policy-checked before)."""
    host: dict[str, Any] = {
        "PortBindings": {
            port: [{"HostIp": settings.publish_host_ip, "HostPort": str(host_port or "")}]
            for port, host_port in spec.ports.items()
        },
    }
    optional = {
        "NanoCpus": spec.nano_cpus,
        "CpusetCpus": spec.cpuset_cpus,
        "CpusetMems": spec.cpuset_mems,
        "Memory": spec.memory,
        "MemorySwap": spec.memory_swap,
        "CpuShares": spec.cpu_shares,
        "PidsLimit": spec.pids_limit,
        "RestartPolicy": spec.restart_policy,
        "PidMode": spec.pid_mode,
        "IpcMode": spec.ipc_mode,
        "UsernsMode": spec.userns_mode,
    }
    host.update({key: value for key, value in optional.items() if value is not None})
    if spec.log_driver:
        host["LogConfig"] = {"Type": spec.log_driver, "Config": spec.log_options}
    if spec.volumes:
        host["Binds"] = [f"{source}:{bind.bind}:{bind.mode}" for source, bind in spec.volumes.items()]
    if spec.network_mode or spec.network:
        host["NetworkMode"] = spec.network_mode or spec.network
    if spec.privileged:
        host["Privileged"] = True
    if spec.cap_add:
        host["CapAdd"] = spec.cap_add
    if spec.cap_drop:
        host["CapDrop"] = spec.cap_drop
    if spec.devices:
        host["Devices"] = [
            {"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in spec.devices
        ]
    if spec.security_opt:
        host["SecurityOpt"] = spec.security_opt
    if spec.sysctls:
        host["Sysctls"] = spec.sysctls
    if spec.storage_opt:
        host["StorageOpt"] = spec.storage_opt
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": managed_labels(app_id=spec.app_id, task_id=spec.task_id),
        "ExposedPorts": {port: {} for port in spec.ports},
        "HostConfig": host,
    }
    if spec.command:
        config["Cmd"] = spec.command
    return config


def published_ports(inspect: dict[str, Any]) -> dict[str, int | None]:
    """Container port -> host port, from an inspect result (first binding of each port)."""
    ports: dict[str, int | None] = {}
    for port, bindings in ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).items():
        host_port = next((b.get("HostPort") for b in bindings or [] if b.get("HostPort")), None)
        ports[port] = int(host_port) if host_port else None
    return ports


def _name(inspect: dict[str, Any]) -> str:
    return str(inspect.get("Name", "")).lstrip("/")


def _state(inspect: dict[str, Any]) -> str:
    return str((inspect.get("State") or {}).get("Status", "unknown"))


@dataclass
class _Capture:
    """Output of one stream, capped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> bool:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            self.truncated = True
            return False
        self.data += chunk
        return True

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


SummaryList = list[ContainerSummary]
StrList = list[str]


class ContainerService:
    def __init__(self, docker: Docker, ownership: Ownership, settings: Settings) -> None:
        self._docker = docker
        self._ownership = ownership
        self.policy = ContainerPolicy(docker, ownership, settings)
        self._settings = settings
        # Listing 100 containers costs the engine ~15 ms and it serialises them; dashboards poll.
        # One engine call per second at most, shared by everyone; our own changes clear it.
        self._listings: SingleFlightCache[list[Any]] = SingleFlightCache(ttl=1.0)

    # --- creating ------------------------------------------------------------------------
    async def run(self, spec: ContainerSpec, principal: Principal, *, detach: bool = True) -> RunResult:
        """Create and start a container; on any failure nothing is left behind."""
        _check_limits(spec, self._settings)
        config = create_config(spec, self._settings)
        # Checked here too so that a refused request creates nothing (no network, no volume);
        # create_and_start checks again because every other path goes through it alone.
        await self.policy.check(config, principal)
        await self._require_image(spec.image)
        await self._ensure_network(spec, principal)
        await self._ensure_volumes(spec, principal)
        container_id = await self.create_and_start(config, name=spec.container_name, principal=principal)
        exit_code: int | None = None
        output: str | None = None
        if not detach:
            exit_code, output = await self._wait_for_exit(container_id)
        inspect = await self._docker.containers.inspect(container_id)
        return RunResult(
            id=container_id,
            name=_name(inspect),
            status=_state(inspect),
            image=spec.image,
            ports=published_ports(inspect),
            exit_code=exit_code,
            output=output,
        )

    async def create_and_start(
        self, config: dict[str, Any], *, name: str | None, principal: Principal
    ) -> str:
        """The one place containers are created: the policy check, create, record, start.

        If the start fails (a port already taken leaves the container "Created"), the container is
        removed, so a failed call changes nothing.
        """
        host_level = await self.policy.check(config, principal)
        self._listings.clear()
        container_id = await self._docker.containers.create(config, name=name)
        labels = config.get("Labels") or {}
        try:
            await self._ownership.record(
                Kind.CONTAINER,
                container_id,
                name=name,
                app_id=labels.get(APP_ID),
                task_id=labels.get(TASK_ID),
                host_level=host_level,
                created_by=principal.token_id,
            )
            await self._docker.containers.start(container_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._docker.containers.remove(container_id, force=True)
                await self._ownership.forget(Kind.CONTAINER, container_id)
            raise
        return container_id

    async def _require_image(self, image: str) -> None:
        try:
            await self._docker.images.inspect(image)
        except NotFound as exc:
            raise NotFound(
                f"image {image!r} is not on this host (this service never pulls implicitly)", field="image"
            ) from exc

    async def _ensure_network(self, spec: ContainerSpec, principal: Principal) -> None:
        if not spec.network or spec.network in BUILTIN_NETWORKS or spec.network == "host":
            return
        try:
            await self._docker.networks.inspect(spec.network)
        except NotFound:
            labels = managed_labels(app_id=spec.app_id, task_id=spec.task_id)
            try:
                created = await self._docker.networks.create(spec.network, labels=labels)
            except Conflict:
                return  # created meanwhile by someone else: not ours (the policy check decides)
            await self._ownership.record(
                Kind.NETWORK,
                str(created["Id"]),
                name=spec.network,
                app_id=spec.app_id,
                task_id=spec.task_id,
                created_by=principal.token_id,
            )

    async def _ensure_volumes(self, spec: ContainerSpec, principal: Principal) -> None:
        for source in spec.volumes:
            if source.startswith("/"):
                continue
            try:
                await self._docker.volumes.inspect(source)
            except NotFound:
                # The local driver, no options: a plain volume of this app (never a host path).
                await self._docker.volumes.create(
                    source, labels=managed_labels(app_id=spec.app_id, task_id=spec.task_id)
                )
                await self._ownership.record(
                    Kind.VOLUME,
                    source,
                    name=source,
                    app_id=spec.app_id,
                    task_id=spec.task_id,
                    created_by=principal.token_id,
                )

    async def _wait_for_exit(self, container_id: str) -> tuple[int | None, str]:
        try:
            result = await self._docker.containers.wait(container_id, timeout=self._settings.exec_timeout)
            exit_code: int | None = int(result.get("StatusCode", -1))
        except EngineTimeout:
            exit_code = None  # still running after the wait limit; it is left running
        logs = await self._collect_logs(container_id, tty=False, tail=None, timestamps=False)
        return exit_code, logs.logs

    # --- looking up ----------------------------------------------------------------------
    async def list(self, *, all: bool, managed_only: bool = False) -> SummaryList:
        filters = MANAGED_FILTER if managed_only else None
        items = await self._listings.get(
            (all, managed_only), lambda: self._docker.containers.list(all=all, filters=filters)
        )
        tags = await self._image_tags()
        result = []
        for item in items:
            managed = self._ownership.owns(Kind.CONTAINER, item["Id"])
            if managed_only and not managed:
                continue  # a label anyone can set; the record decides
            labels = item.get("Labels") or {}
            ports: dict[str, int | None] = {}
            for port in item.get("Ports") or []:
                key = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
                ports.setdefault(key, port.get("PublicPort"))
            result.append(
                ContainerSummary(
                    id=item["Id"],
                    name=(item.get("Names") or ["/"])[0].lstrip("/"),
                    # The original's shapes: the image's tags, and the state word as `status`.
                    image=tags.get(item.get("ImageID", ""), []),
                    status=item.get("State", ""),
                    image_name=item.get("Image", ""),
                    image_id=item.get("ImageID"),
                    state=item.get("State", ""),
                    status_text=item.get("Status", ""),
                    managed=managed,
                    app_id=labels.get(APP_ID) if managed else None,
                    task_id=labels.get(TASK_ID) if managed else None,
                    ports=ports,
                    created=item.get("Created"),
                )
            )
        return result

    async def _image_tags(self) -> dict[str, StrList]:
        images = await self._listings.get("images", self._docker.images.list)
        return {
            image["Id"]: [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] for image in images
        }

    async def inspect(self, ref: str, principal: Principal) -> dict[str, Any]:
        data = await self._docker.containers.inspect(ref)
        # Environment values are secrets: shown to exec tokens for this service's containers only.
        if not (principal.is_admin or (principal.has(Scope.EXEC) and self._may_touch(data, principal))):
            _redact_env(data)
        return data

    def manageable(self, container_id: str) -> bool:
        """This service's, and without host-level options: what non-admin tokens may act on."""
        owned = self._ownership.get(Kind.CONTAINER, container_id)
        return owned is not None and not owned.host_level

    def _may_touch(self, data: dict[str, Any], principal: Principal) -> bool:
        return principal.is_admin or self.manageable(str(data.get("Id")))

    async def owned(self, ref: str, principal: Principal) -> dict[str, Any]:
        """Inspect a container and check the caller may touch it: this service's (by its record,
        never by labels) and not given host-level options by an admin; or the caller is admin."""
        data = await self._docker.containers.inspect(ref)
        if not self._may_touch(data, principal):
            owned = self._ownership.get(Kind.CONTAINER, str(data.get("Id")))
            reason = "has host-level options" if owned is not None else "was not created by this service"
            raise NotManaged(f"container {ref!r} {reason}; that needs an admin token")
        return data

    # --- lifecycle -----------------------------------------------------------------------
    async def act(self, ref: str, principal: Principal, action: str, **kwargs: Any) -> ActionResult:
        """start / stop / restart / pause / unpause / kill, on a container the caller owns."""
        data = await self.owned(ref, principal)
        container_id = data["Id"]
        self._listings.clear()
        await getattr(self._docker.containers, action)(container_id, **kwargs)
        after = await self._docker.containers.inspect(container_id)
        return ActionResult(id=container_id, name=_name(after), status=_state(after))

    async def remove(self, ref: str, principal: Principal, *, force: bool, volumes: bool) -> RemoveResult:
        data = await self.owned(ref, principal)
        self._listings.clear()
        await self._docker.containers.remove(data["Id"], force=force, volumes=volumes)
        await self._ownership.forget(Kind.CONTAINER, data["Id"])
        return RemoveResult(removed=True, id=data["Id"], name=_name(data))

    async def prune(self) -> StrList:
        """Remove this service's stopped containers (by its record: a forged label is not enough)."""
        self._listings.clear()
        stopped = await self._docker.containers.list(
            all=True, filters={**MANAGED_FILTER, "status": ["created", "exited", "dead"]}
        )
        deleted = []
        for item in stopped:
            owned = self._ownership.get(Kind.CONTAINER, item["Id"])
            if owned is None or owned.host_level:
                continue
            with contextlib.suppress(NotFound, Conflict):
                await self._docker.containers.remove(item["Id"])
                await self._ownership.forget(Kind.CONTAINER, item["Id"])
                deleted.append(item["Id"])
        return deleted

    # --- output --------------------------------------------------------------------------
    async def logs(self, ref: str, principal: Principal, *, tail: int | None, timestamps: bool) -> LogsResult:
        data = await self.owned(ref, principal)
        tty = bool((data.get("Config") or {}).get("Tty"))
        result = await self._collect_logs(data["Id"], tty=tty, tail=tail, timestamps=timestamps)
        result.name = _name(data)
        return result

    async def _collect_logs(
        self, container_id: str, *, tty: bool, tail: int | None, timestamps: bool
    ) -> LogsResult:
        limit = self._settings.exec_max_output_bytes
        merged = _Capture(limit)
        partial: dict[StreamId, str] = {StreamId.STDOUT: "", StreamId.STDERR: ""}
        lines: list[LogLine] = []
        async with self._docker.containers.logs(
            container_id, tty=tty, tail=tail, timestamps=timestamps
        ) as frames:
            async for stream_id, payload in frames:
                if not merged.add(payload):
                    break
                text = partial[stream_id] + payload.decode("utf-8", "replace")
                *complete, partial[stream_id] = text.split("\n")
                name = "stderr" if stream_id == StreamId.STDERR else "stdout"
                lines.extend(LogLine(stream=name, text=line) for line in complete)
        for stream_id, rest in partial.items():
            if rest:
                lines.append(
                    LogLine(stream="stderr" if stream_id == StreamId.STDERR else "stdout", text=rest)
                )
        return LogsResult(
            id=container_id, name="", logs=merged.text(), lines=lines, truncated=merged.truncated
        )

    async def exec(
        self,
        ref: str,
        principal: Principal,
        *,
        cmd: StrList,
        workdir: str | None,
        timeout: float | None,
    ) -> ExecResult:
        """Run `cmd` (an argv list, no shell) in the container; output and time are capped."""
        data = await self.owned(ref, principal)
        if not (data.get("State") or {}).get("Running"):
            raise Conflict(f"container {ref!r} is not running")
        limit = min(timeout or self._settings.exec_timeout, self._settings.exec_timeout)
        exec_id = await self._docker.execs.create(data["Id"], cmd, workdir=workdir)
        out = _Capture(self._settings.exec_max_output_bytes)
        err = _Capture(self._settings.exec_max_output_bytes)
        both = _Capture(2 * self._settings.exec_max_output_bytes)  # the original's merged `output`
        timed_out = False
        # The limit covers the run, not the start: a start cut short could leave a process that
        # began after all, which nobody would then kill.
        async with self._docker.execs.start(exec_id) as frames:
            try:
                async with asyncio.timeout(limit):
                    async for stream_id, payload in frames:
                        target = err if stream_id == StreamId.STDERR else out
                        both.add(payload)
                        if not target.add(payload):
                            break  # output flood: stop reading and end the process below
            except TimeoutError:
                timed_out = True
        exit_code = await self._finish_exec(exec_id, kill=timed_out or out.truncated or err.truncated)
        return ExecResult(
            exit_code=exit_code,
            output=both.text(),
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
        )

    async def _finish_exec(self, exec_id: str, *, kill: bool) -> int | None:
        info = await self._docker.execs.inspect(exec_id)
        if kill and info.get("Running") and info.get("Pid"):
            # The engine has no "kill exec" call; its Pid is a host pid when the engine is local.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(info["Pid"]), signal.SIGKILL)
        for _ in range(50):
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else None
            await asyncio.sleep(0.02)
            info = await self._docker.execs.inspect(exec_id)
        return None

    async def stats(self, ref: str) -> StatsResult:
        data = await self._docker.containers.inspect(ref)
        if not (data.get("State") or {}).get("Running"):
            raise Conflict(f"container {ref!r} is not running; it has no live statistics")
        raw = await self._docker.containers.stats(data["Id"])
        return _stats_result(data, raw)


HIDDEN = "<hidden: needs exec>"


def _redact_env(data: dict[str, Any]) -> None:
    """What may hold a secret, hidden: env values, the command and its arguments (`--password=`),
    the healthcheck's command, the log driver's options (a `splunk-token`)."""
    config = data.get("Config") or {}
    config["Env"] = [item.split("=", 1)[0] + "=<redacted>" for item in config.get("Env") or []]
    for key in ("Cmd", "Entrypoint"):
        if config.get(key):
            config[key] = [HIDDEN]
    if (config.get("Healthcheck") or {}).get("Test"):
        config["Healthcheck"]["Test"] = [HIDDEN]
    if data.get("Args"):
        data["Args"] = [HIDDEN]
    log_config = (data.get("HostConfig") or {}).get("LogConfig") or {}
    if log_config.get("Config"):
        log_config["Config"] = dict.fromkeys(log_config["Config"], "<redacted>")


def _stats_result(data: dict[str, Any], raw: dict[str, Any]) -> StatsResult:
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = (cpu_delta / system_delta) * online * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    memory = raw.get("memory_stats") or {}
    # Page cache is reclaimable; `docker stats` leaves it out too.
    cache = (memory.get("stats") or {}).get("inactive_file", 0)
    usage = max(int(memory.get("usage", 0)) - int(cache), 0)
    limit = int(memory.get("limit", 0))
    networks = raw.get("networks") or {}
    return StatsResult(
        id=data["Id"],
        name=_name(data),
        cpu_percent=round(cpu_percent, 2),
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=round(usage / limit * 100.0, 2) if limit else 0.0,
        pids=(raw.get("pids_stats") or {}).get("current"),
        network_rx=sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        network_tx=sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
        raw=raw,
    )
