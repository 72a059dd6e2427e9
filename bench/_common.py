"""Helpers shared by the benchmarks: a real service process, the busybox base image, timing."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' harness, which starts the service for the benchmarks too
from tests.harness import ServiceProcess, service_process  # noqa: E402

BASE_IMAGE = "dm-test-bb:latest"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, env=env)


def ensure_base_image() -> str:
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(shutil.which("busybox") or "/bin/busybox", Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["sh"]\n'
        )
        docker("build", "-q", "-t", BASE_IMAGE, context)
    return BASE_IMAGE


Service = ServiceProcess


@contextmanager
def service(**env: str) -> Iterator[ServiceProcess]:
    """The service as a process, started the one way the tests start it (`tests/harness.py`):
    `DM_*` variables of this shell stripped, no config.json. A temporary data folder unless
    `DM_DATA_DIR` is given."""
    data_dir = env.pop("DM_DATA_DIR", None) or tempfile.mkdtemp(prefix="dm-bench-")
    try:
        with service_process(Path(data_dir), **env) as running:
            yield running
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def median_seconds(action: Callable[[], object], *, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(label: str, ours: float, baseline: float, unit: str = "ms") -> None:
    scale = 1000 if unit == "ms" else 1
    print(
        f"{label:<44} {ours * scale:>10.2f} {unit}  baseline {baseline * scale:>10.2f} {unit}  "
        f"ratio {ours / baseline:>5.2f}x"
    )


async def request_rate(
    url: str, headers: dict[str, str], *, seconds: float, concurrency: int
) -> tuple[float, float]:
    """GET `url` from `concurrency` loops for `seconds`: (requests per second, p99 latency in s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx2.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            (await client.get(url, headers=headers)).raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx2.Limits(max_connections=concurrency)
    async with httpx2.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    latencies.sort()
    return len(latencies) / seconds, latencies[max(int(len(latencies) * 0.99) - 1, 0)]


def status_task_url(svc: Service) -> str:
    """A finished task's status URL on `svc` (what the status benchmarks poll)."""
    started = httpx2.post(
        f"{svc.url}/docker/build/start",
        json={"dockerfile_content": "FROM scratch\n"},
        headers=svc.headers,
        timeout=30,
    ).json()
    time.sleep(1)
    return f"{svc.url}/tasks/status/{started['task_id']}"


def wrk(url: str, headers: dict[str, str], seconds: float) -> tuple[float, str, int]:
    """wrk -t2 -c16 (a C load generator leaves the CPU to the service): (req/s, p99, errors)."""
    auth = f"Authorization: {headers['Authorization']}"
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{int(seconds)}s", "--latency", "-H", auth, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    rate = float(next(line for line in lines if line.startswith("Requests/sec")).split()[-1])
    p99 = next(line for line in lines if line.strip().startswith("99%")).split()[-1]
    errors = sum(
        int(n)
        for line in lines
        if "Non-2xx" in line or "Socket errors" in line
        for n in re.findall(r"\d+", line.split(":", 1)[1])
    )
    return rate, p99, errors
