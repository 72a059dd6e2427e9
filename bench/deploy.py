"""Benchmark the deploy operation (`POST /apps/{app}/deploy`) against the same steps done by hand.

    .venv/bin/python bench/deploy.py [--runs 5] [--big-mib 1024] [--skip-big]

Baseline, in the same run, alternating: `DOCKER_BUILDKIT=0 docker build` + `docker run -d` + a site
file and an nginx reload + polling until the new content answers through nginx. The service: one
deploy with the same context and a domain, until the new content answers through nginx. Measures:
a 4-step app with no cache (target <= 1.05x), an app with a big layer and a cached build (target
<= 1.10x), and a deploy whose health check fails under a request loop (target: 0 failed requests,
the previous release still live).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from _common import ROOT, docker, ensure_base_image, service

sys.path.insert(0, str(ROOT))
from tests.harness import NginxServer, ServiceProcess, nginx


def context(folder: Path, text: str, *, big: Path | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = ensure_base_image()
    steps = [
        f"FROM {base}",
        "RUN mkdir -p /www",
        "RUN echo step > /www/step",
        f"RUN echo {text} > /www/index.html",
    ]
    if big is not None:
        os.link(big, folder / "big.bin") if not (folder / "big.bin").exists() else None
        steps.insert(1, "COPY big.bin /big.bin")
    steps.append('CMD ["httpd", "-f", "-p", "80", "-h", "/www"]')
    (folder / "Dockerfile").write_text("\n".join(steps) + "\n")


def until_served(web: NginxServer, domain: str, text: str, deadline: float = 300) -> None:
    end = time.monotonic() + deadline
    with httpx2.Client(timeout=2) as client:
        while time.monotonic() < end:
            try:
                answer = client.get(f"http://127.0.0.1:{web.port}/", headers={"Host": domain})
                if answer.status_code == 200 and answer.text.strip() == text:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.01)
    raise SystemExit(f"{domain} never served {text}")


def by_hand(web: NginxServer, folder: Path, domain: str, text: str, *, nocache: bool) -> float:
    """What an operator types: build, run, write the site, reload nginx, wait for the 200."""
    started = time.perf_counter()
    tag = f"bench-hand-{secrets.token_hex(3)}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    subprocess.run(
        ["docker", "build", "-q", *(["--no-cache"] if nocache else []), "-t", tag, str(folder)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    built = time.perf_counter()
    name = f"{tag}-c"
    docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", tag)
    port = docker("port", name, "80/tcp").stdout.strip().rsplit(":", 1)[1]
    ran = time.perf_counter()
    site = web.sites / f"{tag}.conf"
    site.write_text(
        f"server {{ listen 127.0.0.1:{web.port}; server_name {domain}; "
        f"location / {{ proxy_pass http://127.0.0.1:{port}; }} }}\n"
    )
    subprocess.run(
        ["nginx", "-p", str(web.prefix), "-c", str(web.conf), "-s", "reload"], check=True, capture_output=True
    )
    until_served(web, domain, text)
    took = time.perf_counter() - started
    HAND_STAGES.append({"build": built - started, "run": ran - built, "site": started + took - ran})
    site.unlink()
    docker("rm", "-f", name, check=False)
    if nocache:  # (a cached build keeps its image: its layers are the next run's cache)
        docker("rmi", tag, check=False)
    return took


def by_service(
    svc: ServiceProcess, web: NginxServer, app: str, folder: str, domain: str, text: str, *, nocache: bool
) -> float:
    """One deploy, followed as a client does (its event stream, no polling that would load the
    machine during the build), until its switch is done and the new content answers."""
    started = time.perf_counter()
    answer = httpx2.post(
        f"{svc.url}/apps/{app}/deploy",
        json={"context": folder, "domain": domain, "nocache": nocache, "drain_seconds": 0},
        headers=svc.headers,
        timeout=60,
    )
    answer.raise_for_status()
    task = answer.json()["task_id"]
    url = f"{svc.url}/tasks/{task}/events"
    with httpx2.stream("GET", url, params={"format": "ndjson"}, headers=svc.headers, timeout=300) as events:
        for line in events.iter_lines():
            event = json.loads(line) if line.strip() else {}
            if (event.get("stage"), event.get("status")) == ("switch", "completed") or event.get("final"):
                break
    until_served(web, domain, text)
    took = time.perf_counter() - started
    while True:
        status = httpx2.get(f"{svc.url}/tasks/status/{task}", headers=svc.headers).json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    STAGES.append((status.get("result") or {}).get("stages", {}))
    return took


STAGES: list[dict[str, float]] = []  # each deploy's stage timings, from its task's result
HAND_STAGES: list[dict[str, float]] = []  # the same, by hand


def compare(label: str, hand: list[float], ours: list[float], target: float) -> None:
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"{label}: by hand {h:.2f} s, deploy {o:.2f} s = {o / h:.2f}x (target <= {target}x)")
    print(f"    runs by hand {[round(x, 2) for x in hand]}, deploy {[round(x, 2) for x in ours]}")
    for who, timings in (("by hand", HAND_STAGES), ("deploy", STAGES)):
        names = dict.fromkeys(name for stages in timings for name in stages)
        medians = {name: round(statistics.median(s.get(name, 0.0) for s in timings), 3) for name in names}
        print(f"    {who} stages (medians, s): {medians}")
        timings.clear()


def failed_health_under_load(svc: ServiceProcess, web: NginxServer, contexts: Path) -> None:
    app, domain = f"bench-h-{secrets.token_hex(3)}", "health.bench.example.com"
    context(contexts / app, "live")
    httpx2.post(
        f"{svc.url}/apps/{app}/deploy",
        json={"context": app, "domain": domain},
        headers=svc.headers,
        timeout=60,
    ).raise_for_status()
    until_served(web, domain, "live")
    stop, answers, failures = threading.Event(), [0], []

    def loop() -> None:
        with httpx2.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    got = client.get(f"http://127.0.0.1:{web.port}/", headers={"Host": domain})
                    answers[0] += 1
                    if got.status_code != 200 or got.text.strip() != "live":
                        failures.append(str(got.status_code))
                except httpx2.HTTPError as exc:
                    failures.append(type(exc).__name__)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    context(contexts / f"{app}-bad", "bad")
    started = httpx2.post(
        f"{svc.url}/apps/{app}/deploy",
        json={
            "context": f"{app}-bad",
            "domain": domain,
            "health": {"path": "/nope", "expected_status": 200, "timeout": 3},
        },
        headers=svc.headers,
        timeout=60,
    ).json()
    while True:
        status = httpx2.get(f"{svc.url}/tasks/status/{started['task_id']}", headers=svc.headers).json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    print(
        f"failed health check under load: task {status['status']} at {status['stage']}, "
        f"{answers[0]} requests, {len(failures)} failed (target 0), previous release still served"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    began = time.time() - 1
    work = Path(tempfile.mkdtemp(prefix="dm-bench-deploy-"))
    contexts = work / "contexts"
    with (
        nginx(work / "nginx") as web,
        service(
            DM_CONTEXT_ROOTS=f'["{contexts}"]',
            DM_SWITCH_DRAIN_SECONDS="0",
            DM_SWITCH_STOP_TIMEOUT="1",  # (busybox httpd as PID 1 ignores SIGTERM)
            **web.env(),
        ) as svc,
    ):
        hand, ours = [], []
        for run in range(args.runs):
            text = f"v{run}-{secrets.token_hex(2)}"
            context(contexts / "small", text)
            context(contexts / "small-hand", f"{text}-h")  # (neither reuses the other's last step)
            if run % 2:
                ours.append(
                    by_service(
                        svc, web, "bench-small", "small", "small.bench.example.com", text, nocache=True
                    )
                )
                hand.append(
                    by_hand(web, contexts / "small-hand", "hand.bench.example.com", f"{text}-h", nocache=True)
                )
            else:
                hand.append(
                    by_hand(web, contexts / "small-hand", "hand.bench.example.com", f"{text}-h", nocache=True)
                )
                ours.append(
                    by_service(
                        svc, web, "bench-small", "small", "small.bench.example.com", text, nocache=True
                    )
                )
        compare("4-step app with a domain, no cache", hand, ours, 1.05)
        if not args.skip_big:
            big = work / "big.bin"
            with big.open("wb") as out:
                for _ in range(args.big_mib):
                    out.write(os.urandom(1 << 20))
            context(contexts / "big", "warm", big=big)
            by_hand(web, contexts / "big", "hand-big.bench.example.com", "warm", nocache=False)  # the cache
            hand, ours = [], []
            for run in range(max(args.runs // 2, 2)):
                text = f"big{run}-{secrets.token_hex(2)}"
                context(contexts / "big", text, big=big)
                context(contexts / "big-hand", f"{text}-h", big=big)
                order = ("hand", "ours") if run % 2 == 0 else ("ours", "hand")  # alternating
                for who in order:
                    if who == "hand":
                        hand.append(
                            by_hand(
                                web,
                                contexts / "big-hand",
                                "hand-big.bench.example.com",
                                f"{text}-h",
                                nocache=False,
                            )
                        )
                    else:
                        domain = "big.bench.example.com"
                        ours.append(by_service(svc, web, "bench-big", "big", domain, text, nocache=False))
            compare(f"app with a {args.big_mib} MiB layer, cached build", hand, ours, 1.10)
        failed_health_under_load(svc, web, contexts)
    leave_engine_clean(began)
    subprocess.run(["rm", "-rf", str(work)], check=False)


def leave_engine_clean(since: float) -> None:
    """Every container and image this benchmark made is named bench-...: remove them, and the
    untagged images made since it began (earlier versions of its tags)."""
    containers = docker("ps", "-aq", "--filter", "name=^bench-").stdout.split()
    if containers:
        docker("rm", "-f", *containers, check=False)
    images = docker("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=bench-*").stdout
    if images.split():
        docker("rmi", *images.split(), check=False)
    dangling = docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
    if dangling:
        described = docker("image", "inspect", "--format", "{{.Id}} {{.Created}}", *dangling).stdout
        ours = [
            image_id
            for image_id, created in (line.split(" ", 1) for line in described.splitlines())
            if datetime.fromisoformat(created[:26].rstrip("Z")).replace(tzinfo=UTC).timestamp() >= since
        ]
        if ours:
            docker("rmi", *ours, check=False)


if __name__ == "__main__":
    main()
