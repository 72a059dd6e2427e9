"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2


async def wait_final(
    client: httpx2.AsyncClient, headers: dict[str, str], task_id: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll `/tasks/status/{task_id}` until the task is in a final state; its status document."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await client.get(f"/tasks/status/{task_id}", headers=headers)).json()
        if body["status"] not in ("queued", "running"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is still {body['status']} after {timeout:.0f} s")
        await asyncio.sleep(0.05)
