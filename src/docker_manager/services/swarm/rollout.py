"""A swarm service written and followed to a final state.

Swarm's own rollout (start-first, one replica at a time, rolled back by the engine on a failure)
does the work; this module writes the spec (the whole spec at the version read, read again on
"update out of sequence") and watches `UpdateStatus` and the tasks until the rollout completed,
was rolled back, or passed its deadline (a start-first rollout that cannot place its new replica
waits forever otherwise: then it is rolled back here). Every failure says the engine's reasons.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.errors import DockerManagerError, EngineError, RolloutFailed
from docker_manager.labels import TASK_ID
from docker_manager.services.swarm.manager import as_manager

POLL = 0.1  # seconds between looks at a rollout (two engine reads each)
UPDATE_RETRIES = 5
ROLLBACK_WAIT = 60.0  # seconds a rollback asked for at the deadline is waited for
FAILED_TASKS_LIMIT = 3  # a first deploy whose replicas failed this often ends (nothing to go back to)
_FAILED = ("failed", "rejected", "orphaned")

Progress = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Written:
    service_id: str
    created: bool
    started_before: str | None  # the last rollout's start before this write (None: none yet)


async def write_spec(
    docker: Docker, name: str, spec: dict[str, Any], *, auth: str | None, change_spec: bool = True
) -> Written:
    """Create the service, or replace its spec (`change_spec` False: only its replica count)."""
    for attempt in range(UPDATE_RETRIES):
        try:
            current = await as_manager(docker, lambda: docker.services.inspect(name))
        except DockerManagerError as exc:
            if exc.code != "not_found":
                raise
            service_id = await as_manager(docker, lambda: docker.services.create(spec, auth=auth))
            return Written(service_id, created=True, started_before=None)
        version = int((current.get("Version") or {}).get("Index") or 0)
        wanted = spec if change_spec else {**current["Spec"], "Mode": spec["Mode"]}
        started = (current.get("UpdateStatus") or {}).get("StartedAt")
        try:
            await docker.services.update(str(current["ID"]), version=version, spec=wanted, auth=auth)
            return Written(str(current["ID"]), created=False, started_before=started)
        except EngineError as exc:
            if "out of sequence" not in exc.detail or attempt == UPDATE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def converge(
    docker: Docker,
    written: Written,
    *,
    task_id: str | None,
    replicas: int,
    timeout: float,
    progress: Progress,
) -> None:
    """Until the service runs `replicas` replicas of task `task_id`'s spec (None: any spec), its
    rollout (if one started) completed. Raises RolloutFailed when the engine rolled it back or
    the deadline passed (then the rollout is rolled back here, a first deploy's replicas left
    failing as they are: the caller removes the service)."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        service = await as_manager(docker, lambda: docker.services.inspect(written.service_id))
        update = service.get("UpdateStatus") or {}
        fresh = bool(update) and update.get("StartedAt") != written.started_before
        state = str(update.get("State") or "") if fresh else ""
        tasks = await _tasks(docker, written.service_id)
        if state and state != said:
            said = state
            await progress(f"rollout {state}: {update.get('Message') or ''}".strip())
        if state in ("rollback_completed", "rollback_paused", "paused"):
            raise RolloutFailed(_failure(f"the engine rolled the release back ({state})", update, tasks))
        if state == "rollback_started":
            pass  # (waited for: the previous release serves again before the task ends)
        elif state in ("", "completed") and _running(tasks, task_id) >= replicas:
            return
        elif written.created and _failed(tasks, task_id) >= FAILED_TASKS_LIMIT:
            raise RolloutFailed(_failure("the replicas keep failing", update, tasks))
        if time.monotonic() > deadline:
            ended = await _give_up(docker, written, state, progress)
            summary = f"not converged after {round(timeout)} s" + (f"; {ended}" if ended else "")
            raise RolloutFailed(_failure(summary, update, tasks))
        await asyncio.sleep(POLL)


async def _give_up(docker: Docker, written: Written, state: str, progress: Progress) -> str:
    """A rollout past its deadline: back to the previous spec (the engine's own rollback, unless
    the engine started one), and that rollback waited for, up to ROLLBACK_WAIT, so that the task
    ends once the previous release serves again. Says how the rollback ended ("": none, a first
    deploy has nothing to go back to)."""
    if written.created:
        return ""
    if not state.startswith("rollback"):
        service = await as_manager(docker, lambda: docker.services.inspect(written.service_id))
        version = int((service.get("Version") or {}).get("Index") or 0)
        try:
            await docker.services.update(
                written.service_id, version=version, spec=service["Spec"], auth=None, rollback=True
            )
        except DockerManagerError:
            return ""  # (no previous spec: nothing to go back to)
        await progress("rollout past its deadline: rolling back to the previous release")
    deadline = time.monotonic() + ROLLBACK_WAIT
    while time.monotonic() < deadline:
        try:
            service = await as_manager(docker, lambda: docker.services.inspect(written.service_id))
        except DockerManagerError as exc:  # (the deadline's message stays the task's error)
            return f"the rollback could not be followed: {exc.detail}"
        ended = str((service.get("UpdateStatus") or {}).get("State") or "")
        if ended in ("rollback_completed", "rollback_paused"):
            return f"rolled back ({ended})"
        await asyncio.sleep(POLL * 5)
    return f"the rollback was still running after {round(ROLLBACK_WAIT)} s"


async def _tasks(docker: Docker, service_id: str) -> list[dict[str, Any]]:
    return await as_manager(docker, lambda: docker.tasks.list(filters={"service": [service_id]}))


def _of(task: dict[str, Any], task_id: str | None) -> bool:
    labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
    return task_id is None or labels.get(TASK_ID) == task_id


def _running(tasks: list[dict[str, Any]], task_id: str | None) -> int:
    return sum(
        1
        for t in tasks
        if _of(t, task_id)
        and t.get("DesiredState") == "running"
        and (t.get("Status") or {}).get("State") == "running"
    )


def _failed(tasks: list[dict[str, Any]], task_id: str | None) -> int:
    return sum(1 for t in tasks if _of(t, task_id) and (t.get("Status") or {}).get("State") in _FAILED)


def _failure(summary: str, update: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """The summary, the engine's rollout message and the replicas' own errors (newest first)."""
    reasons: list[str] = []
    if update.get("Message"):
        reasons.append(str(update["Message"]))
    for task in sorted(tasks, key=lambda t: str(t.get("UpdatedAt") or ""), reverse=True):
        status = task.get("Status") or {}
        error = status.get("Err") or (status.get("Message") if status.get("State") == "pending" else None)
        if error and str(error) not in reasons:
            reasons.append(str(error))
    return f"{summary}: {'; '.join(reasons)[:800]}" if reasons else summary
