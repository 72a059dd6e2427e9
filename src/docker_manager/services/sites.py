"""nginx sites and traffic switching: site create/delete, sign-domain, update-port.

An upstream is `127.0.0.1:<host port>` of a container this service manages (an admin may name any
free port), or a container's own port on its bridge address when the port is not published: such
a site follows the container to its new address when it restarts. A switch never drops requests:
the new container must answer HTTP before nginx is pointed at it, nginx reloads gracefully (old
workers finish their requests), and the old container is stopped only after a drain. If the new
container is unhealthy, or nginx refuses the change, nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import ContainerInfo, Docker
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    InvalidInput,
    NotFound,
    NotManaged,
    PathNotAllowed,
    UnhealthyContainer,
)
from docker_manager.nginx import Nginx, SiteHeader, Upstream, read_header
from docker_manager.schemas.nginx import (
    HealthGate,
    SignDomainRequest,
    SiteCreateRequest,
    SiteDeleteRequest,
    UpdatePortRequest,
)
from docker_manager.services.containers import ContainerService, check_host_port, recreate_config
from docker_manager.services.tasks import find_task_dir
from docker_manager.tasks.files import INFO_JSON, TaskFiles, read_json
from docker_manager.util.locks import KeyedLocks

log = logging.getLogger(__name__)


def ident_of(target: Path) -> str:
    """A name for the file's nginx variables and upstream, unique per file name: every character
    but a-z and 0-9 becomes `_` and its hex code (so `Web` and `web` stay apart)."""
    return re.sub(r"[^a-z0-9]", lambda m: f"_{ord(m.group()):02x}", target.stem)


def upstream_of(container: ContainerInfo, port: int | None, summary: dict[str, Any]) -> Upstream:
    """Where a site reaches `container`: a host port it publishes over TCP, else its own address.

    `port` is a host port the container publishes, or one of the container's own ports (reached on
    its bridge address, as the original reached a container by name). Without `port`: the first
    published port, else the port build.info.json recorded (`internal_port_key`), else 80.
    """
    published = [p for key, p in container.published_ports.items() if p and key.endswith("/tcp")]
    if port is not None and port in published:
        return Upstream("127.0.0.1", port)
    if port is None and published:
        return Upstream("127.0.0.1", published[0])
    if port is None:
        key = (summary.get("localrun") or {}).get("internal_port_key")
        port = int(str(key).split("/")[0]) if key else 80
    if container.host_config.get("NetworkMode") == "host":
        return Upstream("127.0.0.1", port)
    address = container.bridge_address
    if address is None:
        raise InvalidInput(
            f"the container does not publish host port {port}, and has no network address to reach "
            f"its port {port} on",
            field="port",
        )
    return Upstream(address, port, container=container.id)


class SiteService:
    def __init__(
        self, nginx: Nginx, docker: Docker, containers: ContainerService, settings: Settings
    ) -> None:
        self._nginx = nginx
        self._docker = docker
        self._containers = containers
        self._settings = settings
        self._app_locks = KeyedLocks()
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(3.0), trust_env=False, follow_redirects=False)
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Watch the engine: a site reaching a container on its address follows it across restarts."""
        self._watcher = asyncio.create_task(self._watch_addresses(), name="site-addresses")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._http.aclose()

    # --- sites that reach a container on its own address ----------------------------------------
    async def _watch_addresses(self) -> None:
        while True:
            try:
                watched = {"type": ["container"], "event": ["start", "die", "destroy"]}
                async with self._docker.system.events(watched) as events:
                    await self.refresh_addresses()  # whatever started while nobody watched
                    async for event in events:
                        await self.refresh_addresses(str(event.get("id") or ""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the engine went away, or nginx refused: try again later
                log.warning("watching container addresses for sites failed: %s", exc)
            await asyncio.sleep(5.0)

    async def refresh_addresses(self, container_id: str | None = None) -> int:
        """Rewrite the sites whose container came back with another address; how many changed."""
        changed = 0
        for path, header in await asyncio.to_thread(self._address_sites):
            pinned = header.upstream.container
            if pinned is None or (container_id and pinned != container_id):
                continue
            try:
                info: ContainerInfo | None = await self._docker.containers.info(pinned)
            except NotFound:
                info = None
            address = info.bridge_address if info is not None and info.running else None
            kind = header.upstream.kind
            if address is None:
                # Stopped or gone: its address may go to the next container that starts, so nginx
                # must not send this domain's traffic there.
                upstream = Upstream("127.0.0.1", header.port, container=pinned, down=True, kind=kind)
            else:
                upstream = Upstream(address, header.port, container=pinned, kind=kind)
            if upstream == header.upstream:
                continue
            content = await asyncio.to_thread(
                self._nginx.render,
                ident=ident_of(path),
                domain=header.domain,
                upstream=upstream,
                app_id=header.app_id,
            )
            async with self._nginx.lock:
                current = await asyncio.to_thread(read_header, path)
                if current is None or current.upstream.container != pinned:
                    continue  # switched elsewhere meanwhile: leave it
                await self._nginx.apply(path, content)
            where = "down (not running)" if upstream.down else upstream.address
            log.info("site %s follows container %s: %s", header.domain, pinned[:12], where)
            changed += 1
        return changed

    def _address_sites(self) -> list[tuple[Path, SiteHeader]]:
        found = []
        for directory in self._settings.nginx_conf_dirs:
            for path in sorted(directory.glob("*.conf")):
                header = read_header(path)
                if header is not None and header.upstream.container is not None:
                    found.append((path, header))
        return found

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

    async def _target(self, conf_dir: Path, *, domain: str, app_id: str | None, principal: Principal) -> Path:
        name = app_id or domain.replace("*", "_wildcard_")
        target = conf_dir / f"{name}.conf"
        others = await asyncio.to_thread(self._serving, domain)
        taken = [path for path, _ in others if path != target]
        if taken:
            raise Conflict(
                f"{domain} is already served by {taken[0].name}; delete that site first", field="domain"
            )
        exists = await asyncio.to_thread(target.exists)
        if exists:
            header = await asyncio.to_thread(read_header, target)
            if header is None:
                raise Conflict(f"{target.name} exists and was not written by this service", field="app_id")
            self._check_site_owner(header, principal)
        return target

    @staticmethod
    def _check_site_owner(header: SiteHeader, principal: Principal) -> None:
        """A site an admin pointed at the host (a process, a container of its own) is the admin's."""
        if header.upstream.kind == "host" and not principal.is_admin:
            raise NotManaged(
                f"the site for {header.domain} points at something only an admin manages; "
                "changing it needs an admin token",
                field="domain",
            )

    # --- upstream checks -------------------------------------------------------------------------
    async def _port_owner(self, port: int) -> dict[str, Any] | None:
        """The running container of this service (without host-level options) that publishes host
        `port` over TCP, if any. A UDP port of the same number could sit beside a host process's
        TCP listener: it says nothing about who answers on TCP."""
        for item in await self._containers.list(all=False, managed_only=True):
            tcp = [host for key, host in item.ports.items() if key.endswith("/tcp")]
            if port in tcp and self._containers.manageable(item.id):
                return {"id": item.id, "name": item.name}
        return None

    async def _upstream(self, port: int, principal: Principal) -> dict[str, Any] | None:
        """Check a site's upstream port: a managed container's, or (admin only) any free-to-use port.

        An operate token may only expose its own apps: not the API itself, a database, the engine.
        """
        check_host_port(port, self._settings, field="port")
        owner = await self._port_owner(port)
        if owner is None and not principal.is_admin:
            raise InvalidInput(
                f"no running container of this service publishes host port {port} "
                "(an admin token may point a site at any other port)",
                field="port",
            )
        return owner

    async def _probe(self, upstream: Upstream, gate: HealthGate) -> int:
        """Poll the new upstream until it answers as required, or raise UnhealthyContainer."""
        url = f"http://{upstream.address}{gate.health_path}"
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
                    f"{upstream.address}{gate.health_path} did not answer as required ({last})"
                )
            await asyncio.sleep(0.2)

    async def _switch(
        self, target: Path, *, domain: str, upstream: Upstream, app_id: str | None, ident: str
    ) -> dict[str, Any]:
        content = await asyncio.to_thread(
            self._nginx.render, ident=ident, domain=domain, upstream=upstream, app_id=app_id
        )
        async with self._nginx.lock:
            return await self._nginx.apply(target, content)

    # --- site create / delete ----------------------------------------------------------------------
    async def create_site(self, body: SiteCreateRequest, principal: Principal) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        owner = await self._upstream(body.port, principal)
        target = await self._target(conf_dir, domain=body.domain, app_id=body.app_id, principal=principal)
        reload = await self._switch(
            target,
            domain=body.domain,
            upstream=Upstream("127.0.0.1", body.port, kind="managed" if owner else "host"),
            app_id=body.app_id,
            ident=ident_of(target),
        )
        return {
            "status": "created",
            "path": str(target),
            "domain": body.domain,
            "port": body.port,
            "upstream_managed": owner is not None,
            "upstream_container": owner,
            "nginx_reload": reload,
        }

    async def delete_site(self, body: SiteDeleteRequest, principal: Principal) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        files = [
            path for path, _ in await asyncio.to_thread(self._serving, body.domain) if path.parent == conf_dir
        ]
        if not files:
            raise NotFound(f"no site of this service serves {body.domain} in {conf_dir}", field="domain")
        for path in files:
            header = await asyncio.to_thread(read_header, path)
            if header is not None:
                self._check_site_owner(header, principal)
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
        folder, summary = await self._task_summary(body.task_id, field="task_id")
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
        async with self._app_locks.hold(str(app_id)):
            new = await self._containers.owned(str(new_ref), principal)
            if not new.running:
                raise UnhealthyContainer(f"the new container {new_ref} is not running")
            upstream = upstream_of(new, body.port or summary.get("host_port"), summary)
            if not self._containers.manageable(new.id):
                upstream = replace(upstream, kind="host")  # an admin's own: admin-only from now on
            old = await self._old_container(body, principal, new)
            target = await self._target(conf_dir, domain=body.domain, app_id=str(app_id), principal=principal)
            await self._probe(upstream, body)
            reload = await self._switch(
                target, domain=body.domain, upstream=upstream, app_id=str(app_id), ident=ident_of(target)
            )
            old_stop = await self._retire(old, principal, body, remove=False)
        upstream_info = {
            "domain": body.domain,
            "conf_path": str(target),
            "port": upstream.port,
            "upstream_host": upstream.host,
            "nginx_reload": reload,
        }
        if folder is not None:
            await TaskFiles(folder).merge_info({"stage": "signing_domain", "upstream": upstream_info})
        return {
            "stage": "signing_domain",
            "status": "completed",
            "app_id": app_id,
            **upstream_info,
            "new_container": new.id,
            "upstream": upstream.address,
            "old_stop": old_stop,
        }

    async def _task_summary(self, task_id: str | None, *, field: str) -> tuple[Path | None, dict[str, Any]]:
        """A task's folder and build.info.json (404 when it has none); nothing without a task id."""
        if not task_id:
            return None, {}
        folder = await asyncio.to_thread(find_task_dir, self._settings, task_id)
        summary = await asyncio.to_thread(read_json, folder / INFO_JSON)
        if not summary:
            raise NotFound(f"no build.info.json for task {task_id}", field=field)
        return folder, summary

    async def _old_container(
        self, body: SignDomainRequest, principal: Principal, new: ContainerInfo
    ) -> ContainerInfo | None:
        """The container to retire: `old_container`, else the one `old_task_id` recorded."""
        ref, field = body.old_container, "old_container"
        if ref is None and body.old_task_id:
            _, summary = await self._task_summary(body.old_task_id, field="old_task_id")
            ref, field = summary.get("container_id") or summary.get("container_name"), "old_task_id"
            if not ref:
                raise NotFound(f"build.info.json of {body.old_task_id} records no container", field=field)
        if ref is None:
            return None
        old = await self._containers.owned(str(ref), principal)
        if old.id == new.id:
            raise InvalidInput(f"{field} names the new container", field=field)
        return old

    async def _retire(
        self, old: ContainerInfo | None, principal: Principal, gate: HealthGate, *, remove: bool
    ) -> dict[str, Any] | None:
        """Stop (and maybe remove) the old container after a drain; report, never raise."""
        if old is None:
            return None
        drain = gate.drain_seconds if gate.drain_seconds is not None else self._settings.switch_drain_seconds
        await asyncio.sleep(drain)
        try:
            stopped = await self._containers.act(
                old.id, principal, "stop", timeout=self._settings.switch_stop_timeout
            )
            result: dict[str, Any] = {"status": stopped.status, "id": old.id, "drained_seconds": drain}
            if remove:
                await self._containers.remove(old.id, principal, force=True, volumes=False)
                result["removed"] = True
            return result
        except DockerManagerError as exc:
            return {"status": "error", "id": old.id, "error": exc.detail}

    # --- update-port ----------------------------------------------------------------------------------
    async def update_port(self, body: UpdatePortRequest, principal: Principal) -> dict[str, Any]:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        check_host_port(body.new_port, self._settings, field="new_port")
        folder = await asyncio.to_thread(find_task_dir, self._settings, body.task_id)
        summary = await asyncio.to_thread(read_json, folder / INFO_JSON) or {}
        ref = summary.get("container_id") or summary.get("container_name")
        if not ref:
            raise NotFound(f"build.info.json of {body.task_id} records no container", field="task_id")
        localrun = summary.get("localrun") or {}
        app_id = str(summary.get("app_id") or localrun.get("app_id") or "")
        if not app_id:
            raise InvalidInput("build.info.json records no app_id", field="task_id")
        async with self._app_locks.hold(app_id):
            old = await self._containers.owned(str(ref), principal)
            port_key = localrun.get("internal_port_key") or next(iter(old.published_ports), None) or "80/tcp"
            if not str(port_key).endswith("/tcp"):
                raise InvalidInput(f"the recorded port {port_key} is not a TCP port", field="task_id")
            target = await self._target(conf_dir, domain=body.domain, app_id=app_id, principal=principal)
            name = old.name
            config = recreate_config(
                old, port_key=port_key, new_port=body.new_port, host_ip=self._settings.publish_host_ip
            )
            # A new container beside the old one; the old keeps serving until the switch is done.
            new_id = await self._containers.create_and_start(
                config, name=f"{name}-next-{secrets.token_hex(3)}", principal=principal
            )
            kind = "managed" if self._containers.manageable(new_id) else "host"
            upstream = Upstream("127.0.0.1", body.new_port, kind=kind)
            try:
                await self._probe(upstream, body)
                reload = await self._switch(
                    target, domain=body.domain, upstream=upstream, app_id=app_id, ident=ident_of(target)
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._docker.containers.remove(new_id, force=True)
                raise
            retired = await self._retire(old, principal, body, remove=True)
            await self._docker.containers.rename(new_id, name)
            new = await self._docker.containers.info(new_id)
        container = {"id": new_id, "name": name, "status": new.status}
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
            # The original's two keys, beside `old_container`.
            "stop": _outcome(retired, "stopped"),
            "remove": _outcome(retired, "removed"),
            "nginx_reload": reload,
        }


def _outcome(retired: dict[str, Any] | None, done: str) -> dict[str, Any] | None:
    if retired is None:
        return None
    if retired.get("status") == "error":
        return {"status": "error", "error": retired.get("error")}
    return {"status": done}
