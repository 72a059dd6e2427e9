"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastapi import FastAPI

from docker_manager.app import create_app
from docker_manager.config import Settings
from docker_manager.runtime import Runtime


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


@asynccontextmanager
async def started_app(
    settings: Settings, *, timeout: float = 120
) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    """The app with these settings, its lifespan started, and a client speaking to it in-process.

    The one way tests start an app (httpx's ASGITransport buffers whole responses: live streams
    and disconnects need the real server of the `live` fixture instead).
    """
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", timeout=timeout
        ) as client:
            yield app, client


@asynccontextmanager
async def app_client(
    settings: Settings, *, timeout: float = 120
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient]]:
    """A separate app with its own settings, started and stopped around the block."""
    async with started_app(settings, timeout=timeout) as (app, client):
        yield app.state.runtime, client
