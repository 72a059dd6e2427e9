"""Benchmark the terminal client's start: `docker-manager --help` and `docker-manager apps` against
a local service, beside the docker CLI's `docker --help` and `docker ps` (alternating, medians).

    .venv/bin/python bench/cli_start.py [--runs 15]

Targets: `--help` at most 0.2 s, `apps` at most 0.3 s on this machine (the client imports only the
client: tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, service

CLIENT = [sys.executable, "-m", "docker_manager"]
# The serve lock has no trio; the test lock has it (selenium's), and httpcore2 imports it when it
# is there: this runs the client as the serve venv would, with trio hidden.
WITHOUT_TRIO = [
    sys.executable,
    "-c",
    "import sys; sys.modules['trio'] = None; from docker_manager.cli import main; "
    "sys.argv[0] = 'docker-manager'; main()",
]


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with service() as svc, tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
        env |= {"HOME": home, "XDG_CONFIG_HOME": str(Path(home) / "config"), "PYTHONPATH": str(ROOT / "src")}
        env |= {"DM_URL": svc.url, "DM_TOKEN": svc.headers["Authorization"].split(" ", 1)[1]}
        pairs = {
            "--help": ([*CLIENT, "--help"], ["docker", "--help"]),
            "apps (a local service)": ([*CLIENT, "apps"], ["docker", "ps"]),
            "apps, as the serve venv": ([*WITHOUT_TRIO, "apps"], ["docker", "ps"]),
        }
        for label, (ours, baseline) in pairs.items():
            mine, theirs = [], []
            for _ in range(runs):  # alternating: both see the same machine
                mine.append(timed(ours, env))
                theirs.append(timed(baseline, env))
            print(
                f"{label:<28} docker-manager {statistics.median(mine) * 1000:7.1f} ms   "
                f"docker {statistics.median(theirs) * 1000:7.1f} ms"
            )


if __name__ == "__main__":
    main()
