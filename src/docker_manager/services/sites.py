"""nginx sites and traffic switching: site create/delete, sign-domain, update-port.

Upstreams are always `127.0.0.1:<host port>` of a container this service manages. A switch never
drops requests: the new container must answer HTTP before nginx is pointed at it, nginx reloads
gracefully (old workers finish their requests), and the old container is stopped only after a
drain. If the new container is unhealthy, or nginx refuses the change, nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx2

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import Docker
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    InvalidInput,
    NotFound,
    PathNotAllowed,
    UnhealthyContainer,
)
from docker_manager.labels import is_managed
from docker_manager.nginx import Nginx, read_header
from docker_manager.schemas.nginx import (
    HealthGate,
    SignDomainRequest,
    SiteCreateRequest,
    SiteDeleteRequest,
    UpdatePortRequest,
)
from docker_manager.services.containers import ContainerService, published_ports
from docker_manager.services.tasks import find_task_dir
from docker_manager.tasks.files import INFO_JSON, TaskFiles, read_json


def ident_of(target: Path) -> str:
    """A name for the file's nginx variables and upstream, unique per file name."""
    return re.sub(r"[^a-z0-9]", lambda m: {"-": "_h", ".": "_d"}.get(m.group(), "_x"), target.stem)


# Host-config fields a recreated container keeps (update-port): everything but the port bindings.
_KEPT_HOST_CONFIG = (
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
_KEPT_CONFIG = (
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


def recreate_config(inspect: dict[str, Any], *, port_key: str, new_port: int, host_ip: str) -> dict[str, Any]:
    """An engine create body reproducing an inspected container, with one port moved."""
    config = {key: value for key, value in (inspect.get("Config") or {}).items() if key in _KEPT_CONFIG}
    old_host = inspect.get("HostConfig") or {}
    host = {key: old_host[key] for key in _KEPT_HOST_CONFIG if old_host.get(key) not in (None, [], {}, "")}
    bindings = dict(old_host.get("PortBindings") or {})
    bindings[port_key] = [{"HostIp": host_ip, "HostPort": str(new_port)}]
    host["PortBindings"] = bindings
    config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}), port_key: {}}
    config["HostConfig"] = host
    return config


