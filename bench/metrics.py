"""Benchmark the cost of being watched: the status route's request rate with and without a
Prometheus scrape every second, and the time and size of one scrape.

    .venv/bin/python bench/metrics.py [--seconds 8]

Target: scraping every second costs the status route at most 5 % of its request rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time

import httpx2
from _common import request_rate, service


def scrape_loop(url: str, headers: dict[str, str], stop: threading.Event, times: list[float]) -> None:
    """A scraper in its own thread (as Prometheus is its own process): one GET /metrics a second."""
    with httpx2.Client(timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(f"{url}/metrics", headers=headers).raise_for_status()
            times.append(time.perf_counter() - started)
            stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="dm-bench-metrics-") as data_dir,
        service(DM_DATA_DIR=data_dir) as svc,
    ):
        started = httpx2.post(
            f"{svc.url}/docker/build/start",
            json={"dockerfile_content": "FROM scratch\n"},
            headers=svc.headers,
            timeout=30,
        ).json()
        url = f"{svc.url}/tasks/status/{started['task_id']}"
        time.sleep(1)
        asyncio.run(request_rate(url, svc.headers, seconds=2, concurrency=16))  # warm up
        quiet, quiet_p99 = asyncio.run(request_rate(url, svc.headers, seconds=args.seconds, concurrency=16))
        stop, times = threading.Event(), []
        scraper = threading.Thread(target=scrape_loop, args=(svc.url, svc.headers, stop, times))
        scraper.start()
        try:
            watched, watched_p99 = asyncio.run(
                request_rate(url, svc.headers, seconds=args.seconds, concurrency=16)
            )
        finally:
            stop.set()
            scraper.join()
        size = len(httpx2.get(f"{svc.url}/metrics", headers=svc.headers, timeout=10).content)
    cost = (quiet - watched) / quiet * 100
    for label, rate, p99 in (("no scrape", quiet, quiet_p99), ("1 s scrape loop", watched, watched_p99)):
        print(f"GET /tasks/status, 16 clients, {label:<16} {rate:>8,.0f} req/s  p99 {p99 * 1000:.1f} ms")
    print(f"cost of scraping every second: {cost:.1f} % (target <= 5 %)")
    print(f"one scrape: median {statistics.median(times) * 1000:.1f} ms over {len(times)}, {size:,} bytes")


if __name__ == "__main__":
    main()
