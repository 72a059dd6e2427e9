"""Benchmark the cost of being watched: the status route's request rate with and without a
Prometheus scrape every second, and the time and size of one scrape.

    .venv/bin/python bench/metrics.py [--seconds 8]

Target: scraping every second costs the status route at most 5 % of its request rate.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time

import httpx2
from _common import request_rate, service, status_task_url, wrk


def scrape_loop(url: str, headers: dict[str, str], stop: threading.Event, times: list[float]) -> None:
    """A scraper in its own thread (as Prometheus is its own process): one GET /metrics a second."""
    with httpx2.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(f"{url}/metrics", headers=headers).raise_for_status()
            times.append(time.perf_counter() - started)
            stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


def status_rate(url: str, headers: dict[str, str], seconds: float) -> float:
    """Requests per second on `url`: wrk when installed (a C load generator leaves the CPU to the
    service), else 16 httpx clients."""
    if shutil.which("wrk"):
        return wrk(url, headers, seconds)[0]
    rate, _p99 = asyncio.run(request_rate(url, headers, seconds=seconds, concurrency=16))
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet: list[float] = []
    watched: list[float] = []
    times: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="dm-bench-metrics-") as data_dir,
        service(DM_DATA_DIR=data_dir) as svc,
    ):
        url = status_task_url(svc)
        status_rate(url, svc.headers, 2)  # warm up
        # Alternating rounds, so that drift of the machine falls on both sides alike.
        for _ in range(args.rounds):
            quiet.append(status_rate(url, svc.headers, args.seconds))
            stop = threading.Event()
            scraper = threading.Thread(target=scrape_loop, args=(svc.url, svc.headers, stop, times))
            scraper.start()
            try:
                watched.append(status_rate(url, svc.headers, args.seconds))
            finally:
                stop.set()
                scraper.join()
        size = len(httpx2.get(f"{svc.url}/metrics", headers=svc.headers, timeout=10).content)
    tool = "wrk -c16" if shutil.which("wrk") else "httpx, 16 clients"
    no_scrape, with_scrape = statistics.median(quiet), statistics.median(watched)
    print(f"GET /tasks/status ({tool}), no scrape:       {no_scrape:>8,.0f} req/s  (rounds: {quiet})")
    print(f"GET /tasks/status ({tool}), 1 s scrape loop: {with_scrape:>8,.0f} req/s  (rounds: {watched})")
    cost = (no_scrape - with_scrape) / no_scrape * 100
    print(f"cost of scraping every second: {cost:.1f} % of the median rate (target <= 5 %)")
    print(f"one scrape: median {statistics.median(times) * 1000:.1f} ms over {len(times)}, {size:,} bytes")


if __name__ == "__main__":
    main()