class SiteService:
    def __init__(
        self, nginx: Nginx, docker: Docker, containers: ContainerService, settings: Settings
    ) -> None:
        self._nginx = nginx
        self._docker = docker
        self._containers = containers
        self._settings = settings
        self._app_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(3.0), trust_env=False, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    # --- where files go ------------------------------------------------------------------------
    def conf_dir(self, raw: str | None) -> Path:
        """A configured conf dir (the request's must be exactly one of them, symlinks resolved)."""
        allowed = [path.resolve() for path in self._settings.nginx_conf_dirs]
        if raw is None:
            return allowed[0]
        if "\x00" in raw:
            raise InvalidInput("conf_dir contains a NUL byte", field="conf_dir")
        chosen = Path(raw).resolve()
        if chosen not in allowed:
            raise PathNotAllowed(f"{raw!r} is not one of the configured nginx directories", field="conf_dir")
        return chosen

    def _serving(self, domain: str) -> list[tuple[Path, str | None]]:
        """Managed site files (in every conf dir) that serve `domain`, with their app_id."""
        found = []
        for directory in self._settings.nginx_conf_dirs:
            for path in sorted(directory.glob("*.conf")):
                header = read_header(path)
                if header is not None and header.domain == domain:
                    found.append((path, header.app_id))
        return found

    async def _target(self, conf_dir: Path, *, domain: str, app_id: str | None) -> Path:
        name = app_id or domain.replace("*", "_wildcard_")
        target = conf_dir / f"{name}.conf"
        others = await asyncio.to_thread(self._serving, domain)
        taken = [path for path, _ in others if path != target]
        if taken:
            raise Conflict(
                f"{domain} is already served by {taken[0].name}; delete that site first", field="domain"
            )
        exists = await asyncio.to_thread(target.exists)
        if exists and await asyncio.to_thread(read_header, target) is None:
            raise Conflict(f"{target.name} exists and was not written by this service", field="app_id")
        return target

    # --- upstream checks -------------------------------------------------------------------------
    async def _port_owner(self, port: int) -> dict[str, Any]:
        """The managed, running container that publishes host `port`."""
        for item in await self._containers.list(all=False, managed_only=True):
            if port in item.ports.values():
                return {"id": item.id, "name": item.name}
        raise InvalidInput(f"no running container of this service publishes host port {port}", field="port")

    async def _probe(self, port: int, gate: HealthGate) -> int:
        """Poll the new upstream until it answers as required, or raise UnhealthyContainer."""
        url = f"http://127.0.0.1:{port}{gate.health_path}"
        deadline = asyncio.get_running_loop().time() + gate.health_timeout
        last = "no answer"
        while True:
            try:
                response = await self._http.get(url)
                ok = (
                    response.status_code == gate.expected_status
                    if gate.expected_status
                    else response.status_code < 500
                )
                if ok:
                    return response.status_code
                last = f"HTTP {response.status_code}"
            except httpx2.HTTPError as exc:
                last = type(exc).__name__
            if asyncio.get_running_loop().time() >= deadline:
                raise UnhealthyContainer(
                    f"127.0.0.1:{port}{gate.health_path} did not answer as required ({last})"
                )
            await asyncio.sleep(0.2)

    async def _switch(
        self, target: Path, *, domain: str, port: int, app_id: str | None, ident: str
    ) -> dict[str, Any]:
        content = await asyncio.to_thread(
            self._nginx.render, ident=ident, domain=domain, port=port, app_id=app_id
        )
        async with self._nginx.lock:
            return await self._nginx.apply(target, content)

    # --- site create / delete ----------------------------------------------------------------------
    async def create_site(self, body: SiteCreateRequest) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        await self._port_owner(body.port)
        target = await self._target(conf_dir, domain=body.domain, app_id=body.app_id)
        reload = await self._switch(
            target, domain=body.domain, port=body.port, app_id=body.app_id, ident=ident_of(target)
        )
        return {
            "status": "created",
            "path": str(target),
            "domain": body.domain,
            "port": body.port,
            "nginx_reload": reload,
        }

    async def delete_site(self, body: SiteDeleteRequest) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        files = [
            path for path, _ in await asyncio.to_thread(self._serving, body.domain) if path.parent == conf_dir
        ]
        if not files:
            raise NotFound(f"no site of this service serves {body.domain} in {conf_dir}", field="domain")
        reloads = []
        async with self._nginx.lock:
            for path in files:
                reloads.append(await self._nginx.apply(path, None))
        return {
            "status": "deleted",
            "paths": [str(p) for p in files],
            "domain": body.domain,
            "nginx_reload": reloads[-1],
        }

    # --- sign-domain ---------------------------------------------------------------------------------
    async def sign_domain(self, body: SignDomainRequest, principal: Principal) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        summary: dict[str, Any] = {}
        folder: Path | None = None
        if body.task_id:
            folder = await asyncio.to_thread(find_task_dir, self._settings, body.task_id)
            found = await asyncio.to_thread(read_json, folder / INFO_JSON)
            if not found:
                raise NotFound(f"no build.info.json for task {body.task_id}", field="task_id")
            summary = found
        app_id = body.app_id or summary.get("app_id") or (summary.get("localrun") or {}).get("app_id")
        if not app_id:
            raise InvalidInput(
                "app_id is needed (give it, or a task_id whose build.info.json has it)", field="app_id"
            )
        new_ref = body.new_container or summary.get("container_name") or summary.get("container_id")
        if not new_ref:
            raise InvalidInput(
                "new_container is needed (give it, or a task_id that ran one)", field="new_container"
            )
        async with self._app_locks[str(app_id)]:
            new = await self._containers.owned(str(new_ref), principal)
            if not (new.get("State") or {}).get("Running"):
                raise UnhealthyContainer(f"the new container {new_ref} is not running")
            ports = [p for p in published_ports(new).values() if p]
            port = body.port or summary.get("host_port") or (ports[0] if ports else None)
            if port is None or port not in ports:
                raise InvalidInput(f"the new container does not publish host port {port}", field="port")
            old = None
            if body.old_container:
                old = await self._containers.owned(body.old_container, principal)
                if old["Id"] == new["Id"]:
                    raise InvalidInput("old_container is the new container", field="old_container")
            target = await self._target(conf_dir, domain=body.domain, app_id=str(app_id))
            await self._probe(int(port), body)
            reload = await self._switch(
                target, domain=body.domain, port=int(port), app_id=str(app_id), ident=ident_of(target)
            )
            old_stop = await self._retire(old, principal, body, remove=False)
        if folder is not None:
            await TaskFiles(folder).merge_info(
                {
                    "stage": "signing_domain",
                    "upstream": {
                        "domain": body.domain,
                        "conf_path": str(target),
                        "port": port,
                        "upstream_host": "127.0.0.1",
                        "nginx_reload": reload,
                    },
                }
            )
        return {
            "stage": "signing_domain",
            "status": "completed",
            "domain": body.domain,
            "app_id": app_id,
            "conf_path": str(target),
            "port": port,
            "upstream_host": "127.0.0.1",
            "new_container": new["Id"],
            "nginx_reload": reload,
            "old_stop": old_stop,
        }

    async def _retire(
        self, old: dict[str, Any] | None, principal: Principal, gate: HealthGate, *, remove: bool
    ) -> dict[str, Any] | None:
        """Stop (and maybe remove) the old container after a drain; report, never raise."""
        if old is None:
            return None
        drain = gate.drain_seconds if gate.drain_seconds is not None else self._settings.switch_drain_seconds
        await asyncio.sleep(drain)
        try:
            stopped = await self._containers.act(
                old["Id"], principal, "stop", timeout=self._settings.switch_stop_timeout
            )
            result: dict[str, Any] = {"status": stopped.status, "id": old["Id"], "drained_seconds": drain}
            if remove:
                await self._containers.remove(old["Id"], principal, force=True, volumes=False)
                result["removed"] = True
            return result
        except DockerManagerError as exc:
            return {"status": "error", "id": old["Id"], "error": exc.detail}

    # --- update-port ----------------------------------------------------------------------------------
    async def update_port(self, body: UpdatePortRequest, principal: Principal) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        if body.new_port in self._settings.forbidden_host_ports:
            raise InvalidInput(f"host port {body.new_port} is reserved on this host", field="new_port")
        folder = await asyncio.to_thread(find_task_dir, self._settings, body.task_id)
        summary = await asyncio.to_thread(read_json, folder / INFO_JSON) or {}
        ref = summary.get("container_id") or summary.get("container_name")
        if not ref:
            raise NotFound(f"build.info.json of {body.task_id} records no container", field="task_id")
        localrun = summary.get("localrun") or {}
        app_id = str(summary.get("app_id") or localrun.get("app_id") or "")
        if not app_id:
            raise InvalidInput("build.info.json records no app_id", field="task_id")
        async with self._app_locks[app_id]:
            old = await self._containers.owned(str(ref), principal)
            if not is_managed((old.get("Config") or {}).get("Labels")) and not principal.is_admin:
                raise Conflict("the recorded container is not managed by this service")
            port_key = localrun.get("internal_port_key") or next(iter(published_ports(old)), None) or "80/tcp"
            target = await self._target(conf_dir, domain=body.domain, app_id=app_id)
            name = old["Name"].lstrip("/")
            config = recreate_config(
                old, port_key=port_key, new_port=body.new_port, host_ip=self._settings.publish_host_ip
            )
            # A new container beside the old one; the old keeps serving until the switch is done.
            new_id = await self._containers.create_and_start(
                config, name=f"{name}-next-{secrets.token_hex(3)}", principal=principal
            )
            try:
                await self._probe(body.new_port, body)
                reload = await self._switch(
                    target, domain=body.domain, port=body.new_port, app_id=app_id, ident=ident_of(target)
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._docker.containers.remove(new_id, force=True)
                raise
            retired = await self._retire(old, principal, body, remove=True)
            await self._docker.containers.rename(new_id, name)
            new = await self._docker.containers.inspect(new_id)
        container = {"id": new_id, "name": name, "status": (new.get("State") or {}).get("Status")}
        await TaskFiles(folder).merge_info(
            {
                "container_id": new_id,
                "container_name": name,
                "host_port": body.new_port,
                "localrun": {"ports_requested": {port_key: body.new_port}, "container": container},
                "upstream": {
                    "domain": body.domain,
                    "conf_path": str(target),
                    "port": body.new_port,
                    "upstream_host": "127.0.0.1",
                    "nginx_reload": reload,
                },
            }
        )
        return {
            "stage": "update_port",
            "status": "completed",
            "task_id": body.task_id,
            "app_id": app_id,
            "domain": body.domain,
            "conf_path": str(target),
            "new_port": body.new_port,
            "container": container,
            "old_container": retired,
            "nginx_reload": reload,
        }
