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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from docker_manager.adapters.docker import Docker
from docker_manager.errors import Conflict, EngineError, NotFound, NotSwarmManager
from docker_manager.schemas.swarm import (
    AvailabilityRequest,
    JoinTokenView,
    NodeChanged,
    NodeView,
    SwarmInitRequest,
    SwarmJoinRequest,
    SwarmStatus,
)

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
            managers=_managers(info),
            nodes=await self._node_views() if manager else None,
        )

    async def join_token(self, role: str) -> JoinTokenView:
        cluster = await self._as_manager(self._docker.swarm.inspect)
        tokens = cluster.get("JoinTokens") or {}
        token = tokens.get("Manager" if role == "manager" else "Worker")
        if not token:
            raise NotFound(f"the swarm has no {role} join token")
        return JoinTokenView(role=role, token=str(token), managers=_managers(await self._local()))

    # --- joining ---------------------------------------------------------------------------------
    async def init(self, body: SwarmInitRequest) -> SwarmStatus:
        await self._require_outside()
        await self._docker.swarm.init(
            advertise_addr=body.advertise_addr,
            listen_addr=f"{_bracketed(body.advertise_addr)}:{body.listen_port}",
            address_pool=body.address_pool,
            subnet_size=body.subnet_size,
        )
        return await self.status()

    async def join(self, body: SwarmJoinRequest) -> SwarmStatus:
        await self._require_outside()
        await self._docker.swarm.join(
            remote_addrs=body.remote_addrs,
            join_token=body.join_token,
            advertise_addr=body.advertise_addr,
            listen_addr=f"{_bracketed(body.advertise_addr)}:{body.listen_port}",
        )
        return await self.status()

    # --- nodes -----------------------------------------------------------------------------------
    async def set_availability(self, node_id: str, body: AvailabilityRequest) -> NodeChanged:
        started = time.monotonic()
        before = await self._running_on(node_id)
        await self._update_node(node_id, lambda spec: {**spec, "Availability": body.availability})
        moved = 0
        if body.availability == "drain" and before:
            moved = await self._wait_drained(node_id, before, deadline=started + body.timeout)
        node = await self._view(node_id)
        return NodeChanged(node=node, moved=moved, seconds=round(time.monotonic() - started, 3))

    async def remove_node(self, node_id: str) -> NodeView:
        node = await self._view(node_id)
        if node.running_replicas:
            raise Conflict(
                f"{node.running_replicas} replica(s) run on {node.hostname}: drain it first", field="node_id"
            )
        if node.role == "manager":
            raise Conflict(f"{node.hostname} is a manager: demote it first (docker node demote)")
        if node.state != "down" and node.availability != "drain":
            raise Conflict(f"{node.hostname} is {node.state} and {node.availability}: drain it first")
        await self._as_manager(lambda: self._docker.nodes.remove(node_id, force=node.state != "down"))
        return node

    # --- internals -------------------------------------------------------------------------------
    async def _local(self) -> dict[str, Any]:
        info = await self._docker.system.info()
        swarm: dict[str, Any] = info.get("Swarm") or {}
        return swarm

    async def _require_outside(self) -> None:
        state = (await self._local()).get("LocalNodeState") or "inactive"
        if state != "inactive":
            raise Conflict(f"this engine is in a swarm already (state {state}); it must leave it first")

    async def _as_manager(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, with the engine's "not a manager" answer turned into one that names a manager."""
        try:
            return await call()
        except EngineError as exc:
            lowered = exc.detail.lower()
            if "not a swarm manager" not in lowered and "not part of a swarm" not in lowered:
                raise
            managers = _managers(await self._local())
            if managers:
                raise NotSwarmManager(
                    f"this engine is a swarm worker: ask a manager ({', '.join(managers)})"
                ) from None
            raise NotSwarmManager("this engine is not in a swarm: POST /swarm/init or /swarm/join") from None

    async def _node_views(self) -> list[NodeView]:
        nodes = await self._as_manager(self._docker.nodes.list)
        running = Counter(task.get("NodeID") for task in await self._running_tasks())
        return sorted((_node_view(node, running) for node in nodes), key=lambda n: n.hostname)

    async def _view(self, node_id: str) -> NodeView:
        node = await self._as_manager(lambda: self._docker.nodes.inspect(node_id))
        running = Counter(task.get("NodeID") for task in await self._running_tasks())
        return _node_view(node, running)

    async def _running_tasks(self, **filters: list[str]) -> list[dict[str, Any]]:
        tasks = await self._as_manager(
            lambda: self._docker.tasks.list(filters={"desired-state": ["running"], **filters})
        )
        return [task for task in tasks if (task.get("Status") or {}).get("State") == "running"]

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

    async def _wait_drained(self, node_id: str, before: list[dict[str, Any]], *, deadline: float) -> int:
        """Until no replica runs on the node and every service that had one there runs as many
        replicas as it wants again; then how many were moved."""
        services = {task.get("ServiceID") for task in before}
        while True:
            still_here = await self._running_on(node_id)
            # Counted from the tasks meant to run that do: a replica still stopping on the node
            # counts in the engine's own RunningTasks.
            running = Counter(task.get("ServiceID") for task in await self._running_tasks())
            short = [
                s
                for s in await self._docker.swarm.services()
                if s.get("ID") in services and running.get(s.get("ID"), 0) < _desired(s)
            ]
            if not still_here and not short:
                return len(before)
            if time.monotonic() > deadline:
                reason = await self._why_not_running(services)
                raise Conflict(
                    f"drain: {len(still_here)} replica(s) still on the node, {len(short)} service(s) "
                    f"short of replicas after the deadline{reason}"
                )
            await asyncio.sleep(POLL)

    async def _why_not_running(self, services: set[Any]) -> str:
        tasks = await self._as_manager(
            lambda: self._docker.tasks.list(filters={"desired-state": ["running"]})
        )
        errors = {
            str((task.get("Status") or {}).get("Err") or (task.get("Status") or {}).get("Message") or "")
            for task in tasks
            if task.get("ServiceID") in services and (task.get("Status") or {}).get("State") != "running"
        }
        errors.discard("")
        return f" ({'; '.join(sorted(errors))[:500]})" if errors else ""


def _managers(info: dict[str, Any]) -> list[str]:
    return sorted(str(m.get("Addr")) for m in info.get("RemoteManagers") or [] if m.get("Addr"))


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


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
