"""Fuzz the API with schemathesis against its own OpenAPI document: no answer may be a 5xx.

    .venv/bin/python bench/fuzz_api.py [--examples 100]

Runs a throwaway service (admin token, own data dir, nginx pointed nowhere) and every operation
except the ones that run host commands, delete objects or follow streams forever.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, service

SKIPPED = "run-stream|prune|/events"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    binary = Path(sys.executable).parent / "schemathesis"
    with (
        tempfile.TemporaryDirectory(prefix="dm-fuzz-") as data_dir,
        service(DM_DATA_DIR=data_dir, DM_NGINX_PID_FILE=f"{data_dir}/no-nginx.pid") as svc,
    ):
        result = subprocess.run(
            [
                str(binary),
                "run",
                f"{svc.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {svc.token}",
                "--checks",
                "not_a_server_error",
                "-n",
                str(args.examples),
                "--workers",
                "2",
                "--exclude-path-regex",
                SKIPPED,
            ],
            cwd=ROOT,
            check=False,
        )
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
