"""Following a task to its end: events in order, each once, across dropped connections."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from docker_manager.client.errors import ClientError, StreamBroken

if TYPE_CHECKING:
    from docker_manager.client.api import Api

RETRY_PAUSE = 0.5
MAX_RETRIES = 20


def stream_rotation() -> float | None:
    """Reconnect after this many seconds even when nothing broke (DM_CLIENT_STREAM_MAX_SECONDS), as
    proxies with idle limits force clients to; unset: one connection for as long as it lasts."""
    raw = os.environ.get("DM_CLIENT_STREAM_MAX_SECONDS")
    return float(raw) if raw else None


def task_events(api: Api, task_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
    """Every event after `after`, ending with the final one; a dropped stream resumes after the
    last sequence number seen, so nothing is repeated or lost."""
    last, failures = after, 0
    rotate = stream_rotation()
    while True:
        opened, rotated = time.monotonic(), False
        try:
            for event in api.events(task_id, after=last):
                if event.get("connected"):
                    failures = 0  # the server answered: earlier drops are forgiven
                    continue
                seq = int(event.get("seq") or 0)
                if seq and seq <= last:
                    continue
                last, failures = seq or last, 0
                yield event
                if event.get("final"):
                    return
                if rotate is not None and time.monotonic() - opened > rotate:
                    rotated = True
                    break  # reconnect on purpose
        except StreamBroken as exc:
            failures += 1
            if failures > MAX_RETRIES:
                raise ClientError(f"lost the event stream of {task_id}: {exc}", exit_code=3) from exc
            time.sleep(RETRY_PAUSE)
            continue
        if not rotated:
            # The stream ended without the final event: the server closed it (a restart). Resume.
            failures += 1
            if failures > MAX_RETRIES:
                raise ClientError(f"the event stream of {task_id} keeps ending early", exit_code=3)
            time.sleep(RETRY_PAUSE)


def follow(api: Api, task_id: str, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Follow to the end, then the task's final status document."""
    for event in task_events(api, task_id):
        on_event(event)
    status: dict[str, Any] = api.get(f"/tasks/status/{task_id}")
    return status
