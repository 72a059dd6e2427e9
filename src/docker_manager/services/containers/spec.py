"""What a container is to be: the spec each route builds, and the engine create body made from it.

`ContainerSpec` is built once per route kind (`from_run`, `from_run_extended`, `from_localrun`);
`create_config` turns it into the engine's create body. `recreate_config` makes the body that
reproduces an existing container with one port moved (update-port), from the engine's own record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.errors import InvalidInput
from docker_manager.labels import managed_labels
from docker_manager.schemas.containers import RunExtendedRequest, RunRequest, VolumeBind
from docker_manager.schemas.deploys import LocalRunRequest


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


def check_host_port(port: int, forbidden: frozenset[int], *, field: str) -> None:
    """A host port no container may publish and no site may reach: SSH, the engine, this API."""
    if port in forbidden:
        raise InvalidInput(f"host port {port} is reserved on this host", field=field)


def check_limits(spec: ContainerSpec, forbidden_host_ports: frozenset[int]) -> None:
    cpus = os.cpu_count() or 1
    if spec.nano_cpus is not None and not 10_000_000 <= spec.nano_cpus <= cpus * 1_000_000_000:
        raise InvalidInput(f"cpu must be between 0.01 and {cpus} on this host", field="cpu")
    for name, cpuset in (("cpuset", spec.cpuset_cpus), ("cpuset_mems", spec.cpuset_mems)):
        if cpuset and any(int(n) >= cpus for n in cpuset.replace("-", ",").split(",")):
            raise InvalidInput(f"{name} names a CPU this host does not have (it has {cpus})", field=name)
    if spec.memory_swap is not None and spec.memory is not None and spec.memory_swap < spec.memory:
        raise InvalidInput("memswap_limit must not be below mem_limit", field="memswap_limit")
    for container_port, host_port in spec.ports.items():
        if host_port is not None:
            check_host_port(host_port, forbidden_host_ports, field=f"ports.{container_port}")


def create_config(spec: ContainerSpec, publish_host_ip: str) -> dict[str, Any]:
    """The engine's create body for a spec (validated and policy-checked before)."""
    host: dict[str, Any] = {
        "PortBindings": {
            port: [{"HostIp": publish_host_ip, "HostPort": str(host_port or "")}]
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


# Host-config fields a recreated container keeps (update-port, rollback), beside its port bindings.
KEPT_HOST_CONFIG = (
    "Binds",
    "Mounts",
    "NetworkMode",
    "RestartPolicy",
    "LogConfig",
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "CapAdd",
    "CapDrop",
    "Privileged",
    "SecurityOpt",
    "Sysctls",
    "Devices",
    "PidMode",
    "IpcMode",
    "UsernsMode",
    "ReadonlyRootfs",
    "Tmpfs",
    "ExtraHosts",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "Init",
    "ShmSize",
    "Ulimits",
    "OomKillDisable",
    "GroupAdd",
    "VolumesFrom",
)
KEPT_CONFIG = (
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "StopSignal",
    "StopTimeout",
    "Healthcheck",
    "Tty",
    "OpenStdin",
    "Hostname",
    "Domainname",
)


def create_body_of(info: ContainerInfo) -> dict[str, Any]:
    """The engine create body that makes the inspected container again (what it was created
    with: command, env, ports, limits, restart and log policy, mounts, network, labels)."""
    config = {key: value for key, value in info.config.items() if key in KEPT_CONFIG}
    old_host = info.host_config
    host = {key: old_host[key] for key in KEPT_HOST_CONFIG if old_host.get(key) not in (None, [], {}, "")}
    if old_host.get("PortBindings"):
        host["PortBindings"] = old_host["PortBindings"]
    config["HostConfig"] = host
    return config


def recreate_config(old: ContainerInfo, *, port_key: str, new_port: int, host_ip: str) -> dict[str, Any]:
    """An engine create body reproducing an inspected container, with one port moved."""
    config = create_body_of(old)
    host = config["HostConfig"]
    bindings = dict(host.get("PortBindings") or {})
    bindings[port_key] = [{"HostIp": host_ip, "HostPort": str(new_port)}]
    host["PortBindings"] = bindings
    config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}), port_key: {}}
    return config
