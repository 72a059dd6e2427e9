"""The swarm as this host's engine sees it, and the admin's operations on it: make one, join one,
drain, pause or remove a node.

Cluster state is a manager's: on a worker (or outside a swarm) those operations answer
`not_a_swarm_manager` naming a manager. A drain answers when the node's replicas run elsewhere
(or its deadline passes, with the engine's reason), not when the flag is set.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from docker_manager.adapters.docker import Docker
from docker_manager.errors import Conflict, EngineError, NotFound
from docker_manager.schemas.swarm import (
    AvailabilityRequest,
    JoinTokenView,
    NodeChanged,
    NodeView,
    SwarmInitRequest,
    SwarmJoinRequest,
    SwarmStatus,
)
from docker_manager.services.swarm.manager import as_manager, local_swarm, managers_of

T = TypeVar("T")
POLL = 0.5  # seconds between looks at a drain's progress
UPDATE_RETRIES = 3  # a node update read at a stale version is read again (HTTP 500 out of sequence)


class SwarmService:
    def __init__(self, docker: Docker) -> None:
        self._docker = docker

    # --- reads -----------------------------------------------------------------------------------
    async def status(self) -> SwarmStatus:
        info = await self._local()
        state = str(info.get("LocalNodeState") or "inactive")
        manager = bool(info.get("ControlAvailable"))
        role = "manager" if manager else ("worker" if state == "active" else None)
        return SwarmStatus(
            state=state,
            node_id=info.get("NodeID") or None,
            role=role,
            managers=managers_of(info),
            nodes=await self._node_views() if manager else None,
        )

    async def join_token(self, role: str) -> JoinTokenView:
        cluster = await self._as_manager(self._docker.swarm.inspect)
        tokens = cluster.get("JoinTokens") or {}
        token = tokens.get("Manager" if role == "manager" else "Worker")
        if not token:
            raise NotFound(f"the swarm has no {role} join token")
        return JoinTokenView(role=role, token=str(token), managers=managers_of(await self._local()))

    # --- joining ---------------------------------------------------------------------------------
    async def init(self, body: SwarmInitRequest) -> SwarmStatus:
        await self._require_outside()
        async with _joining():
            await self._docker.swarm.init(
                advertise_addr=body.advertise_addr,
                listen_addr=f"{_bracketed(body.listen_addr)}:{body.listen_port}",
                address_pool=body.address_pool,
                subnet_size=body.subnet_size,
            )
        return await self.status()

    async def join(self, body: SwarmJoinRequest) -> SwarmStatus:
        await self._require_outside()
        async with _joining():
            await self._docker.swarm.join(
                remote_addrs=body.remote_addrs,
                join_token=body.join_token,
                advertise_addr=body.advertise_addr,
                listen_addr=f"{_bracketed(body.listen_addr)}:{body.listen_port}",
            )
        return await self.status()

    # --- nodes -----------------------------------------------------------------------------------
    async def set_availability(self, node_id: str, body: AvailabilityRequest) -> NodeChanged:
        started = time.monotonic()
        wanted: dict[str, int] = {}
        moving = 0
        if body.availability == "drain":  # (what runs before the drain is what must run after)
            wanted, moving = await self._to_move(node_id)
        await self._update_node(node_id, lambda spec: {**spec, "Availability": body.availability})
        if body.availability == "drain":
            await self._wait_drained(node_id, wanted, deadline=started + body.timeout)
        node = await self._view(node_id)
        return NodeChanged(node=node, moved=moving, seconds=round(time.monotonic() - started, 3))

    async def remove_node(self, node_id: str) -> NodeView:
        node = await self._view(node_id)
        still = [t for t in await self._tasks(node=[node_id]) if _state(t) in ("running", "starting")]
        if node.running_replicas or still:
            raise Conflict(
                f"{len(still) or node.running_replicas} replica(s) run on {node.hostname}: drain it first",
                field="node_id",
            )
        if node.role == "manager":
            raise Conflict(f"{node.hostname} is a manager: demote it first (docker node demote)")
        if node.state != "down" and node.availability != "drain":
            raise Conflict(f"{node.hostname} is {node.state} and {node.availability}: drain it first")
        await self._as_manager(lambda: self._docker.nodes.remove(node_id, force=node.state != "down"))
        return node

    # --- internals -------------------------------------------------------------------------------
    async def _local(self) -> dict[str, Any]:
        return await local_swarm(self._docker)

    async def _require_outside(self) -> None:
        state = (await self._local()).get("LocalNodeState") or "inactive"
        if state != "inactive":
            raise Conflict(f"this engine is in a swarm already (state {state}); it must leave it first")

    async def _as_manager(self, call: Callable[[], Awaitable[T]]) -> T:
        return await as_manager(self._docker, call)

    async def _node_views(self) -> list[NodeView]:
        nodes = await self._as_manager(self._docker.nodes.list)
        running = Counter(task.get("NodeID") for task in await self._running_tasks())
        return sorted((_node_view(node, running) for node in nodes), key=lambda n: n.hostname)

    async def _view(self, node_id: str) -> NodeView:
        node = await self._as_manager(lambda: self._docker.nodes.inspect(node_id))
        running = Counter(task.get("NodeID") for task in await self._running_tasks())
        return _node_view(node, running)

    async def _tasks(self, **filters: list[str]) -> list[dict[str, Any]]:
        return await self._as_manager(lambda: self._docker.tasks.list(filters=filters))

    async def _running_tasks(self, **filters: list[str]) -> list[dict[str, Any]]:
        tasks = await self._tasks(**{"desired-state": ["running"], **filters})
        return [task for task in tasks if _state(task) == "running"]

    async def _running_on(self, node_id: str) -> list[dict[str, Any]]:
        return await self._running_tasks(node=[node_id])

    async def _update_node(self, node_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        for attempt in range(UPDATE_RETRIES):
            node = await self._as_manager(lambda: self._docker.nodes.inspect(node_id))
            version = int((node.get("Version") or {}).get("Index") or 0)
            try:
                await self._docker.nodes.update(node_id, version=version, spec=change(node.get("Spec") or {}))
                return
            except EngineError as exc:
                if "out of sequence" not in exc.detail or attempt == UPDATE_RETRIES - 1:
                    raise

    async def _to_move(self, node_id: str) -> tuple[dict[str, int], int]:
        """Before a drain: for each replicated service with a replica on the node, how many of its
        replicas run now (at most as many as it wants: one already short is not waited for), and
        how many replicas the node holds. A global service's task is stopped with the node."""
        here = await self._running_on(node_id)
        services = await self._as_manager(self._docker.services.list)
        replicated = {str(s.get("ID")): s for s in services if "Replicated" in _mode(s)}
        ids = sorted({str(t.get("ServiceID")) for t in here} & set(replicated))
        if not ids:
            return {}, 0
        running = Counter(str(t.get("ServiceID")) for t in await self._running_tasks(service=ids))
        moving = sum(1 for t in here if str(t.get("ServiceID")) in replicated)
        return {sid: min(_desired(replicated[sid]), running[sid]) for sid in ids}, moving

    async def _wait_drained(self, node_id: str, wanted: dict[str, int], *, deadline: float) -> None:
        """Until no replica runs on the node and each service in `wanted` runs as many again,
        counted from the tasks meant to run that do (one still stopping on the node counts in
        the engine's own RunningTasks)."""
        while True:
            still_here = await self._running_on(node_id)
            now = Counter(str(t.get("ServiceID")) for t in await self._running_tasks(service=sorted(wanted)))
            short = [sid for sid, count in wanted.items() if now[sid] < count] if wanted else []
            if not still_here and not short:
                return
            if time.monotonic() > deadline:
                reason = await self._why_not_running(set(wanted))
                raise Conflict(
                    f"the node is drained, but {len(still_here)} replica(s) still run there and "
                    f"{len(short)} service(s) are short of replicas after the deadline{reason}"
                )
            await asyncio.sleep(POLL)

    async def _why_not_running(self, services: set[Any]) -> str:
        tasks = await self._tasks(**{"desired-state": ["running"], "service": sorted(services)})
        errors = {
            str((task.get("Status") or {}).get("Err") or (task.get("Status") or {}).get("Message") or "")
            for task in tasks
            if task.get("ServiceID") in services and (task.get("Status") or {}).get("State") != "running"
        }
        errors.discard("")
        return f" ({'; '.join(sorted(errors))[:500]})" if errors else ""


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _mode(service: dict[str, Any]) -> dict[str, Any]:
    mode: dict[str, Any] = (service.get("Spec") or {}).get("Mode") or {}
    return mode


