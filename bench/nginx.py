"""Benchmark traffic switching: sign-domain switches and app rollbacks under request loops.

    .venv/bin/python bench/nginx.py [--switches 20] [--rollbacks 6]

Runs a private nginx and two managed web containers, then switches the domain between them 20
times while 4 clients loop over requests (2 on fresh connections, 2 on kept-alive connections that
never retry); then deploys two releases of an app and rolls it back and forth 6 times (each
rollback starts a container, health-gates it, switches, retires the old one). Once per switch mode
(`--modes nat,reload`): the kernel moving new connections, or nginx reloads. Target: 0 failed
requests of either kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from _common import ROOT, docker, ensure_base_image, service

sys.path.insert(0, str(ROOT))
from tests.harness import free_port, nginx


def start_web(name: str, text: str, port: int) -> None:
    docker(
        "run",
        "-d",
        "--label",
        "docker-manager.managed=true",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:80",
        ensure_base_image(),
        "sh",
        "-c",
        f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www",
    )


async def loop_requests(
    port: int,
    stop: asyncio.Event,
    failures: dict[str, list[str]],
    counter: list[int],
    *,
    keepalive: bool,
    domain: str = "bench.example.com",
) -> None:
    """A client looping over GETs: a fresh connection each time (like curl), or one kept alive.
    Neither retries: a reset on a reused connection counts as a failure."""
    url, host = f"http://127.0.0.1:{port}/", {"Host": domain}
    async with httpx2.AsyncClient(timeout=5) as shared:
        while not stop.is_set():
            try:
                if keepalive:
                    reply = await shared.get(url, headers=host)
                else:
                    async with httpx2.AsyncClient(timeout=5) as fresh:
                        reply = await fresh.get(url, headers=host)
                if reply.status_code != 200:
                    failures["keepalive" if keepalive else "fresh"].append(str(reply.status_code))
            except httpx2.HTTPError as exc:
                failures["keepalive" if keepalive else "fresh"].append(repr(exc))
            counter[0] += 1


def report(what: str, counter: list[int], failures: dict[str, list[str]]) -> None:
    print(
        f"{what}: {counter[0]} requests, failed: {len(failures['fresh'])} on fresh connections, "
        f"{len(failures['keepalive'])} on kept-alive connections that never retry (target 0 and 0)"
    )
    first = failures["fresh"][:3] + failures["keepalive"][:3]
    if first:
        print("  first failures:", json.dumps(first))


async def run(
    switches: int, url: str, headers: dict[str, str], nginx_port: int, names: list[str], pause: float
) -> None:
    async with httpx2.AsyncClient(timeout=60) as api:
        first = await api.post(
            f"{url}/nginx/sign-domain",
            headers=headers,
            json={"domain": "bench.example.com", "app_id": "bench", "new_container": names[0]},
        )
        first.raise_for_status()
        stop, counter = asyncio.Event(), [0]
        failures: dict[str, list[str]] = {"fresh": [], "keepalive": []}
        clients = [
            asyncio.create_task(loop_requests(nginx_port, stop, failures, counter, keepalive=i % 2 == 1))
            for i in range(4)
        ]
        times = []
        for i in range(switches):
            new = names[(i + 1) % 2]
            started = time.perf_counter()
            # The old container keeps running here (no old_container): the switch itself is timed.
            reply = await api.post(
                f"{url}/nginx/sign-domain",
                headers=headers,
                json={"domain": "bench.example.com", "app_id": "bench", "new_container": new},
            )
            reply.raise_for_status()
            times.append(time.perf_counter() - started)
            await asyncio.sleep(pause)  # requests between switches, on connections that were idle
        stop.set()
        await asyncio.gather(*clients)
    print(
        f"sign-domain switch: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    report(
        f"{switches} switches under 4 request loops (2 fresh-connection, 2 keep-alive)",
        counter,
        failures,
    )


async def run_rollbacks(
    rollbacks: int, url: str, headers: dict[str, str], nginx_port: int, prefix: str
) -> None:
    """Two releases of an app, then `rollbacks` rollbacks (each to the release before the live one)."""
    domain = "rollback.example.com"
    async with httpx2.AsyncClient(timeout=60) as api:
        for version in (1, 2):
            script = (
                f"mkdir -p /www && echo release-{version} > /www/index.html && exec httpd -f -p 80 -h /www"
            )
            ran = await api.post(
                f"{url}/docker/run",
                headers=headers,
                json={
                    "image": ensure_base_image(),
                    "name": f"{prefix}-{version}",
                    "command": ["sh", "-c", script],
                    "ports": {"80/tcp": free_port()},
                    "app_id": "benchrb",
                },
            )
            ran.raise_for_status()
        await asyncio.sleep(0.5)
        signed = await api.post(
            f"{url}/nginx/sign-domain",
            headers=headers,
            json={"domain": domain, "app_id": "benchrb", "new_container": f"{prefix}-2"},
        )
        signed.raise_for_status()
        stop, counter = asyncio.Event(), [0]
        failures: dict[str, list[str]] = {"fresh": [], "keepalive": []}
        clients = [
            asyncio.create_task(
                loop_requests(nginx_port, stop, failures, counter, keepalive=i % 2 == 1, domain=domain)
            )
            for i in range(4)
        ]
        times = []
        for _ in range(rollbacks):
            started = time.perf_counter()
            reply = await api.post(f"{url}/apps/benchrb/rollback", headers=headers, json={"drain_seconds": 1})
            reply.raise_for_status()
            task_id = reply.json()["task_id"]
            while True:
                status = (await api.get(f"{url}/tasks/status/{task_id}", headers=headers)).json()
                if status["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.05)
            if status["status"] != "completed":
                raise SystemExit(f"rollback failed: {status.get('error')}")
            times.append(time.perf_counter() - started)
        stop.set()
        await asyncio.gather(*clients)
    print(
        "rollback (start, health, switch, 1 s drain, stop <= 1 s): "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    report(f"{rollbacks} rollbacks under 4 request loops", counter, failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--rollbacks", type=int, default=6)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of requests between two switches")
    parser.add_argument(
        "--modes", default="nat,reload", help="DM_SWITCH_MODE values to run, one after the other"
    )
    args = parser.parse_args()
    prefix = f"dmbench-rb-{secrets.token_hex(3)}"
    names = [f"dmbench-web-{secrets.token_hex(3)}" for _ in range(2)]
    try:
        for index, name in enumerate(names):
            start_web(name, f"version-{index}", free_port())
        with (
            tempfile.TemporaryDirectory(prefix="dm-bench-nginx-") as tmp,
            nginx(Path(tmp) / "nginx") as server,
        ):
            env = {
                "DM_NGINX_BINARY": str(server.settings()["nginx_binary"]),
                "DM_NGINX_CONF": str(server.conf),
                "DM_NGINX_PREFIX": str(server.prefix),
                "DM_NGINX_PID_FILE": str(server.pid_file),
                "DM_NGINX_ERROR_LOG": str(server.error_log),
                "DM_NGINX_CONF_DIRS": json.dumps([str(server.sites)]),
                "DM_NGINX_LISTEN": f"127.0.0.1:{server.port}",
                "DM_DATA_DIR": str(Path(tmp) / "data"),
                # busybox httpd as PID 1 ignores SIGTERM: every stop would wait the whole timeout.
                "DM_SWITCH_STOP_TIMEOUT": "1",
            }
            for number, mode in enumerate(args.modes.split(",")):
                print(f"--- DM_SWITCH_MODE={mode}")
                with service(**env, DM_SWITCH_MODE=mode) as svc:
                    asyncio.run(run(args.switches, svc.url, svc.headers, server.port, names, args.pause))
                    if args.rollbacks:
                        asyncio.run(
                            run_rollbacks(
                                args.rollbacks, svc.url, svc.headers, server.port, f"{prefix}{number}"
                            )
                        )
    finally:
        docker("rm", "-f", *names, check=False)
        made = docker("ps", "-aq", "--filter", f"name={prefix}", check=False).stdout.split()
        if made:
            docker("rm", "-f", *made, check=False)


if __name__ == "__main__":
    main()
