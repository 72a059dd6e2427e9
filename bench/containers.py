"""Benchmark: list 100 containers and one exec round trip, API vs docker CLI; request rate.

.venv/bin/python bench/containers.py [--containers 100] [--runs 15] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

import httpx2
from _common import docker, ensure_base_image, median_seconds, request_rate, row, service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    image = ensure_base_image()
    prefix = f"dmbench-{secrets.token_hex(3)}"
    names = [f"{prefix}-{i}" for i in range(args.containers)]
    try:
        for name in names:
            docker("create", "--name", name, image, "sleep", "600")
        docker("start", names[0])
        with service() as svc:
            client = httpx2.Client(timeout=30)
            listing = f"{svc.url}/docker/containers?all=true"
            client.get(listing, headers=svc.headers).raise_for_status()
            print(f"{args.containers} containers, median of {args.runs} runs")
            ours = median_seconds(
                lambda: client.get(listing, headers=svc.headers).raise_for_status(), runs=args.runs
            )
            cli = median_seconds(lambda: docker("ps", "-a"), runs=args.runs)
            row("list containers: API vs `docker ps -a`", ours, cli)

            body = {"id_or_name": names[0], "cmd": ["true"]}
            ours = median_seconds(
                lambda: client.post(
                    f"{svc.url}/docker/exec", json=body, headers=svc.headers
                ).raise_for_status(),
                runs=args.runs,
            )
            cli = median_seconds(lambda: docker("exec", names[0], "true"), runs=args.runs)
            row("exec round trip: API vs `docker exec`", ours, cli)

            rate, p99 = asyncio.run(request_rate(listing, svc.headers, seconds=args.seconds, concurrency=16))
            print(f"GET /docker/containers, 16 clients: {rate:,.0f} req/s, p99 {p99 * 1000:.1f} ms")
            print(f"service peak RSS: {svc.peak_rss_kib() / 1024:.1f} MiB")
    finally:
        docker("rm", "-f", *names, check=False)


if __name__ == "__main__":
    main()
