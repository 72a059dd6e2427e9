"""Benchmark the external log stream: payloads per second to a local receiver, one by one and batched.

A 20,000-line host command (`seq 1 20000` through /tasks/run-stream) runs on a real service
process whose `log_stream_endpoint` is a receiver in another process that answers at once (HTTP/1.1,
keep-alive). Printed per mode: payloads delivered, payloads per second (from the first payload to
the last), and how long after the command's end the last payload arrived.

Targets (issue 10): >= 1,000 payloads/s one by one; the last line within 30 s of the command's end.

    .venv/bin/python bench/log_stream.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from typing import Any

import httpx2
from _common import service


def receive(port: int, report: Any, ready: Any) -> None:
    """The receiver: counts payloads; reports (count, first arrival, arrival of the final payload)."""

    async def main() -> None:
        state = {"count": 0, "first": 0.0}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    body = json.loads(await reader.readexactly(length))
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    payloads = body.get("events", [body])
                    now = time.time()
                    state["first"] = state["first"] or now
                    state["count"] += len(payloads)
                    if any("exit_code" in p and p.get("status") == "completed" for p in payloads):
                        report.put((state["count"], state["first"], now))
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run_mode(batch: bool, lines: int) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report: Any = multiprocessing.Queue()
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=receive, args=(port, report, ready), daemon=True)
    receiver.start()
    ready.wait(10)
    try:
        env = {
            "DM_LOG_STREAM_ENDPOINT": f"http://127.0.0.1:{port}/logs",
            "DM_LOG_STREAM_BATCH": "true" if batch else "false",
        }
        with service(**env) as svc:
            response = httpx2.post(
                f"{svc.url}/tasks/run-stream",
                json={"cmd": f"seq 1 {lines}"},
                headers=svc.headers,
                timeout=600,
            )
            ended = time.time()
            assert response.json()["exit_code"] == "0", response.text
            count, first, last = report.get(timeout=300)
    finally:
        receiver.terminate()
    return {
        "payloads": count,
        "rate": count / max(last - first, 1e-6),
        "after_end": max(last - ended, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    for label, batch in (("one payload per POST (default)", False), ("batched (opt-in)", True)):
        result = run_mode(batch, args.lines)
        print(
            f"{label:<34} {result['payloads']:>7.0f} payloads  {result['rate']:>9.0f} payloads/s  "
            f"last one {result['after_end']:.2f} s after the command ended"
        )


if __name__ == "__main__":
    main()
