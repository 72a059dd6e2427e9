"""Swarm apps on a real three-node swarm (tests/swarm_lab.py), through the service pointed at the
manager's engine and a private nginx in the root namespace: the image pushed to a private registry
in the first node's namespace (htpasswd: the workers pull only with the forwarded credentials),
replicas on every node reached by node address and host port, a rolling release and a failing
one under a request loop, scale, rollback, and a node lost with its replicas on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import NginxServer, ServiceProcess, nginx, service_process
from tests.swarm_lab import SwarmLab, busybox_rootfs, swarm_lab

pytestmark = pytest.mark.docker

RAW, BASE = "dmsw-raw:lab", "dmsw-base:lab"
APP, DOMAIN = "shop", "shop.swarm.example.com"


@dataclass
class Lab:
    swarm: SwarmLab
    service: ServiceProcess
    nginx: NginxServer
    contexts: Path
    registry: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        kwargs.setdefault("headers", self.service.headers)
        return httpx2.request(method, f"{self.service.url}{path}", timeout=60, **kwargs)

    def context(self, text: str) -> str:
        folder = self.contexts / text
        folder.mkdir(exist_ok=True)
        (folder / "Dockerfile").write_text(
            f"FROM {BASE}\nRUN mkdir -p /www && echo {text} > /www/index.html\n"
            'CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]\n'  # (-v: a line per request)
        )
        return text

    def deploy(self, body: dict[str, Any], app: str = APP) -> dict[str, Any]:
        started = self.call("POST", f"/apps/{app}/deploy", json={"mode": "swarm", **body})
        assert started.status_code == 202, started.text
        return self.final(started.json()["task_id"])

    def final(self, task_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.call("GET", f"/tasks/status/{task_id}").json()
            if status["status"] not in ("queued", "running"):
                return status
            assert time.monotonic() < deadline, f"task {task_id} still {status['status']}"
            time.sleep(0.2)

    def app(self, app: str = APP) -> dict[str, Any]:
        return dict(self.call("GET", f"/apps/{app}").json())

    def site(self) -> str:
        answer = httpx2.get(f"http://127.0.0.1:{self.nginx.port}/", headers={"Host": DOMAIN}, timeout=10)
        return f"{answer.status_code} {answer.text.strip()}"

    def servers(self) -> list[str]:
        header = (self.nginx.sites / f"{APP}.conf").read_text().splitlines()[1]
        found = [part for part in header.split() if part.startswith("servers=")]
        return found[0].removeprefix("servers=").split(",") if found else []


@dataclass
class Loop:
    """Clients asking for the domain through nginx, a new connection each time, never retrying."""

    lab: Lab
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.lab.site()
                self.answers.append(answer)
                if not answer.startswith("200 "):
                    self.failures.append(answer)
            except httpx2.HTTPError as exc:
                self.failures.append(type(exc).__name__)
            time.sleep(0.01)

    def __enter__(self) -> Loop:
        self.threads = [threading.Thread(target=self.run) for _ in range(3)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("swarm-apps")
    contexts = root / "contexts"
    contexts.mkdir()
    with swarm_lab(3) as swarm:
        swarm.init()
        manager = swarm.nodes[0]
        manager.docker("import", str(busybox_rootfs(root / "rootfs.tar")), RAW)
        (root / "base").mkdir()
        (root / "base" / "Dockerfile").write_text(
            f'FROM {RAW}\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        )
        manager.docker("build", "-q", "-t", BASE, str(root / "base"), timeout=120)
        with (
            swarm.registry() as registry,
            nginx(root / "nginx") as web,
            service_process(
                root / "data",
                root / "server.log",
                DM_DOCKER_HOST=manager.docker_host,
                DM_CONTEXT_ROOTS=json.dumps([str(contexts)]),
                DM_SWARM_REGISTRY=f"{registry}/apps",
                DM_SWARM_REGISTRY_USERNAME="lab",
                DM_SWARM_REGISTRY_PASSWORD="lab-pass-123",
                DM_SWARM_POLL_INTERVAL="0.5",
                DM_SWARM_ROLLOUT_TIMEOUT="30",  # (the deadline test below waits it out)
                **web.env(),
            ) as service,
        ):
            yield Lab(swarm, service, web, contexts, registry)


def test_a_swarm_app_rolls_out_scales_and_rolls_back(lab: Lab) -> None:
    first = lab.deploy(
        {"context": lab.context("v1"), "replicas": 3, "domain": DOMAIN, "health": {"timeout": 10}}
    )
    assert first["status"] == "completed", first
    result = first["result"]
    assert result["mode"] == "swarm" and result["release"] == 1 and len(result["servers"]) == 3, result
    assert result["image"].startswith(f"{lab.registry}/apps/{APP}@sha256:"), result
    app = lab.app()
    assert app["mode"] == "swarm" and app["live_release"] == 1 and app["replicas_desired"] == 3, app
    nodes = {replica["node"] for replica in app["replicas"] if replica["state"] == "running"}
    assert len(nodes) >= 2, app["replicas"]  # (workers pulled the image: the credentials were forwarded)
    assert sorted(lab.servers()) == sorted(result["servers"])
    assert lab.site() == "200 v1"
    assert "@sha256:" in lab.call("GET", f"/apps/{APP}/releases").json()[0]["tag"]

    # A rolling release under traffic: no request fails, the new version serves at the end.
    with Loop(lab) as loop:
        second = lab.deploy({"context": lab.context("v2"), "health": {"timeout": 10}})
        time.sleep(1.5)
    assert second["status"] == "completed", second
    assert loop.failures == [] and len(loop.answers) > 50, loop.failures[:5]
    assert set(loop.answers) <= {"200 v1", "200 v2"} and loop.answers[-1] == "200 v2"
    assert lab.app()["live_release"] == 2
    # The app's log: every replica's lines merged, each with its node and slot.
    log = lab.call("GET", f"/apps/{APP}/logs", params={"tail": 20})
    assert log.status_code == 200 and log.headers["content-type"].startswith("application/x-ndjson"), log.text
    records = [json.loads(line) for line in log.text.splitlines() if line]
    lines = [r for r in records if "line" in r]
    assert len({r["node"] for r in lines}) >= 2 and all(isinstance(r["slot"], int) for r in lines), records[
        :5
    ]
    assert lab.call("GET", "/apps/nothing-here/logs").status_code == 404

    # A release whose health check fails: the engine rolls it back, nothing fails, v2 serves.
    with Loop(lab) as loop:
        failing = lab.deploy({"context": lab.context("v3"), "health": {"path": "/missing", "timeout": 3}})
    assert failing["status"] == "error" and failing["stage"] == "rollout", failing
    assert "rolled the release back" in failing["error"] or "not converged" in failing["error"], failing
    assert loop.failures == [] and set(loop.answers) == {"200 v2"}, (loop.failures[:5], set(loop.answers))
    assert [r["release"] for r in lab.call("GET", f"/apps/{APP}/releases").json()] == [2, 1]
    assert lab.app()["live_release"] == 2

    # Scale: the site follows the replicas.
    scaled = lab.call("POST", f"/apps/{APP}/scale", json={"replicas": 1})
    assert scaled.status_code == 202 and scaled.json()["from_replicas"] == 3, scaled.text
    assert lab.final(scaled.json()["task_id"])["status"] == "completed"
    _eventually(lambda: len(lab.servers()) == 1, "the site has one server")
    assert lab.site() == "200 v2" and lab.app()["replicas_desired"] == 1
    # The dashboard's app page and the terminal show the replicas.
    with httpx2.Client(base_url=lab.service.url, timeout=30, headers={"Origin": lab.service.url}) as browser:
        browser.post("/ui/login", data={"token": lab.service.headers["Authorization"][7:]})
        page = browser.get(f"/ui/apps/{APP}").text
    replica = lab.app()["replicas"][0]
    table = page.split('class="replicas"', 1)[1].split("</table>", 1)[0]
    assert replica["node"] in table and replica["address"] in table, table
    assert "swarm" in browser_apps(lab)
    listed = cli(lab, "apps")
    assert listed.returncode == 0 and " swarm " in listed.stdout, listed
    # A followed log opened with one replica: the replica the scale adds logs with its slot too.
    with httpx2.stream(
        "GET",
        f"{lab.service.url}/apps/{APP}/logs",
        params={"follow": "true", "tail": 0},
        headers=lab.service.headers,
        timeout=60,
    ) as followed:
        scaled_cli = cli(lab, "scale", APP, "2", "--json")
        assert scaled_cli.returncode == 0, scaled_cli.stderr
        assert len([r for r in json.loads(scaled_cli.stdout) if r["state"] == "running"]) == 2
        _eventually(lambda: len(lab.servers()) == 2, "the site has two servers")
        with Loop(lab) as loop:  # (requests through the site: each replica logs a line per request)
            seen: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            for line in followed.iter_lines():
                record = json.loads(line)
                if "line" in record:
                    seen[record["task"]] = record["slot"]
                if len(seen) >= 2 or time.monotonic() > deadline:
                    break
    assert loop.failures == [], loop.failures[:5]
    assert len(seen) >= 2 and all(isinstance(slot, int) for slot in seen.values()), seen

    # Rollback to release 1: v1 again, on as many replicas as the app has now.
    back = lab.call("POST", f"/apps/{APP}/rollback", json={"release": 1})
    assert back.status_code == 200, back.text
    done = lab.final(back.json()["task_id"])
    assert done["status"] == "completed", done
    assert lab.site() == "200 v1"
    newest = lab.call("GET", f"/apps/{APP}/releases").json()[0]
    assert (newest["release"], newest["source"], newest["restored_from"], newest["status"]) == (
        3,
        "rollback",
        1,
        "live",
    )
    metrics = lab.call("GET", "/metrics").text
    assert f'dm_swarm_replicas{{app_id="{APP}",state="running"}} 2.0' in metrics


def test_wrong_asks_change_nothing(lab: Lab) -> None:
    before = lab.app()
    refused = {
        "port": {"context": lab.context("x"), "port": 18080},
        "placement": {"context": lab.context("x"), "placement": ["node.role==worker; rm -rf /"]},
        "replicas": {"context": lab.context("x"), "replicas": 65},
    }
    for what, body in refused.items():
        answer = lab.call("POST", f"/apps/{APP}/deploy", json={"mode": "swarm", **body})
        assert answer.status_code == 422, (what, answer.text)
    # One app is one kind: a swarm app is not deployed as a container, nor the other way round.
    container = lab.call("POST", f"/apps/{APP}/deploy", json={"context": lab.context("x")})
    assert container.status_code == 409 and container.json()["field"] == "mode", container.text
    reader = lab.call("POST", "/auth/tokens", json={"name": "ro", "scopes": ["read"]}).json()["token"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert lab.call("POST", f"/apps/{APP}/scale", json={"replicas": 3}, headers=as_reader).status_code == 403
    assert lab.call("POST", f"/apps/{APP}/scale", json={"replicas": -1}).status_code == 422
    # A token limited to other apps reaches none of this one's operations.
    made = lab.call(
        "POST", "/auth/tokens", json={"name": "ci", "scopes": ["read", "operate"], "apps": ["other-*"]}
    )
    as_other = {"Authorization": f"Bearer {made.json()['token']}"}
    for path, body in (
        (f"/apps/{APP}/scale", {"replicas": 3}),
        (f"/apps/{APP}/deploy", {"mode": "swarm", "context": lab.context("x")}),
        (f"/apps/{APP}/rollback", {"release": 1}),
    ):
        answer = lab.call("POST", path, json=body, headers=as_other)
        assert answer.status_code == 403 and answer.json()["code"] == "app_not_allowed", (path, answer.text)
    # A first deploy that fails leaves no service behind.
    fresh = f"{APP}-first"
    failed = lab.deploy(
        {"context": lab.context("f1"), "health": {"path": "/missing", "timeout": 3}}, app=fresh
    )
    assert failed["status"] == "error" and failed["stage"] == "rollout", failed
    listed = lab.swarm.nodes[0].docker("service", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"dm-{fresh}" not in listed, listed
    assert lab.call("GET", f"/apps/{fresh}").status_code == 404
    after = lab.app()
    assert (after["live_release"], after["replicas_desired"]) == (
        before["live_release"],
        before["replicas_desired"],
    )


def test_a_release_that_cannot_be_placed_is_rolled_back_at_its_deadline(lab: Lab) -> None:
    """No node satisfies the new release's placement: its start-first replica waits forever in
    Swarm. At DM_SWARM_ROLLOUT_TIMEOUT the service rolls it back, waits for that, and says so; the
    previous release serves all along, and the service is not left paused."""
    before = lab.app()
    served = lab.site()
    with Loop(lab) as loop:
        stuck = lab.deploy({"context": lab.context("v9"), "placement": ["node.labels.dm-nowhere==yes"]})
    assert stuck["status"] == "error" and stuck["stage"] == "rollout", stuck
    assert "not converged after 30 s" in stuck["error"], stuck["error"]
    assert "rolled back (rollback_completed)" in stuck["error"], stuck["error"]
    assert loop.failures == [] and set(loop.answers) == {served}, (loop.failures[:5], set(loop.answers))
    manager = lab.swarm.nodes[0]
    shown = manager.docker(
        "service",
        "inspect",
        "--format",
        "{{json .UpdateStatus.State}} {{json .Spec.TaskTemplate.Placement}}",
        f"dm-{APP}",
    ).stdout
    assert shown.startswith('"rollback_completed"') and "dm-nowhere" not in shown, shown
    assert lab.app()["live_release"] == before["live_release"]


def test_a_rollout_cancelled_midway_goes_back_to_what_served(lab: Lab) -> None:
    before, served = lab.app(), lab.site()
    started = lab.call(
        "POST",
        f"/apps/{APP}/deploy",
        json={"mode": "swarm", "context": lab.context("v8"), "placement": ["node.labels.dm-nowhere==yes"]},
    )
    assert started.status_code == 202, started.text
    task_id = started.json()["task_id"]
    _eventually(
        lambda: lab.call("GET", f"/tasks/status/{task_id}").json()["stage"] == "rollout", "the rollout"
    )
    assert lab.call("POST", f"/tasks/{task_id}/cancel").status_code == 200
    assert lab.final(task_id)["status"] == "cancelled"
    manager = lab.swarm.nodes[0]
    _eventually(
        lambda: (
            "dm-nowhere"
            not in manager.docker(
                "service", "inspect", "--format", "{{json .Spec.TaskTemplate.Placement}}", f"dm-{APP}"
            ).stdout
        ),
        "the previous spec back",
    )
    assert lab.site() == served and lab.app()["live_release"] == before["live_release"]


def test_a_drained_node_costs_no_request(lab: Lab) -> None:
    """A worker with a replica drained through the service: the answer comes once its replicas
    run elsewhere, the site follows, and no request through the domain fails meanwhile."""
    scaled = lab.call("POST", f"/apps/{APP}/scale", json={"replicas": 3})
    assert lab.final(scaled.json()["task_id"])["status"] == "completed"
    _eventually(lambda: len(lab.servers()) == 3, "three servers")
    replicas = lab.app()["replicas"]
    worker = next(n for n in lab.swarm.nodes[1:] if any(r["node"] == n.name for r in replicas))
    node_id = next(n["id"] for n in lab.call("GET", "/swarm").json()["nodes"] if n["hostname"] == worker.name)
    served = lab.site()
    with Loop(lab) as loop:
        time.sleep(1)
        drained = lab.call("POST", f"/swarm/nodes/{node_id}/availability", json={"availability": "drain"})
        assert drained.status_code == 200, drained.text
        _eventually(
            lambda: len(lab.servers()) == 3 and not any(worker.address in s for s in lab.servers()),
            "the site's servers off the drained node",
        )
        time.sleep(1)
    back = lab.call("POST", f"/swarm/nodes/{node_id}/availability", json={"availability": "active"})
    assert back.status_code == 200, back.text
    assert loop.failures == [], loop.failures[:5]
    assert len(loop.answers) > 50 and set(loop.answers) == {served}


def test_a_lost_node_costs_no_request(lab: Lab) -> None:
    """A worker's engine killed with a replica on it (and its link down): Swarm places the replica
    elsewhere, the site follows, and no request through the domain fails meanwhile."""
    scaled = lab.call("POST", f"/apps/{APP}/scale", json={"replicas": 3})
    assert lab.final(scaled.json()["task_id"])["status"] == "completed"
    _eventually(lambda: len(lab.servers()) == 3, "three servers")
    replicas = lab.app()["replicas"]
    workers = [n for n in lab.swarm.nodes[1:] if any(r["node"] == n.name for r in replicas)]
    assert workers, replicas
    lost = workers[0]
    with Loop(lab) as loop:
        time.sleep(1)
        lab.swarm.stop_node(lost)
        started = time.monotonic()
        _eventually(
            lambda: (
                all(r["node"] != lost.name for r in lab.app()["replicas"] if r["state"] == "running")
                and len(lab.servers()) == 3
                and not any(lost.address in server for server in lab.servers())
            ),
            "the replicas placed elsewhere and the site following them",
            timeout=90,
        )
        moved = time.monotonic() - started
        (lab.contexts.parent / "node-loss-seconds").write_text(f"{moved:.1f}\n")
        time.sleep(1)
    assert loop.failures == [], loop.failures[:5]
    assert len(loop.answers) > 50 and set(loop.answers) == {"200 v1"}
    assert moved < 30, f"placement shown after {moved:.1f} s"
    # The doctor says which node is gone and what to do.
    checks = {c["name"]: c for c in lab.call("GET", "/system/doctor").json()["checks"]}
    assert checks[f"swarm node {lost.name}"]["ok"] is False, checks
    assert "DELETE /swarm/nodes/" in checks[f"swarm node {lost.name}"]["fix"]
    assert checks[f"swarm node {lab.swarm.nodes[0].name}"]["ok"] is True


def cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    token = lab.service.headers["Authorization"][7:]
    env |= {"DM_URL": lab.service.url, "DM_TOKEN": token, "HOME": "/nonexistent", "TERM": "dumb"}
    argv = [sys.executable, "-m", "docker_manager", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def browser_apps(lab: Lab) -> str:
    with httpx2.Client(base_url=lab.service.url, timeout=30, headers={"Origin": lab.service.url}) as browser:
        browser.post("/ui/login", data={"token": lab.service.headers["Authorization"][7:]})
        return browser.get("/ui/apps").text


def _eventually(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached: {what}"
        time.sleep(0.25)
