"""What a container create body may hold: an allowlist, read from the body that will be sent.

Every container this service creates goes through `ContainerPolicy.check`, whichever route built
the body (run, run-extended, localrun, the pipeline, an update-port recreation), so no path slips
past it. A non-admin request may produce only what this service itself sets; everything else is
"host-level" and needs an admin token and `DM_ALLOW_PRIVILEGED_OPTIONS`:

- top-level fields: the image, command, entrypoint, env, labels, exposed ports, working dir, user,
  stop signal/timeout, healthcheck, tty, hostname (the last ones only come from recreating a
  container, which copies them from the engine's own record of it);
- host config: published ports on `DM_PUBLISH_HOST_IP`, CPU/memory/pids limits, restart policy,
  read-only root, dropped capabilities, a log driver that keeps logs on this host, `ipc` private
  or shareable, and
  - volumes: named ones only, and only this service's for the same app, made by the same token
    (or new ones, which the service then creates with the local driver and no options, for that
    app); recreating an app's own container (rollback, update-port) keeps its volumes;
  - networks: the built-in bridge/none, or one this service created (or a new one it creates).

Everything not listed (privileged, capabilities added, devices, host or `container:` namespaces,
bind mounts, tmpfs, extra hosts, another app's volume or network...) is host-level, including
fields nobody has thought of yet.

Whoever asks, a container may not publish a host port that a site of another app, or a site an
admin pointed at the host, sends its traffic to (409): published there, it would answer for that
domain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.site_header import managed_sites
from docker_manager.auth import Principal
from docker_manager.errors import NotFound, PolicyViolation, PortInUse
from docker_manager.labels import APP_ID
from docker_manager.services.containers.options import ContainerOptions
from docker_manager.services.ownership.record import Kind, Ownership

# Log drivers that keep logs on this host. Others (syslog, gelf, fluentd...) can ship a
# container's output to any address.
LOCAL_LOG_DRIVERS = frozenset({"json-file", "local", "none"})
BUILTIN_NETWORKS = frozenset({"", "default", "bridge", "none"})

_TOP_LEVEL = frozenset(
    {
        "Image",
        "Cmd",
        "Entrypoint",
        "Env",
        "Labels",
        "ExposedPorts",
        "HostConfig",
        "WorkingDir",
        "User",
        "StopSignal",
        "StopTimeout",
        "Healthcheck",
        "Tty",
        "OpenStdin",
        "Hostname",
        "Domainname",
    }
)
# Host-config fields that only limit the container (any value is fine).
_LIMITS = frozenset(
    {
        "NanoCpus",
        "CpusetCpus",
        "CpusetMems",
        "Memory",
        "MemorySwap",
        "MemoryReservation",
        "CpuShares",
        "CpuPeriod",
        "CpuQuota",
        "PidsLimit",
        "RestartPolicy",
        "ReadonlyRootfs",
        "CapDrop",
        "ShmSize",  # /dev/shm's size; the engine sets 64 MiB itself
    }
)
_CHECKED = frozenset({"PortBindings", "LogConfig", "Binds", "NetworkMode", "IpcMode"})
_IPC_MODES = frozenset({"", "private", "shareable", "none"})


def _empty(value: Any) -> bool:
    return value in (None, "", [], {}, False, 0)


class ContainerPolicy:
    def __init__(self, docker: Docker, ownership: Ownership, options: ContainerOptions) -> None:
        self._docker = docker
        self._ownership = ownership
        self._options = options

    async def check(self, config: dict[str, Any], principal: Principal, *, recreated: bool = False) -> bool:
        """Refuse (403) what the caller may not create, and (409) host ports another app's site
        reaches; True when the body is host-level (admin). `recreated`: the body is an app's own
        container made again (rollback, update-port), not one the caller composed."""
        await self._check_site_ports(config)
        token = None if recreated else principal.token_id
        found = await self.host_level(config, token=token, admin=principal.is_admin)
        if not found:
            return False
        if not principal.is_admin:
            raise PolicyViolation(f"these options need an admin token: {', '.join(found)}")
        if not self._options.allow_privileged_options:
            raise PolicyViolation(
                f"these options are disabled on this host (DM_ALLOW_PRIVILEGED_OPTIONS): {', '.join(found)}"
            )
        return True

    async def host_level(
        self, config: dict[str, Any], *, token: str | None = None, admin: bool = False
    ) -> list[str]:
        """The parts of a create body that are not on the allowlist, in words (with `token`: a
        volume another token made is one of them, for an admin too: a volume a token made before
        the app's deploy would give that token what the app writes; an admin may take over one that
        predates per-token volumes)."""
        found = [key for key, value in config.items() if key not in _TOP_LEVEL and not _empty(value)]
        host = config.get("HostConfig") or {}
        found += [
            key
            for key, value in host.items()
            if key not in _LIMITS and key not in _CHECKED and not _empty(value)
        ]
        app_id = (config.get("Labels") or {}).get(APP_ID)
        found += self._ports(host.get("PortBindings") or {})
        driver = (host.get("LogConfig") or {}).get("Type")
        if driver and driver not in LOCAL_LOG_DRIVERS:
            found.append(f"log_driver={driver}")
        if host.get("IpcMode") not in _IPC_MODES and host.get("IpcMode") is not None:
            found.append(f"ipc_mode={host['IpcMode']}")
        found += await self._volumes(host.get("Binds") or [], app_id, token, admin)
        found += await self._network(str(host.get("NetworkMode") or ""))
        return found

    def _ports(self, bindings: dict[str, Any]) -> list[str]:
        allowed = {self._options.publish_host_ip}
        return [
            f"ports published on {binding.get('HostIp') or 'every address'}"
            for port_bindings in bindings.values()
            for binding in port_bindings or []
            if binding.get("HostIp") not in allowed
        ]

    async def _check_site_ports(self, config: dict[str, Any]) -> None:
        wanted = {
            int(binding["HostPort"])
            for bindings in ((config.get("HostConfig") or {}).get("PortBindings") or {}).values()
            for binding in bindings or []
            if str(binding.get("HostPort") or "").isdigit()
        }
        if not wanted:
            return
        app_id = (config.get("Labels") or {}).get(APP_ID)
        for _, header in await asyncio.to_thread(managed_sites, list(self._options.nginx_conf_dirs)):
            upstream = header.upstream
            if upstream.down or upstream.host != "127.0.0.1" or upstream.port not in wanted:
                continue
            if upstream.kind == "host" or header.app_id != app_id:
                raise PortInUse(
                    f"host port {upstream.port} is where the site for {header.domain} sends its "
                    "traffic; a container of another app may not publish it",
                    field="ports",
                )

    async def _volumes(
        self, binds: list[str], app_id: str | None, token: str | None, admin: bool
    ) -> list[str]:
        found = []
        for bind in binds:
            source = bind.split(":", 1)[0]
            if source.startswith("/"):
                found.append(f"bind mount of the host path {source}")
                continue
            try:
                volume = await self._docker.volumes.inspect(source)
            except NotFound:
                continue  # a new volume: the service creates it for this app
            owned = self._ownership.get(Kind.VOLUME, source)
            if owned is None:
                found.append(f"volume {source}, which this service did not create")
            elif owned.app_id != app_id:
                found.append(f"volume {source} of another app")
            elif token is not None and owned.created_by != token and not (admin and owned.created_by is None):
                # app_id is the caller's word: the token that made the volume is not.
                found.append(
                    f"volume {source}, which another token made ({owned.created_by or 'before tokens'})"
                )
            elif volume.get("Driver") != "local" or volume.get("Options"):
                # Removed and made again by hand under the same name (say, bound to a host path).
                found.append(f"volume {source}, which is no longer the plain volume this service made")
        return found

    async def _network(self, mode: str) -> list[str]:
        if mode in BUILTIN_NETWORKS:
            return []
        if mode == "host" or ":" in mode:
            return [f"network_mode={mode}"]
        try:
            network = await self._docker.networks.inspect(mode)
        except NotFound:
            return []  # a new network: the service creates it
        if self._ownership.owns(Kind.NETWORK, str(network.get("Id"))):
            return []
        return [f"network {mode}, which this service did not create"]
