"""A swarm app's log: every replica's lines merged (as the engine's `service logs` gives them),
each with its node, slot and stream.

A node that is down never answers: without `follow` the engine may wait for it forever (a
complaint of `service logs` users), so a log without `follow` ends after `WAIT` seconds of silence
with a last record saying so; a followed log goes on while lines come.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from docker_manager.adapters.docker import Docker, StreamId
from docker_manager.adapters.docker.streams import demux
from docker_manager.errors import DockerManagerError, NotFound
from docker_manager.services.swarm.manager import as_manager
from docker_manager.services.swarm.replicas import NodeAddress, read_nodes
from docker_manager.services.swarm.spec import service_name

WAIT = 10.0  # seconds of silence after which a log without follow ends
MAX_LINE = 16 * 1024  # a longer line is cut (memory stays flat whatever a replica prints)


@dataclass(frozen=True)
class AppLog:
    """A swarm app's log, its service and replicas looked up (a missing one is an error before
    any line is sent)."""

    docker: Docker
    service_id: str
    nodes: dict[str, NodeAddress]
    slots: dict[str, int]  # task id -> slot (grows as replicas started later log)
    unknown: set[str] = field(default_factory=set)  # task ids the engine no longer lists

    async def lines(self, *, tail: int | None, follow: bool) -> AsyncIterator[dict[str, Any]]:
        async with (
            self.docker.services.logs(self.service_id, tail=tail, follow=follow) as response,
            contextlib.aclosing(demux(response.aiter_bytes())) as frames,
        ):
            while True:
                try:
                    if follow:
                        stream, payload = await anext(frames)
                    else:
                        stream, payload = await asyncio.wait_for(anext(frames), WAIT)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    yield {"end": f"no line for {WAIT:.0f} s: a node that is down sends none"}
                    return
                for line in payload.decode("utf-8", "replace").splitlines():
                    record = _record(line, stream, self.nodes, self.slots)
                    if record["slot"] is None and record["task"] and record["task"] not in self.unknown:
                        record["slot"] = await self._slot_of(record["task"])
                    yield record

    async def _slot_of(self, task_id: str) -> int | None:
        """A replica started after the log opened: the service's tasks read again (once per
        task the log had not seen)."""
        try:
            self.slots.update(await _read_slots(self.docker, self.service_id))
        except DockerManagerError:  # (a log goes on without the slot rather than ending)
            self.unknown.add(task_id)
            return None
        if task_id not in self.slots:
            self.unknown.add(task_id)
        return self.slots.get(task_id)


async def open_app_log(docker: Docker, app_id: str) -> AppLog:
    name = service_name(app_id)
    try:
        service = await as_manager(docker, lambda: docker.services.inspect(name))
    except NotFound:
        raise NotFound(f"{app_id} has no service on the swarm", field="app_id") from None
    service_id = str(service["ID"])
    return AppLog(docker, service_id, await read_nodes(docker), await _read_slots(docker, service_id))


async def _read_slots(docker: Docker, service_id: str) -> dict[str, int]:
    """Task id -> slot, for every task of the service the engine lists now."""
    tasks = await as_manager(docker, lambda: docker.tasks.list(filters={"service": [service_id]}))
    return {str(t.get("ID")): int(t.get("Slot") or 0) for t in tasks}


def _record(
    line: str, stream: StreamId, nodes: dict[str, NodeAddress], slots: dict[str, int]
) -> dict[str, Any]:
    """`<timestamp> <details> <text>`, the details `key=value,...` (node and task ids)."""
    timestamp, _, rest = line.partition(" ")
    details, _, text = rest.partition(" ")
    fields = dict(item.split("=", 1) for item in details.split(",") if "=" in item)
    node = nodes.get(fields.get("com.docker.swarm.node.id", ""))
    task = fields.get("com.docker.swarm.task.id", "")
    return {
        "time": timestamp,
        "node": node.hostname if node else fields.get("com.docker.swarm.node.id"),
        "slot": slots.get(task),
        "task": task or None,
        "stream": "stderr" if stream == StreamId.STDERR else "stdout",
        "line": text[:MAX_LINE],
    }
