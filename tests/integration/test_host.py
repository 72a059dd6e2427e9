"""Host routes and behaviour when the engine is unreachable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from docker_manager.config import Settings
from tests.harness import app_client

pytestmark = pytest.mark.docker


async def test_info_reports_host_and_engine(client: httpx2.AsyncClient, read: dict[str, str]) -> None:
    body = (await client.get("/system/info", headers=read)).json()
    assert body["cpu_count"] == os.cpu_count()
    assert body["docker"]["reachable"] is True
    assert body["docker"]["api_version"] in {"1.41", "1.42", "1.43", "1.44", "1.45", "1.46", "1.47"}


async def test_usage_reports_cpu_memory_disk(client: httpx2.AsyncClient, read: dict[str, str]) -> None:
    body = (await client.get("/system/usage", headers=read)).json()
    assert 0 < body["memory"]["percent"] < 100
    assert body["disk"][0]["total"] > 0
    assert len(body["load_average"]) == 3


async def test_top_answers_from_the_sampler_and_hides_cmdlines_from_non_admins(
    client: httpx2.AsyncClient, read: dict[str, str], admin: dict[str, str]
) -> None:
    started = time.monotonic()
    response = await client.get("/system/top", params={"sort": "memory", "limit": 5}, headers=read)
    assert time.monotonic() - started < 1.0  # not a benchmark: the original took 8.7 s
    body = response.json()
    assert len(body["processes"]) == 5
    memory = [p["memory_percent"] for p in body["processes"]]
    assert memory == sorted(memory, reverse=True)
    assert all(p["cmdline"] == [] for p in body["processes"])
    as_admin = (await client.get("/system/top", params={"limit": 50}, headers=admin)).json()
    assert any(len(p["cmdline"]) > 1 for p in as_admin["processes"])  # a list, as in the original
    # The sampler really measures CPU: a busy process shows up within a couple of ticks.
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        found = None
        for _ in range(40):
            await asyncio.sleep(0.25)
            top = (await client.get("/system/top", params={"limit": 5}, headers=admin)).json()
            found = next((p for p in top["processes"] if p["pid"] == busy.pid), None)
            if found and found["cpu_percent"] > 50:
                break
        assert found is not None and found["cpu_percent"] > 50
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("params", [{"sort": "../x"}, {"limit": 0}, {"limit": 100000}, {"limit": "x"}])
async def test_top_parameters_are_validated(
    client: httpx2.AsyncClient, read: dict[str, str], params: dict[str, object]
) -> None:
    response = await client.get("/system/top", params=params, headers=read)
    assert response.status_code == 422


@pytest.fixture
async def engine_down_client(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path,
        admin_token="down-admin",
        docker_host=f"unix://{tmp_path}/no-engine.sock",  # type: ignore[arg-type]
    )
    async with app_client(settings) as (_services, client):
        yield client


async def test_unreachable_engine_is_503_never_500(engine_down_client: httpx2.AsyncClient) -> None:
    health = await engine_down_client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {"status": "degraded", "docker": {"reachable": False}}
    headers = {"Authorization": "Bearer down-admin"}
    for method, path, body in (
        ("GET", "/docker/containers", None),
        ("GET", "/docker/images", None),
        ("POST", "/docker/stop", {"id_or_name": "web"}),
        ("POST", "/docker/run", {"image": "bb"}),
    ):
        response = await engine_down_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["code"] == "docker_unavailable"
    info = (await engine_down_client.get("/system/info", headers=headers)).json()
    assert info["docker"]["reachable"] is False
