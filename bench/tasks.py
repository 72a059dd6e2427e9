"""Benchmark the task side: log tail, build-stream, black-holed log stream, status rate.

    .venv/bin/python bench/tasks.py [--log-mb 1024] [--runs 3] [--skip-build]

Prints each figure next to its baseline (`tail -n 200`, `DOCKER_BUILDKIT=0 docker build`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx2
from _common import (
    docker,
    ensure_base_image,
    median_seconds,
    request_rate,
    row,
    service,
    status_task_url,
    wrk,
)


def make_big_logs(folder: Path, log_mb: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    line = "Step 3/9 : RUN make -j2 all && echo some fairly typical build output line here\n"
    block = (line * (1 << 20 // len(line) + 1))[: 1 << 20]
    with (folder / "build.log").open("w") as handle:
        for _ in range(log_mb):
            handle.write(block)
        handle.write("the last line\n")
    record = (
        json.dumps({"ts": "2026-11-28T00:00:00.000Z", "level": "info", "event": "output", "text": line})
        + "\n"
    )
    jblock = record * ((1 << 20) // len(record) + 1)
    with (folder / "build.jsonl").open("w") as handle:
        for _ in range(max(log_mb // 5, 1)):
            handle.write(jblock)
    (folder / "build.info.json").write_text('{"status": "building", "stage": "building"}')


def bench_tail(log_mb: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dm-bench-logs-") as data_dir:
        folder = Path(data_dir) / "builds" / "docker_build-bench00001"
        print(f"writing a {log_mb} MiB build.log and a {max(log_mb // 5, 1)} MiB build.jsonl ...")
        make_big_logs(folder, log_mb)
        with service(DM_DATA_DIR=data_dir) as svc:
            client = httpx2.Client(timeout=60)
            url = f"{svc.url}/tasks/logs/docker_build-bench00001?tail=200&server=build"
            client.get(url, headers=svc.headers).raise_for_status()
            before = svc.rss_kib()
            ours = median_seconds(
                lambda: client.get(url, headers=svc.headers).raise_for_status(), runs=runs * 5
            )
            growth = (svc.peak_rss_kib() - before) / 1024
            body = client.get(url, headers=svc.headers).json()
            assert body["build_logs"]["raw"][-1] == "the last line"
            baseline = median_seconds(
                lambda: subprocess.run(
                    ["tail", "-n", "200", str(folder / "build.log")], capture_output=True, check=True
                ),
                runs=runs * 5,
            )
            row(f"tail=200 of {log_mb} MiB log: API vs `tail -n 200`", ours, baseline)
            print(f"{'':44} service memory growth during the reads: {growth:+.1f} MiB")


def build_context(root: Path, image: str) -> Path:
    context = root / "bench-app"
    context.mkdir(parents=True, exist_ok=True)
    (context / "payload.bin").write_bytes(os.urandom(4 << 20))
    (context / "Dockerfile").write_text(
        f"FROM {image}\nCOPY payload.bin /data/payload.bin\nRUN md5sum /data/payload.bin > /data/sum\n"
        "RUN mkdir -p /srv && cp /data/payload.bin /srv/copy\nRUN ls -la /srv > /srv/listing\n"
    )
    return context


def bench_builds(runs: int) -> None:
    image = ensure_base_image()
    with tempfile.TemporaryDirectory(prefix="dm-bench-build-") as data_dir:
        contexts = Path(data_dir) / "contexts"
        context = build_context(contexts, image)
        tags: list[str] = []

        def cli_build(i: int) -> None:
            tag = f"dmbench-cli:{i}"
            tags.append(tag)
            subprocess.run(
                ["docker", "build", "--no-cache", "-q", "-t", tag, str(context)],
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
                capture_output=True,
                check=True,
            )

        def api_build(svc_url: str, headers: dict[str, str], i: int, tag_prefix: str) -> None:
            tag = f"{tag_prefix}:{i}"
            tags.append(tag)
            with (
                httpx2.Client(timeout=600) as client,
                client.stream(
                    "POST",
                    f"{svc_url}/docker/build-stream",
                    json={"context_path": "bench-app", "tag": tag, "nocache": True},
                    headers=headers,
                ) as response,
            ):
                last = ""
                for line in response.iter_lines():
                    last = line or last
            assert json.loads(last)["status"] == "ok", last

        try:
            cli_times: list[float] = []
            api_times: list[float] = []
            with service(DM_DATA_DIR=data_dir, DM_CONTEXT_ROOTS=json.dumps([str(contexts)])) as svc:
                for i in range(runs):  # alternating, so that a slow spell of the machine hits both
                    started = time.perf_counter()
                    cli_build(i)
                    cli_times.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    api_build(svc.url, svc.headers, i, "dmbench-api")
                    api_times.append(time.perf_counter() - started)
            print(
                "  runs (CLI, service): "
                + ", ".join(f"{c:.2f}/{a:.2f} s" for c, a in zip(cli_times, api_times, strict=True))
            )
            row(
                "build (4 steps, no cache): build-stream vs CLI",
                statistics.median(api_times),
                statistics.median(cli_times),
                unit="s",
            )

            with socket.socket() as hole:  # accepts, never answers
                hole.bind(("127.0.0.1", 0))
                hole.listen(100)
                endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}/logs"
                with service(
                    DM_DATA_DIR=data_dir + "/holed",
                    DM_CONTEXT_ROOTS=json.dumps([str(contexts)]),
                    DM_LOG_STREAM_ENDPOINT=endpoint,
                ) as svc:
                    holed = []
                    for i in range(runs):
                        started = time.perf_counter()
                        api_build(svc.url, svc.headers, i, "dmbench-holed")
                        holed.append(time.perf_counter() - started)
            row(
                "build with log endpoint black-holed vs none",
                statistics.median(holed),
                statistics.median(api_times),
                unit="s",
            )
        finally:
            docker("rmi", *tags, check=False)


def bench_status(seconds: float) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="dm-bench-status-") as data_dir,
        service(DM_DATA_DIR=data_dir) as svc,
    ):
        url = status_task_url(svc)
        if shutil.which("wrk"):
            rate, p99, _errors = wrk(url, svc.headers, seconds)
            print(f"GET /tasks/status (wrk, 16 connections): {rate:,.0f} req/s, p99 {p99}")
        else:
            rate_value, p99_value = asyncio.run(
                request_rate(url, svc.headers, seconds=seconds, concurrency=16)
            )
            print(
                f"GET /tasks/status (httpx, 16 clients; install wrk for a fairer figure): "
                f"{rate_value:,.0f} req/s, p99 {p99_value * 1000:.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    bench_tail(args.log_mb, args.runs)
    if not args.skip_build:
        bench_builds(args.runs)
    bench_status(args.seconds)


if __name__ == "__main__":
    main()
