"""Asking the swarm's manager: the engine's answers when this one is not (a 503 that says neither
why nor who) turned into one that says which it is and names a manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from docker_manager.adapters.docker import Docker
from docker_manager.errors import Conflict, EngineError, NotSwarmManager

T = TypeVar("T")


async def as_manager(docker: Docker, call: Callable[[], Awaitable[T]]) -> T:
    """`call`, its "not a manager" and "locked" answers said plainly."""
    try:
        return await call()
    except EngineError as exc:
        lowered = exc.detail.lower()
        if "locked" in lowered:
            raise Conflict("the swarm is locked: unlock it (docker swarm unlock)") from None
        if "not a swarm manager" not in lowered and "not part of a swarm" not in lowered:
            raise
        info = await local_swarm(docker)
        if (info.get("LocalNodeState") or "inactive") != "active":
            raise NotSwarmManager("this engine is not in a swarm: POST /swarm/init or /swarm/join") from None
        own = str(info.get("NodeAddr") or "")
        managers = [m for m in managers_of(info) if m.rpartition(":")[0] != own]
        if info.get("ControlAvailable") or not managers:
            raise NotSwarmManager(
                "this manager cannot act now (no quorum of managers, or it is being prepared)"
            ) from None
        raise NotSwarmManager(
            f"this engine is a swarm worker: ask a manager ({', '.join(managers)})"
        ) from None


async def local_swarm(docker: Docker) -> dict[str, Any]:
    """What this engine says of its own swarm membership (`/info`'s `Swarm`)."""
    info = await docker.system.info()
    swarm: dict[str, Any] = info.get("Swarm") or {}
    return swarm


def managers_of(info: dict[str, Any]) -> list[str]:
    return sorted(str(m.get("Addr")) for m in info.get("RemoteManagers") or [] if m.get("Addr"))
