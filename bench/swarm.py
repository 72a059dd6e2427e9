"""Benchmark swarm apps on a real three-node swarm (tests/swarm_lab.py) under request loops.

    .venv/bin/python bench/swarm.py [--runs 3]

- Rolling release of 3 replicas through the domain: the service's deploy (an image already on the
  manager, pushed and rolled out by digest, health-checked, the site switched, the release
  recorded) against `docker service update --detach --with-registry-auth --image` of the same
  service (the same spec: only the image differs) followed until `UpdateStatus` completes,
  alternating, medians. Target: <= 1.1x, 0 failed requests.
- A failing release (its health check never passes): rolled back by the engine, 0 failed requests.
- A drain of a node with replicas, and a worker lost (engine and containers killed, link down):
  0 failed requests; the time until the site follows.
Requests: three clients looping through nginx, a new connection each, never retrying.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from _common import ROOT

sys.path.insert(0, str(ROOT))
from tests.harness import NginxServer, ServiceProcess, nginx, service_process
from tests.swarm_lab import SwarmLab, busybox_rootfs, swarm_lab

APP, DOMAIN, USER, PASSWORD = "bench", "bench.swarm.example.com", "lab", "lab-pass-123"


class Loop:
    def __init__(self, web: NginxServer) -> None:
        self.web, self.stop = web, threading.Event()
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = httpx2.get(
                    f"http://127.0.0.1:{self.web.port}/", headers={"Host": DOMAIN}, timeout=10
                )
                if answer.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append(str(answer.status_code))
            except httpx2.HTTPError as exc:
                self.failed.append(type(exc).__name__)
            time.sleep(0.01)


@contextmanager
def looping(web: NginxServer) -> Iterator[Loop]:
    loop = Loop(web)
    threads = [threading.Thread(target=loop.run) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        yield loop
    finally:
        loop.stop.set()
        for thread in threads:
            thread.join()


def call(service: ServiceProcess, method: str, path: str, **kwargs: Any) -> Any:
    answer = httpx2.request(method, f"{service.url}{path}", headers=service.headers, timeout=60, **kwargs)
    return answer.json()


def final(service: ServiceProcess, task_id: str) -> dict[str, Any]:
    while True:
        status: dict[str, Any] = call(service, "GET", f"/tasks/status/{task_id}")
        if status["status"] not in ("queued", "running"):
            return status
        time.sleep(0.05)


def deploy(service: ServiceProcess, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    task = call(
        service, "POST", f"/apps/{APP}/deploy", json={"mode": "swarm", "health": {"timeout": 10}, **body}
    )
    ended = final(service, task["task_id"])
    return time.perf_counter() - started, ended


def by_cli(lab: SwarmLab, config: Path, image: str) -> float:
    """`docker service update` of the same service, followed until its rollout completes."""
    manager = lab.nodes[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")} | {
        "DOCKER_CONFIG": str(config)
    }
    base = ["docker", "-H", manager.docker_host]
    state_of = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"
    started = time.perf_counter()
    subprocess.run(
        [*base, "service", "update", "--detach", "--with-registry-auth", "--image", image, f"dm-{APP}"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    while True:
        state = subprocess.run(
            [*base, "service", "inspect", "--format", state_of, f"dm-{APP}"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout.strip()  # fmt: skip
        if state in ("completed", "rollback_completed", "paused", "rollback_paused"):
            assert state == "completed", state
            return time.perf_counter() - started
        time.sleep(0.05)


def images(lab: SwarmLab, registry: str, root: Path, count: int) -> list[str]:
    """`count` versions built on the manager and pushed (the baseline's images, by tag)."""
    manager = lab.nodes[0]
    manager.docker("import", str(busybox_rootfs(root / "rootfs.tar")), "dmsw-raw:bench")
    made = []
    for index in range(count):
        folder = root / f"v{index}"
        folder.mkdir()
        (folder / "Dockerfile").write_text(
            'FROM dmsw-raw:bench\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            f"RUN mkdir -p /www && echo v{index} > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        )
        tag = f"{registry}/apps/bench-src:v{index}"
        manager.docker("build", "-q", "-t", tag, str(folder), timeout=120)
        made.append(tag)
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dm-bench-swarm-") as temp, swarm_lab(3) as lab:
        root = Path(temp)
        lab.init()
        with lab.registry(USER, PASSWORD) as registry, nginx(root / "nginx") as web:
            tags = images(lab, registry, root, 2 * args.runs + 2)
            config = root / "docker-config"
            config.mkdir()
            subprocess.run(
                ["docker", "-H", lab.nodes[0].docker_host, "login", registry, "-u", USER, "--password-stdin"],
                input=PASSWORD, text=True, check=True, capture_output=True,
                env={**os.environ, "DOCKER_CONFIG": str(config)},
            )  # fmt: skip
            for tag in tags:  # (the baseline pulls by tag on the workers)
                subprocess.run(
                    ["docker", "-H", lab.nodes[0].docker_host, "push", tag],
                    check=True, capture_output=True, env={**os.environ, "DOCKER_CONFIG": str(config)},
                )  # fmt: skip
            with service_process(
                root / "data", root / "server.log", DM_DOCKER_HOST=lab.nodes[0].docker_host,
                DM_SWARM_REGISTRY=f"{registry}/apps", DM_SWARM_REGISTRY_USERNAME=USER,
                DM_SWARM_REGISTRY_PASSWORD=PASSWORD, DM_SWARM_POLL_INTERVAL="0.5", **web.env(),
            ) as service:  # fmt: skip
                run(lab, service, web, config, tags, args.runs)


def run(
    lab: SwarmLab, service: ServiceProcess, web: NginxServer, config: Path, tags: list[str], runs: int
) -> None:
    _, first = deploy(service, {"image": tags[0], "replicas": 3, "domain": DOMAIN})
    assert first["status"] == "completed", first
    ours, theirs = [], []
    with looping(web) as loop:
        for index in range(runs):
            took, ended = deploy(service, {"image": tags[1 + 2 * index]})
            assert ended["status"] == "completed", ended
            ours.append(took)
            theirs.append(by_cli(lab, config, tags[2 + 2 * index]))
    stages = [e.get("message") for e in ended["events"] if e["status"] == "completed" and e.get("stage")]
    print(f"    the last deploy's stages: {stages}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"rolling release, 3 replicas: deploy {statistics.median(ours):.2f} s, "
        f"docker service update {statistics.median(theirs):.2f} s = {ratio:.2f}x (target <= 1.1x)"
    )
    print(f"    runs: deploy {[round(x, 2) for x in ours]}, cli {[round(x, 2) for x in theirs]}")
    print(f"    requests: {loop.ok} ok, {len(loop.failed)} failed {loop.failed[:5]}")
    with looping(web) as loop:
        took, ended = deploy(service, {"image": tags[-1], "health": {"path": "/missing", "timeout": 3}})
    print(
        f"failing release: {ended['status']} at {ended['stage']} in {took:.1f} s "
        f"({(ended.get('error') or '')[:120]}); requests {loop.ok} ok, {len(loop.failed)} failed"
    )
    app = call(service, "GET", f"/apps/{APP}")
    node_of = {n.name: n for n in lab.nodes}
    workers = [node_of[r["node"]] for r in app["replicas"] if r["node"] != lab.nodes[0].name]
    node_id = next(r["node_id"] for r in app["replicas"] if r["node"] == workers[0].name)
    with looping(web) as loop:
        started = time.perf_counter()
        drained = call(
            service, "POST", f"/swarm/nodes/{node_id}/availability", json={"availability": "drain"}
        )
        took = time.perf_counter() - started
        time.sleep(2)
    print(
        f"drain of {workers[0].name}: moved {drained.get('moved')} in {took:.1f} s; "
        f"requests {loop.ok} ok, {len(loop.failed)} failed {loop.failed[:5]}"
    )
    call(service, "POST", f"/swarm/nodes/{node_id}/availability", json={"availability": "active"})
    app = call(service, "GET", f"/apps/{APP}")
    lost = next(node_of[r["node"]] for r in app["replicas"] if r["node"] != lab.nodes[0].name)
    with looping(web) as loop:
        time.sleep(1)
        lab.stop_node(lost)
        started = time.perf_counter()
        while any(lost.address in s for s in servers(web)) or len(servers(web)) < 3:
            time.sleep(0.25)
        followed = time.perf_counter() - started
        time.sleep(2)
    print(
        f"{lost.name} lost: the site on 3 replicas elsewhere after {followed:.1f} s; "
        f"requests {loop.ok} ok, {len(loop.failed)} failed {loop.failed[:5]}"
    )
    print(json.dumps({"deploy": ours, "cli": theirs}))


def servers(web: NginxServer) -> list[str]:
    header = (web.sites / f"{APP}.conf").read_text().splitlines()[1]
    found = [part for part in header.split() if part.startswith("servers=")]
    return found[0].removeprefix("servers=").split(",") if found else []


if __name__ == "__main__":
    main()
