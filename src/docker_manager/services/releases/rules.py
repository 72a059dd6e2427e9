"""The pure rules of a rollback: which release, whether it can run, which ports, which upstream."""

from __future__ import annotations

from typing import Any

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.adapters.site_header import SiteHeader, Upstream
from docker_manager.errors import Conflict, NotFound
from docker_manager.services.releases.engine_view import EngineView
from docker_manager.services.releases.store import Release
from docker_manager.services.sites.upstreams import through_host_port, upstream_of


def choose_target(items: list[Release], number: int | None, live: Release | None) -> Release:
    """The release to run again: `number`, else the newest one before the live one."""
    if number is not None:
        target = next((r for r in items if r.number == number), None)
        if target is None:
            raise NotFound(f"the app has no release {number}", field="release")
    elif live is None:
        raise Conflict("no release of this app is live: name the release to run", field="release")
    else:
        target = next((r for r in items if r.number < live.number), None)
        if target is None:
            raise Conflict(f"release {live.number} is the first: there is nothing before it", field="release")
    if live is not None and target.number == live.number:
        raise Conflict(f"release {target.number} is already live", field="release")
    return target


def check_runnable(target: Release, engine: EngineView) -> None:
    missing = []
    if target.pruned_at is not None:
        missing.append("its record was pruned by retention")
    if target.image_id not in engine.images:
        missing.append(f"image {target.image_id} ({target.tag or 'untagged'}) is not on this host")
    if missing:
        raise Conflict(
            f"release {target.number} cannot run again: {'; '.join(missing)}",
            field="release",
            missing={"image_id": target.image_id, "tag": target.tag},
        )


def keep_host_ports(config: dict[str, Any], live: ContainerInfo) -> None:
    """Bind each container port to the host port the live container has for it."""
    host = dict(config.get("HostConfig") or {})
    bindings = dict(host.get("PortBindings") or {})
    for key, port in live.published_ports.items():
        if port and key in bindings:
            bindings[key] = [{"HostIp": bindings[key][0].get("HostIp", ""), "HostPort": str(port)}]
    host["PortBindings"] = bindings
    config["HostConfig"] = host


def upstream_for(header: SiteHeader, live: ContainerInfo | None, new: ContainerInfo) -> Upstream:
    """Where a site should send its requests in the new container: the same container port it
    reached in the live one (by its bridge address, or through the host port that published it)."""
    recorded = header.upstream
    if recorded.published and new.published_ports.get(recorded.published):
        return through_host_port(new, recorded.published)
    if recorded.container and not recorded.published:
        return upstream_of(new, None, recorded.port)
    if live is not None:
        for key, port in live.published_ports.items():
            if port == recorded.port and new.published_ports.get(key):
                return through_host_port(new, key)
    return upstream_of(new, None, None)