def _state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State") or "")


def _desired(service: dict[str, Any]) -> int:
    return int((service.get("ServiceStatus") or {}).get("DesiredTasks") or 0)


def _node_view(node: dict[str, Any], running: Counter[Any]) -> NodeView:
    spec, status = node.get("Spec") or {}, node.get("Status") or {}
    manager = node.get("ManagerStatus") or {}
    description = node.get("Description") or {}
    return NodeView(
        id=str(node.get("ID")),
        hostname=str(description.get("Hostname") or ""),
        role=str(spec.get("Role") or "worker"),
        leader=bool(manager.get("Leader")),
        availability=str(spec.get("Availability") or "active"),
        state=str(status.get("State") or "unknown"),
        addr=str(status.get("Addr") or ""),
        engine_version=(description.get("Engine") or {}).get("EngineVersion"),
        running_replicas=running.get(node.get("ID"), 0),
    )


@asynccontextmanager
async def _joining() -> AsyncIterator[None]:
    """The engine's answers to init and join that are not the caller's mistake, said plainly."""
    try:
        yield
    except EngineError as exc:
        lowered = exc.detail.lower()
        if "already part of a swarm" in lowered:
            raise Conflict("this engine is in a swarm already; it must leave it first") from None
        if "continue in the background" in lowered:
            raise Conflict("the join goes on in the background: look at GET /swarm in a moment") from None
        raise
