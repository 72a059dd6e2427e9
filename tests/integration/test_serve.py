"""The real server process: `docker-manager serve` and the original `uvicorn main:app`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> httpx2.Response:
    for _ in range(100):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            return httpx2.get(url, timeout=1)
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


@pytest.mark.parametrize("how", ["cli", "uvicorn"])
def test_server_process_serves_and_stops_on_sigterm(tmp_path: Path, how: str) -> None:
    port = free_port()
    env = {**os.environ, "DM_DATA_DIR": str(tmp_path), "DM_PORT": str(port)}
    if how == "cli":
        argv = [sys.executable, "-m", "docker_manager", "serve"]
    else:
        argv = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        health = wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        assert health.status_code == 200
        token = (tmp_path / "admin-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        info = httpx2.get(f"http://127.0.0.1:{port}/system/info", headers=headers, timeout=10)
        assert info.status_code == 200
        assert httpx2.get(f"http://127.0.0.1:{port}/system/info", timeout=10).status_code == 401
        assert "server" not in {k.lower() for k in info.headers} or how == "uvicorn"
        openapi = httpx2.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
        assert "/docker/run" in openapi["paths"]
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells of it.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
