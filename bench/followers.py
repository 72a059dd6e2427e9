"""Benchmark live followers: many clients following one task's events at once.

A host command that prints a line every 50 ms for a while runs on a real service process; N
clients follow its events over SSE (`/tasks/{id}/events`). Printed: the service's open file
descriptors and database connections (descriptors on the SQLite files) and RSS before, while the
followers are open, and after they have closed; and the status route's rate and p99 while they are
open, beside the same without followers.

    .venv/bin/python bench/followers.py [--followers 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import httpx2
from _common import request_rate, service


def descriptors(pid: int) -> tuple[int, int]:
    """(open descriptors, of which on the SQLite database files)."""
    total = database = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        total += 1
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if ".db" in target:
            database += 1
    return total, database


async def follow(url: str, headers: dict[str, str], opened: asyncio.Event, done: asyncio.Event) -> int:
    lines = 0
    async with (
        httpx2.AsyncClient(timeout=None) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        opened.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                lines += 1
            if done.is_set():
                break
    return lines


async def run(followers: int) -> None:
    with service() as svc:
        rss = svc.rss_kib
        fds_before = descriptors(svc.process.pid)
        rss_before = rss()
        async with httpx2.AsyncClient(base_url=svc.url, headers=svc.headers, timeout=60) as client:
            started = asyncio.create_task(
                client.post(
                    "/tasks/run-stream",
                    json={
                        "cmd": "for i in $(seq 1 600); do echo line $i; sleep 0.05; done",
                        "task_id": "bench-follow",
                    },
                )
            )
            for _ in range(100):
                if (await client.get("/tasks/status/bench-follow")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            status_url = f"{svc.url}/tasks/status/bench-follow"
            alone = await request_rate(status_url, svc.headers, seconds=5, concurrency=8)
            done = asyncio.Event()
            opened = [asyncio.Event() for _ in range(followers)]
            tasks = [
                asyncio.create_task(follow(f"{svc.url}/tasks/bench-follow/events", svc.headers, o, done))
                for o in opened
            ]
            await asyncio.gather(*(o.wait() for o in opened))
            await asyncio.sleep(2)
            fds_open, rss_open = descriptors(svc.process.pid), rss()
            crowded = await request_rate(status_url, svc.headers, seconds=5, concurrency=8)
            done.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(3)
            fds_after, rss_after = descriptors(svc.process.pid), rss()
            started.cancel()
    print(f"{'':<30} {'fds':>6} {'db conns':>9} {'RSS MiB':>9}")
    for label, fds, kib in (
        ("before", fds_before, rss_before),
        (f"{followers} followers open", fds_open, rss_open),
        ("after they closed", fds_after, rss_after),
    ):
        print(f"{label:<30} {fds[0]:>6} {fds[1]:>9} {kib / 1024:>9.1f}")
    print(
        f"status route alone: {alone[0]:.0f} req/s p99 {alone[1] * 1000:.1f} ms; with {followers} followers: "
        f"{crowded[0]:.0f} req/s p99 {crowded[1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--followers", type=int, default=200)
    asyncio.run(run(parser.parse_args().followers))


if __name__ == "__main__":
    main()
