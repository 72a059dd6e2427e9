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
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.adapters.nginx import Nginx
from docker_manager.adapters.probe import HttpProbe
from docker_manager.adapters.site_header import SiteHeader, Upstream, read_header
from docker_manager.auth import Principal
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    InvalidInput,
    NotFound,
    NotManaged,
    PathNotAllowed,
    UnhealthyContainer,
)
from docker_manager.runner.files import TaskFiles
from docker_manager.runner.summary import Summary
from docker_manager.schemas.sites import (
    SignDomainRequest,
    SignDomainResult,
    SiteCreateRequest,
    SiteDeleted,
    SiteDeleteRequest,
    SiteResult,
    SiteView,
    UpdatePortRequest,
    UpdatePortResult,
)
from docker_manager.services.containers import ContainerService, StopNotices, check_host_port, recreate_config
from docker_manager.services.releases.service import ReleaseService
from docker_manager.services.sites.addresses import AddressFollower
from docker_manager.services.sites.moves import record_move
from docker_manager.services.sites.options import SwitchOptions
from docker_manager.services.sites.switch import TrafficSwitch, tls_change_of
from docker_manager.services.sites.upstreams import outcome, port_owner, upstream_of
from docker_manager.services.sites.views import site_views
from docker_manager.services.tasks.service import find_task_dir

log = logging.getLogger(__name__)


