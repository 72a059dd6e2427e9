"""`GET /tasks/status/{id}`: saturated (wrk, 16 keep-alive connections) and at a fixed rate (an
open-loop client: 200 req/s over 64 keep-alive connections; latency counted from each request's
scheduled time, so a stall is not hidden). Optionally profiles the saturated run with py-spy.

    .venv/bin/python bench/status.py [--seconds 10] [--rate 200] [--rate-seconds 60] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Service, service, status_task_url, wrk


async def open_loop(
    url: str, headers: dict[str, str], *, rate: float, seconds: float, connections: int
) -> None:
    """Requests sent on a fixed schedule whatever the answers' speed; one client per connection."""
    interval = connections / rate
    latencies: list[float] = []
    slow: list[tuple[float, float]] = []  # (latency, when in the run): where the stalls were
    errors = collections.Counter[str]()
    start = time.perf_counter() + 0.5

    async def connection(index: int, client: httpx2.AsyncClient) -> None:
        due = start + index * (interval / connections)
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                answer = await client.get(url, headers=headers)
                if answer.status_code != 200:
                    errors[str(answer.status_code)] += 1
            except httpx2.HTTPError as exc:
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - due)  # from the scheduled time
            slow.append((latencies[-1], due - start))
            due += interval

    clients = [
        httpx2.AsyncClient(timeout=10, limits=httpx2.Limits(max_connections=1)) for _ in range(connections)
    ]
    try:
        # Connections opened (and each client's set-up paid) before the clock starts.
        await asyncio.gather(*(c.get(url, headers=headers) for c in clients))
        start = time.perf_counter() + 0.5
        await asyncio.gather(*(connection(i, c) for i, c in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(int(len(latencies) * p), len(latencies) - 1)] * 1000

    print(
        f"open loop {rate:.0f} req/s, {connections} connections, {seconds:.0f} s: {len(latencies)} requests, "
        f"p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
        f"errors {dict(errors) or 0}"
    )
    worst = sorted(slow, reverse=True)[:5]
    print("  slowest: " + ", ".join(f"{lat * 1000:.0f} ms at {when:.1f} s" for lat, when in worst))


BARE_FLAGS = ("--log-level", "warning", "--no-access-log", "--no-server-header")


@contextlib.contextmanager
def bare_fastapi(status_url: str, svc: Service) -> Iterator[str]:
    """The baseline app (bench/_bare_status.py) answering the service's own bytes for the task."""
    body = httpx2.get(status_url, headers=svc.headers, timeout=10).text
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "_bare_status:app", "--port", str(port), *BARE_FLAGS],
        cwd=Path(__file__).resolve().parent,
        env={**os.environ, "BARE_STATUS_BODY": body, "BARE_STATUS_TOKEN": svc.token},
    )
    url = f"http://127.0.0.1:{port}/tasks/status/{status_url.rsplit('/', 1)[1]}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(url, headers=svc.headers, timeout=1).text == body:
                    break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--rate-seconds", type=float, default=60)
    parser.add_argument("--only-rate", action="store_true", help="skip the saturated runs")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of one saturated run here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk (apt-get install wrk)")
    with (
        tempfile.TemporaryDirectory(prefix="dm-bench-status-") as data_dir,
        service(DM_DATA_DIR=data_dir) as svc,
    ):
        url = status_task_url(svc)
        wrk(url, svc.headers, 2)  # warm-up
        if args.only_rate:
            asyncio.run(
                open_loop(url, svc.headers, rate=args.rate, seconds=args.rate_seconds, connections=64)
            )
            return
        with bare_fastapi(url, svc) as bare_url:
            wrk(bare_url, svc.headers, 2)
            runs = {"bare FastAPI": [], "service": []}
            for _ in range(args.runs):  # alternating: the machine's drift hits both alike
                runs["bare FastAPI"].append(wrk(bare_url, svc.headers, args.seconds))
                runs["service"].append(wrk(url, svc.headers, args.seconds))
        print(f"saturated (wrk -c16, {args.seconds} s, median of {args.runs}, alternating):")
        medians = {}
        for name, results in runs.items():
            results.sort()
            rate, p99, errors = medians[name] = results[len(results) // 2]
            print(f"  {name:>12}: {rate:,.0f} req/s, p99 {p99}, errors {errors}")
            print("      runs: " + ", ".join(f"{r:,.0f} req/s p99 {p}" for r, p, _ in results))
        print(f"  service / bare FastAPI: {medians['service'][0] / medians['bare FastAPI'][0]:.2f}x")
        if args.profile:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            args.profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(svc.process.pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--duration",
                    str(args.seconds),
                    "-o",
                    str(args.profile / "status.folded"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            wrk(url, svc.headers, args.seconds - 1)
            spy.wait()
            print(f"profile: {args.profile / 'status.folded'} (collapsed stacks)")
        if args.rate_seconds > 0:
            asyncio.run(
                open_loop(url, svc.headers, rate=args.rate, seconds=args.rate_seconds, connections=64)
            )


if __name__ == "__main__":
    main()
