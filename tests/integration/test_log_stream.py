"""The external log stream (outbox) against a real HTTP sink on loopback, and restarts mid-build."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.config import Settings
from docker_manager.runner import TaskContext, TaskSpec
from tests.harness import app_client, free_port, wait_final

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


class Sink:
    """An HTTP endpoint that records what it is sent; it can fail the first requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.requests = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests += 1
                if sink.requests <= sink.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                sink.headers.append(dict(self.headers))
                data = json.loads(body)
                # One payload per POST (the default, as the original), or {"events": [...]}.
                sink.received.extend(data.get("events", [data]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """Accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/logs"


def settings_for(tmp_path: Path, settings: Settings, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        admin_token="stream-admin",  # type: ignore[arg-type]
        context_roots=settings.context_roots,
        **extra,
    )


async def test_events_and_lines_reach_the_sink_in_order_despite_failures(
    tmp_path: Path, settings: Settings
) -> None:
    sink = Sink(fail_first=2)
    try:
        config = settings_for(
            tmp_path,
            settings,
            log_stream_endpoint=sink.url,
            auth_header={"Authorization": "Bearer sink-secret"},
        )
        async with app_client(config) as (services, client):

            async def work(ctx: TaskContext) -> dict[str, Any]:
                await ctx.event("run", "starting")
                await ctx.output([{"stream": "stdout", "text": f"line {i}"} for i in range(250)])
                await ctx.event("run", "completed", exit_code=0)
                return {}

            record = await services.runner.submit(TaskSpec(task_type="generic_task", work=work, app_id="web"))
            await wait_final(client, {"Authorization": "Bearer stream-admin"}, record.id)
            for _ in range(200):
                if any(e.get("final") for e in sink.received):
                    break
                await asyncio.sleep(0.05)
    finally:
        sink.close()
    mine = [e for e in sink.received if e["task_id"] == record.id]
    lines = [e["line"] for e in mine if e["status"] == "log"]
    assert lines == [f"line {i}" for i in range(250)]  # every line, once, in order
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(seqs)
    assert mine[-1]["status"] == "completed" and mine[-1]["final"] is True
    assert all(e["task"] == "generic_task" and e["app_id"] == "web" for e in mine)
    assert any(e["status"] == "completed" and e.get("exit_code") == 0 for e in mine)
    assert all(h["Authorization"] == "Bearer sink-secret" and h.get("Idempotency-Key") for h in sink.headers)
    assert sink.requests > 2  # the failed attempts were retried


async def test_a_black_holed_endpoint_does_not_slow_a_build(
    tmp_path: Path, settings: Settings, black_hole: str, unique: str, base_image: str
) -> None:
    context = settings.context_paths[0] / unique
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo one\nRUN echo two\nRUN echo three\n")

    async def timed_build(config: Settings, tag: str) -> float:
        async with app_client(config) as (_, client):
            started = time.monotonic()
            response = await client.post(
                "/docker/build/start",
                json={"context_path": context.name, "tag": tag, "nocache": True},
                headers={"Authorization": "Bearer stream-admin"},
            )
            status = await wait_final(
                client, {"Authorization": "Bearer stream-admin"}, response.json()["task_id"]
            )
            assert status["status"] == "completed"
            return time.monotonic() - started

    baseline = await timed_build(settings_for(tmp_path / "a", settings), f"{unique}:a")
    holed = await timed_build(
        settings_for(tmp_path / "b", settings, log_stream_endpoint=black_hole, log_stream_timeout=5),
        f"{unique}:b",
    )
    assert holed < baseline * 2 + 2, (baseline, holed)


def start_server(data_dir: Path, context_root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DM_DATA_DIR": str(data_dir),
        "DM_PORT": str(port),
        "DM_ADMIN_TOKEN": "restart-admin",
        "DM_CONTEXT_ROOTS": json.dumps([str(context_root)]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "docker_manager", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_stopping_the_service_mid_build_leaves_an_interrupted_task(
    tmp_path: Path, settings: Settings, unique: str, base_image: str, stop: signal.Signals
) -> None:
    context = settings.context_paths[0] / unique
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo long-step && sleep 30\n")
    port = free_port()
    headers = {"Authorization": "Bearer restart-admin"}
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, settings.context_paths[0], port)
    try:
        response = httpx2.post(
            f"{url}/docker/build/start",
            json={"context_path": unique, "tag": f"{unique}:r"},
            headers=headers,
            timeout=10,
        )
        task_id = response.json()["task_id"]
        log = tmp_path / "builds" / task_id / "build.log"
        for _ in range(100):
            if log.exists() and "long-step" in log.read_text():
                break
            time.sleep(0.1)
        started = time.monotonic()
        server.send_signal(stop)
        server.wait(timeout=30)
        assert time.monotonic() - started < 15  # SIGTERM: a graceful stop, in bounded time
        server = start_server(tmp_path, settings.context_paths[0], port)
        status = httpx2.get(f"{url}/tasks/status/{task_id}", headers=headers, timeout=10).json()
        assert status["status"] == "interrupted"
        assert status["events"][-1]["final"] is True
        info = json.loads((tmp_path / "builds" / task_id / "build.info.json").read_text())
        assert info["status"] == "error" and info["task_status"] == "interrupted"
        assert "long-step" in log.read_text()  # lines written before the stop are kept
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
