"""Benchmark container files: list a 10,000-file directory and read a 10 MB file.

    .venv/bin/python bench/container_fs.py [--files 10000] [--runs 5]

API (`/docker/container/fs/list`, `/read`) against `docker exec ls -la` and `docker cp`, with the
service's peak memory growth.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import tempfile

import httpx2
from _common import docker, ensure_base_image, median_seconds, row, service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = f"dmbench-fs-{secrets.token_hex(3)}"
    docker(
        "run",
        "-d",
        "--label",
        "docker-manager.managed=true",
        "--name",
        name,
        ensure_base_image(),
        "sleep",
        "3600",
    )
    try:
        docker(
            "exec",
            name,
            "sh",
            "-c",
            f"mkdir -p /many && cd /many && i=0; "
            f"while [ $i -lt {args.files} ]; do : > f$i; i=$((i+1)); done; "
            "head -c 10000000 /dev/urandom > /ten.bin",
        )
        with (
            tempfile.TemporaryDirectory() as data_dir,
            service(DM_DATA_DIR=data_dir) as svc,
            httpx2.Client(timeout=120) as client,
        ):
            base = f"{svc.url}/docker/container/fs"

            def api_list() -> None:
                body = client.post(
                    f"{base}/list",
                    json={"id_or_name": name, "path": "/many", "limit": 10_000},
                    headers=svc.headers,
                )
                body.raise_for_status()
                assert len(body.json()["entries"]) == min(args.files, 10_000)

            def api_read() -> None:
                client.post(
                    f"{base}/read", json={"id_or_name": name, "path": "/ten.bin"}, headers=svc.headers
                ).raise_for_status()

            api_list()
            before = svc.rss_kib()
            row(
                f"list {args.files} files: API vs `docker exec ls -la`",
                median_seconds(api_list, runs=args.runs),
                median_seconds(lambda: docker("exec", name, "ls", "-la", "/many"), runs=args.runs),
            )
            row(
                "read 10 MB file: API vs `docker cp`",
                median_seconds(api_read, runs=args.runs),
                median_seconds(
                    lambda: subprocess.run(
                        ["docker", "cp", f"{name}:/ten.bin", f"{data_dir}/ten.bin"], check=True
                    ),
                    runs=args.runs,
                ),
            )
            print(f"{'':44} service peak memory growth: {(svc.peak_rss_kib() - before) / 1024:+.1f} MiB")
    finally:
        docker("rm", "-f", name, check=False)


if __name__ == "__main__":
    main()
