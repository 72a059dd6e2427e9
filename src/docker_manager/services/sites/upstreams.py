"""Where a site sends its requests, and what a site file is named after."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import ContainerInfo
from docker_manager.adapters.site_header import Upstream
from docker_manager.errors import InvalidInput
from docker_manager.services.containers import ContainerService

# nginx hashes variable names in 64-byte buckets: `$dm_connection_{ident}` must stay well short
# of that, or `nginx -t` fails ("could not build variables_hash") for a long domain.
IDENT_MAX = 24


def ident_of(target: Path) -> str:
    """A name for the file's nginx variables and upstream, unique per file name: every character
    but a-z and 0-9 becomes `_` and its hex code (so `Web` and `web` stay apart); a long one is
    cut and made unique again with a hash of the whole name."""
    ident = re.sub(r"[^a-z0-9]", lambda m: f"_{ord(m.group()):02x}", target.stem)
    if len(ident) <= IDENT_MAX:
        return ident
    return f"{ident[:8]}_h{hashlib.sha256(target.stem.encode()).hexdigest()[:14]}"


def upstream_of(container: ContainerInfo, port: int | None, internal_port: int | None) -> Upstream:
    """Where a site reaches `container`: a host port it publishes over TCP, else its own address.

    `port` is a host port the container publishes, or one of the container's own ports (reached on
    its bridge address, as the original reached a container by name). Without `port`: the first
    published port, else the port build.info.json recorded (`internal_port_key`), else 80.
    """
    published = {p: key for key, p in container.published_ports.items() if p and key.endswith("/tcp")}
    if port is not None and port in published:
        return through_host_port(container, published[port])
    if port is None and published:
        return through_host_port(container, next(iter(published.values())))
    if port is None:
        port = internal_port or 80
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


def outcome(retired: dict[str, Any] | None, done: str) -> dict[str, Any] | None:
    if retired is None:
        return None
    if retired.get("status") == "error":
        return {"status": "error", "error": retired.get("error")}
    return {"status": done}


def through_host_port(container: ContainerInfo, key: str) -> Upstream:
    """The loopback host port `container` publishes its port `key` (`80/tcp`) on, followed: the site
    records the container and the key, and moves when a restart publishes it on another port."""
    port = container.published_ports.get(key)
    if not port:
        raise InvalidInput(f"the container does not publish its port {key}", field="port")
    return Upstream("127.0.0.1", port, container=container.id, published=key)


async def port_owner(containers: ContainerService, port: int) -> dict[str, Any] | None:
    """The running container of this service (without host-level options) that publishes host
    `port` over TCP, if any, with the container port (`key`). A UDP port of the same number could
    sit beside a host process's TCP listener: it says nothing about who answers on TCP."""
    for item in await containers.list(all=False, managed_only=True):
        keys = [key for key, host in item.ports.items() if key.endswith("/tcp") and host == port]
        if keys and containers.manageable(item.id):
            return {"id": item.id, "name": item.name, "key": keys[0]}
    return None
