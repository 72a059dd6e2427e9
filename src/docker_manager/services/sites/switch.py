"""The steps every traffic switch shares (sign-domain, update-port, rollback).

Wait until the new upstream answers HTTP as required, point a site file at it (the nginx change is
verified and undone if nginx refuses it), and retire the old container only after a drain, so that
requests in flight finish on the old one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.adapters.netfilter import Netfilter, front_of
from docker_manager.adapters.nginx import FileChange, Nginx, same_configuration
from docker_manager.adapters.probe import HttpProbe, NoGoodAnswer
from docker_manager.adapters.site_header import (
    SiteHeader,
    SiteTls,
    TlsChange,
    Upstream,
    managed_sites,
    parse_header,
    read_header,
)
from docker_manager.auth import Principal
from docker_manager.errors import DockerManagerError, SwitchFailed, UnhealthyContainer
from docker_manager.schemas.sites import HealthGate, SiteTlsFields
from docker_manager.services.containers import ContainerService
from docker_manager.services.sites.options import SwitchOptions
from docker_manager.services.sites.upstreams import ident_of
from docker_manager.util.locks import KeyedLocks

log = logging.getLogger(__name__)

Pointed = Callable[[str, SiteTls], Awaitable[None]]


class TrafficSwitch:
    def __init__(
        self, nginx: Nginx, probe: HttpProbe, containers: ContainerService, options: SwitchOptions
    ) -> None:
        self._nginx = nginx
        self._probe = probe
        self._containers = containers
        self._options = options
        # One switch per app at a time, whichever route asks for it.
        self.app_locks = KeyedLocks()
        # Set at start when this host can move sites by the kernel (DM_SWITCH_MODE).
        self.netfilter: Netfilter | None = None
        self._pointed: list[Pointed] = []

    def on_pointed(self, listener: Pointed) -> None:
        """Call `listener(domain, tls)` each time a site is pointed somewhere (certificates)."""
        self._pointed.append(listener)

    async def start(self) -> None:
        mode = self._options.mode
        if mode != "reload":
            netfilter = Netfilter(self._options.front_network)
            if await netfilter.available():
                self.netfilter = netfilter
            elif mode == "nat":
                raise SwitchFailed("DM_SWITCH_MODE=nat, but iptables cannot be used here (root, iptables)")
        for path, header in await asyncio.to_thread(self.sites):
            if header.front is None:
                continue
            try:
                if (
                    self.netfilter is not None
                    and self.netfilter.owns(header.front)
                    and _movable(header.upstream)
                ):
                    await self.netfilter.point(header.front, header.upstream.address)
                else:  # no kernel switching any more: nginx points at the upstream itself again
                    await self.point(
                        path, domain=header.domain, upstream=header.upstream, app_id=header.app_id
                    )
            except (DockerManagerError, OSError) as exc:
                log.warning("could not restore the site for %s: %s", header.domain, exc)
        log.info("traffic switches: %s", "kernel (DNAT per site)" if self.netfilter else "nginx reloads")

    @property
    def mode(self) -> str:
        """How switches move traffic now: `nat` (the kernel), else `reload`, and what was asked."""
        return f"{'nat' if self.netfilter is not None else 'reload'} (DM_SWITCH_MODE={self._options.mode})"

    async def wait_healthy(self, upstream: Upstream, gate: HealthGate, *, interval: float = 0.2) -> int:
        """Poll the new upstream until it answers as required, or raise UnhealthyContainer."""
        expected = gate.expected_status

        def good(status: int) -> bool:
            return status == expected if expected else status < 500

        try:
            answer = await self._probe.wait(
                f"http://{upstream.address}{gate.health_path}",
                within=gate.health_timeout,
                interval=interval,
                accept=good,
            )
        except NoGoodAnswer as exc:
            raise UnhealthyContainer(
                f"{upstream.address}{gate.health_path} did not answer as required ({exc.last})"
            ) from None
        return answer.status_code

    async def point(
        self,
        target: Path,
        *,
        domain: str,
        upstream: Upstream,
        app_id: str | None,
        tls: SiteTls | TlsChange | None = None,
    ) -> dict[str, Any]:
        """Send the site's traffic to `upstream`: by the kernel when the site has a front and the
        upstream is a loopback port (no reload), else by a new site file and a verified reload
        (undone when refused). `tls`: the site's HTTPS options, or what changes of the ones it has
        (None: a switch between containers never changes them, nor the certificate served)."""

        async def apply() -> tuple[dict[str, Any], SiteTls]:
            async with self._nginx.lock:  # a new front is chosen under it: never two the same
                return await self._point_locked(
                    target, domain=domain, upstream=upstream, app_id=app_id, tls=tls
                )

        # Never cut half-way (a cancelled task): nginx would keep a configuration whose file was
        # put back. The change completes (or is undone) first, then the cancel takes effect.
        result, options = await asyncio.shield(apply())
        for listener in self._pointed:
            await listener(domain, options)
        return result

    async def remove(self, target: Path, header: SiteHeader | None) -> dict[str, Any]:
        """Delete a site file (nginx reloaded without it) and its kernel rule."""

        async def apply() -> dict[str, Any]:
            async with self._nginx.lock:
                result = await self._nginx.apply(target, None)
                if self.netfilter is not None and header is not None and self.netfilter.owns(header.front):
                    await self.netfilter.remove(header.front)  # nginx no longer sends there
                return result

        return await asyncio.shield(apply())

    async def follow(self, target: Path, header: SiteHeader, upstream: Upstream) -> bool:
        """Point a site that follows a container at where that container is now (or at a 503 while
        it is not running), unless the site was switched to another container meanwhile."""

        async def apply() -> bool:
            async with self._nginx.lock:
                current = await asyncio.to_thread(read_header, target)
                if current is None or current.upstream.container != header.upstream.container:
                    return False
                await self._point_locked(
                    target, domain=header.domain, upstream=upstream, app_id=header.app_id
                )
                return True

        return await asyncio.shield(apply())

    async def follow_service(self, target: Path, upstream: Upstream) -> bool:
        """Point a swarm app's site at where its service's replicas answer now, unless the site
        was pointed elsewhere meanwhile or already says so."""
        assert upstream.service is not None

        async def apply() -> bool:
            async with self._nginx.lock:
                current = await asyncio.to_thread(read_header, target)
                if current is None or current.upstream.service != upstream.service:
                    return False
                if (current.upstream.servers, current.upstream.down) == (upstream.servers, upstream.down):
                    return False
                await self._point_locked(
                    target,
                    domain=current.domain,
                    upstream=replace(upstream, kind=current.upstream.kind),
                    app_id=current.app_id,
                )
                return True

        return await asyncio.shield(apply())

    async def _point_locked(
        self,
        target: Path,
        *,
        domain: str,
        upstream: Upstream,
        app_id: str | None,
        tls: SiteTls | TlsChange | None = None,
    ) -> tuple[dict[str, Any], SiteTls]:
        """The switch (the caller holds nginx's lock), and the HTTPS options the site has now."""
        front = await self._front_for(target, upstream)
        current = await asyncio.to_thread(read_header, target)
        if not isinstance(tls, SiteTls):
            had = current.tls if current is not None else SiteTls()
            tls = tls.applied_to(had) if tls is not None else had
        content = await asyncio.to_thread(
            self._nginx.render,
            ident=ident_of(target),
            domain=domain,
            upstream=upstream,
            app_id=app_id,
            front=front,
            tls=tls,
        )
        if front is None or self.netfilter is None:
            nf = self.netfilter
            result = await self._nginx.apply(target, content)
            if nf is not None and current is not None and nf.owns(current.front):
                await nf.remove(current.front)  # no front now: nginx no longer sends there
            return {**result, "mechanism": "reload", "nginx_reloaded": True}, tls
        return await self._move(target, content, front, upstream), tls

    async def _front_for(self, target: Path, upstream: Upstream) -> str | None:
        """The site's front: the one it has, else the first free one; None when the kernel
        cannot move this upstream (no netfilter here, a bridge address, a stopped container)."""
        if self.netfilter is None or not _movable(upstream):
            return None
        sites = await asyncio.to_thread(self.sites)
        mine = [h.front for p, h in sites if p == target and self.netfilter.owns(h.front)]
        shared = [h.front for p, h in sites if p != target]
        if mine and mine[0] not in shared:
            return mine[0]  # (a copied file sharing another's front gets a new one)
        taken = {front for front in shared if front}
        index = 0
        network = self.netfilter.network
        while front_of(index, network) in taken:
            index += 1
        return front_of(index, network)

    async def _move(self, target: Path, content: str, front: str, upstream: Upstream) -> dict[str, Any]:
        """The kernel switch (the caller holds nginx's lock): replace the front's rule; nginx is
        reloaded only when the site file itself changes (a new site, another domain)."""
        assert self.netfilter is not None
        previous = await asyncio.to_thread(_read_text, target)
        before = parse_header(previous) if previous is not None else None
        await self.netfilter.point(front, upstream.address)
        try:
            if previous is not None and same_configuration(previous, content):
                await self._nginx.rewrite(target, content)  # the header records the new target
                # "reloaded" as the original said: the new target is live (here without a reload).
                return {
                    "status": "reloaded",
                    "tested": True,
                    "verified": True,
                    "mechanism": "nat",
                    "nginx_reloaded": False,
                }
            result = await self._nginx.apply(target, content)
        except BaseException:
            # Whatever served before serves again: the old rule, or none for a new site.
            try:
                if before is not None and before.front == front and _movable(before.upstream):
                    await self.netfilter.point(front, before.upstream.address)
                else:
                    await self.netfilter.remove(front)
            except Exception:  # the first error is the one to report
                log.exception("could not put back the rule of %s", front)
            raise
        return {**result, "mechanism": "nat", "nginx_reloaded": True}

    async def retire(
        self, old: ContainerInfo | None, principal: Principal, gate: HealthGate, *, remove: bool
    ) -> dict[str, Any] | None:
        """Stop (and maybe remove) the old container after a drain; report, never raise."""
        if old is None:
            return None
        drain = gate.drain_seconds if gate.drain_seconds is not None else self._options.drain_seconds
        await asyncio.sleep(drain)
        try:
            stopped = await self._containers.act(
                old.id, principal, "stop", timeout=self._options.stop_timeout
            )
            result: dict[str, Any] = {"status": stopped.status, "id": old.id, "drained_seconds": drain}
            if remove:
                await self._containers.remove(old.id, principal, force=True, volumes=False)
                result["removed"] = True
            return result
        except DockerManagerError as exc:
            return {"status": "error", "id": old.id, "error": exc.detail}

    def sites(self) -> list[tuple[Path, SiteHeader]]:
        """Every managed site file in the configured directories, with its header. Blocking."""
        return managed_sites(list(self._options.nginx_conf_dirs))

    def rendered_again(
        self, domains: set[str], *, certified: bool, tls: SiteTls | None = None
    ) -> list[FileChange]:
        """The site files serving `domains` as they render with (`certified`) or without their
        certificate, which the same change installs or removes; everything else they say is
        unchanged (but `tls`, when given). Blocking; the caller holds nginx's lock."""
        return [
            FileChange(
                path,
                self._nginx.render(
                    ident=ident_of(path),
                    domain=header.domain,
                    upstream=header.upstream,
                    app_id=header.app_id,
                    front=header.front,
                    tls=tls or header.tls,
                    certified=certified,
                ).encode(),
            )
            for path, header in self.sites()
            if header.domain in domains
        ]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _movable(upstream: Upstream) -> bool:
    """A loopback port the kernel can send a front to (not a bridge address, not a stopped one)."""
    return upstream.host == "127.0.0.1" and not upstream.down


def tls_change_of(body: SiteTlsFields) -> TlsChange | None:
    """A request's HTTPS options for its site, None when it gives none."""
    if body.tls is None and body.hsts_max_age is None:
        return None
    return TlsChange(mode=body.tls, hsts=body.hsts_max_age)