class SiteService:
    def __init__(
        self,
        *,
        nginx: Nginx,
        docker: Docker,
        containers: ContainerService,
        probe: HttpProbe,
        releases: ReleaseService,
        options: SwitchOptions,
        stop_notices: StopNotices,
    ) -> None:
        self._releases = releases
        self._nginx = nginx
        self._docker = docker
        self._containers = containers
        self._options = options
        self.switch = TrafficSwitch(nginx, probe, containers, options)
        self.addresses = AddressFollower(self.switch, docker, containers)
        # This service's own stops: the site answers 503 first, and is looked at again after.
        stop_notices.subscribe(before=self.addresses.before_stop, after=self.addresses.after_stop)
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Decide how switches move traffic (DM_SWITCH_MODE), put the kernel's rules back for the
        sites that have a front (after a reboot they are gone), and watch the engine: a site
        reaching a container on its address follows it across restarts."""
        await self.switch.start()
        try:
            await self.addresses.adopt_host_port_sites()
        except DockerManagerError as exc:  # the engine or nginx is down: on a later start
            log.warning("could not record the containers of earlier sites: %s", exc.detail)
        self._watcher = asyncio.create_task(self.addresses.watch(), name="site-addresses")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    # --- where files go ------------------------------------------------------------------------
    def conf_dir(self, raw: str | None) -> Path:
        """A configured conf dir (the request's must be exactly one of them, symlinks resolved)."""
        allowed = [path.resolve() for path in self._options.nginx_conf_dirs]
        if raw is None:
            return allowed[0]
        if "\x00" in raw:
            raise InvalidInput("conf_dir contains a NUL byte", field="conf_dir")
        chosen = Path(raw).resolve()
        if chosen not in allowed:
            raise PathNotAllowed(f"{raw!r} is not one of the configured nginx directories", field="conf_dir")
        return chosen

    def _serving(self, domain: str) -> list[tuple[Path, SiteHeader]]:
        """Managed site files (in every conf dir) that serve `domain`, with their headers."""
        return [(path, header) for path, header in self.switch.sites() if header.domain == domain]

    async def require_nginx(self) -> None:
        """503 now when nginx does not run (before a deploy that needs a site starts)."""
        await self._nginx.check_running()

    async def target_for(self, domain: str, *, app_id: str, principal: Principal) -> Path:
        """The site file that will serve `domain` for `app_id` in the first conf dir: 409 when a site
        of another app serves it, 403 when it is an admin's and the caller is not."""
        return await self._target(self.conf_dir(None), domain=domain, app_id=app_id, principal=principal)

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
            if header.app_id != app_id:  # (a domain-named site, and an app named like that domain)
                raise Conflict(f"{target.name} is the site of another app; delete it first", field="app_id")
            self.check_site_owner(header, principal)
        return target

    @staticmethod
    def check_site_owner(header: SiteHeader, principal: Principal) -> None:
        """A site an admin pointed at the host (a process, a container of its own) is the admin's."""
        if header.upstream.kind == "host" and not principal.is_admin:
            raise NotManaged(
                f"the site for {header.domain} points at something only an admin manages; "
                "changing it needs an admin token",
                field="domain",
            )

    # --- upstream checks -------------------------------------------------------------------------
    async def _upstream(self, port: int, principal: Principal) -> dict[str, Any] | None:
        """Check a site's upstream port: a managed container's, or (admin only) any free-to-use port.

        An operate token may only expose its own apps: not the API itself, a database, the engine.
        """
        check_host_port(port, self._options.forbidden_host_ports, field="port")
        owner = await port_owner(self._containers, port)
        if owner is None and not principal.is_admin:
            raise InvalidInput(
                f"no running container of this service publishes host port {port} "
                "(an admin token may point a site at any other port)",
                field="port",
            )
        return owner

    async def list_sites(self) -> list[SiteView]:
        return await asyncio.to_thread(lambda: site_views(self.switch.sites()))

    # --- site create / delete ----------------------------------------------------------------------
    async def create_site(self, body: SiteCreateRequest, principal: Principal) -> SiteResult:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        owner = await self._upstream(body.port, principal)
        target = await self._target(conf_dir, domain=body.domain, app_id=body.app_id, principal=principal)
        # A container's port is followed (a restart may publish it elsewhere, a stop frees it);
        # a host process an admin named is reached where it is.
        upstream = (
            # (the port key goes into the site's header; the answer names the container as before)
            Upstream("127.0.0.1", body.port, container=owner["id"], published=owner.pop("key"))
            if owner
            else Upstream("127.0.0.1", body.port, kind="host")
        )
        reload = await self.switch.point(
            target, domain=body.domain, upstream=upstream, app_id=body.app_id, tls=tls_change_of(body)
        )
        return SiteResult.model_validate(
            {
                "status": "created",
                "path": str(target),
                "domain": body.domain,
                "port": body.port,
                "upstream_managed": owner is not None,
                "upstream_container": owner,
                "nginx_reload": reload,
            }
        )

    async def delete_site(self, body: SiteDeleteRequest, principal: Principal) -> SiteDeleted:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        sites = [
            site for site in await asyncio.to_thread(self._serving, body.domain) if site[0].parent == conf_dir
        ]
        if not sites:
            raise NotFound(f"no site of this service serves {body.domain} in {conf_dir}", field="domain")
        for _, header in sites:
            self.check_site_owner(header, principal)
        files = [path for path, _ in sites]
        reloads = [await self.switch.remove(path, header) for path, header in sites]
        return SiteDeleted.model_validate(
            {
                "status": "deleted",
                "paths": [str(p) for p in files],
                "domain": body.domain,
                "nginx_reload": reloads[-1],
            }
        )

    # --- sign-domain ---------------------------------------------------------------------------------
    async def sign_domain(self, body: SignDomainRequest, principal: Principal) -> SignDomainResult:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        folder, summary = await self._task_summary(body.task_id, field="task_id")
        app_id = body.app_id or summary.app
        if not app_id:
            raise InvalidInput(
                "app_id is needed (give it, or a task_id whose build.info.json has it)", field="app_id"
            )
        new_ref = body.new_container or summary.container_name or summary.container_id
        if not new_ref:
            raise InvalidInput(
                "new_container is needed (give it, or a task_id that ran one)", field="new_container"
            )
        with metrics.outcome(metrics.SWITCHES, kind="sign_domain"):
            async with self.switch.app_locks.hold(str(app_id)):
                new = await self._containers.owned(str(new_ref), principal)
                if not new.running:
                    raise UnhealthyContainer(f"the new container {new_ref} is not running")
                upstream = upstream_of(new, body.port or summary.host_port, summary.internal_port)
                if not self._containers.manageable(new.id):
                    upstream = replace(upstream, kind="host")  # an admin's own: admin-only from now on
                old = await self._old_container(body, principal, new)
                target = await self._target(
                    conf_dir, domain=body.domain, app_id=str(app_id), principal=principal
                )
                await self.switch.wait_healthy(upstream, body)
                reload = await self.switch.point(
                    target, domain=body.domain, upstream=upstream, app_id=str(app_id), tls=tls_change_of(body)
                )
                old_stop = await self.switch.retire(old, principal, body, remove=False)
        upstream_info = {
            "domain": body.domain,
            "conf_path": str(target),
            "port": upstream.port,
            "upstream_host": upstream.host,
            "nginx_reload": reload,
        }
        if folder is not None:
            await TaskFiles(folder).merge_info({"stage": "signing_domain", "upstream": upstream_info})
        return SignDomainResult.model_validate(
            {
                "stage": "signing_domain",
                "status": "completed",
                "app_id": app_id,
                **upstream_info,
                "new_container": new.id,
                "upstream": upstream.address,
                "old_stop": old_stop,
            }
        )

    async def _task_summary(self, task_id: str | None, *, field: str) -> tuple[Path | None, Summary]:
        """A task's folder and build.info.json (404 when it has none); nothing without a task id."""
        if not task_id:
            return None, Summary()
        folder = await asyncio.to_thread(find_task_dir, self._options.roots, task_id)
        summary = await asyncio.to_thread(Summary.read, folder)
        if summary is None:
            raise NotFound(f"no build.info.json for task {task_id}", field=field)
        return folder, summary

    async def _old_container(
        self, body: SignDomainRequest, principal: Principal, new: ContainerInfo
    ) -> ContainerInfo | None:
        """The container to retire: `old_container`, else the one `old_task_id` recorded."""
        ref, field = body.old_container, "old_container"
        if ref is None and body.old_task_id:
            _, summary = await self._task_summary(body.old_task_id, field="old_task_id")
            ref, field = summary.container, "old_task_id"
            if not ref:
                raise NotFound(f"build.info.json of {body.old_task_id} records no container", field=field)
        if ref is None:
            return None
        old = await self._containers.owned(str(ref), principal)
        if old.id == new.id:
            raise InvalidInput(f"{field} names the new container", field=field)
        return old

    # --- update-port ----------------------------------------------------------------------------------
    async def update_port(self, body: UpdatePortRequest, principal: Principal) -> UpdatePortResult:
        conf_dir = self.conf_dir(body.conf_dir)
        await self._nginx.check_running()
        check_host_port(body.new_port, self._options.forbidden_host_ports, field="new_port")
        folder, summary = await self._task_summary(body.task_id, field="task_id")
        if folder is None or not summary.container:
            raise NotFound(f"build.info.json of {body.task_id} records no container", field="task_id")
        app_id = summary.app
        if not app_id:
            raise InvalidInput("build.info.json records no app_id", field="task_id")
        with metrics.outcome(metrics.SWITCHES, kind="update_port"):
            async with self.switch.app_locks.hold(app_id):
                old = await self._containers.owned(summary.container, principal)
                port_key = summary.internal_port_key or next(iter(old.published_ports), None) or "80/tcp"
                if not port_key.endswith("/tcp"):
                    raise InvalidInput(f"the recorded port {port_key} is not a TCP port", field="task_id")
                target = await self._target(conf_dir, domain=body.domain, app_id=app_id, principal=principal)
                new_id, reload = await self._switch_to_recreated(
                    old, port_key, target, body, app_id, principal
                )
                retired = await self.switch.retire(old, principal, body, remove=True)
                await self._docker.containers.rename(new_id, old.name)
                new = await self._docker.containers.info(new_id)
                release = await self._releases.record_deploy(
                    new_id,
                    app_id=app_id,
                    source="update_port",
                    principal=principal,
                    task_id=body.task_id,
                    health={
                        "status": "healthy",
                        "url": f"http://127.0.0.1:{body.new_port}{body.health_path}",
                    },
                )
        container = {"id": new_id, "name": old.name, "status": new.status}
        await record_move(folder, container, port_key, body, target, reload)
        return UpdatePortResult.model_validate(
            {
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
                "stop": outcome(retired, "stopped"),
                "remove": outcome(retired, "removed"),
                "nginx_reload": reload,
                "release": release.number if release else None,
            }
        )

    async def _switch_to_recreated(
        self,
        old: ContainerInfo,
        port_key: str,
        target: Path,
        body: UpdatePortRequest,
        app_id: str,
        principal: Principal,
    ) -> tuple[str, dict[str, Any]]:
        """A copy of `old` on the new port, beside it (the old keeps serving), healthy, switched to.
        On any failure the copy is removed and nothing else has changed."""
        config = recreate_config(
            old, port_key=port_key, new_port=body.new_port, host_ip=self._options.publish_host_ip
        )
        new_id = await self._containers.create_and_start(
            config, name=f"{old.name}-next-{secrets.token_hex(3)}", principal=principal, recreated=True
        )
        kind = "managed" if self._containers.manageable(new_id) else "host"
        upstream = Upstream("127.0.0.1", body.new_port, container=new_id, published=port_key, kind=kind)
        try:
            await self.switch.wait_healthy(upstream, body)
            reload = await self.switch.point(target, domain=body.domain, upstream=upstream, app_id=app_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._docker.containers.remove(new_id, force=True)
            raise
        return new_id, reload
