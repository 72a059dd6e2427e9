"""Swarm routes against a real three-node swarm (tests/swarm_lab.py: an extra dockerd per node in
network namespaces of its own): a swarm made and joined through the services, a worker's answers
naming its manager, a drain that answers when the replicas run elsewhere, and node removal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import ServiceProcess, service_process
from tests.swarm_lab import SwarmLab, busybox_rootfs, swarm_lab

pytestmark = pytest.mark.docker

IMAGE = "dmsw-bb:lab"


@pytest.fixture(scope="module")
def lab() -> Iterator[SwarmLab]:
    with swarm_lab(3) as made:
        yield made


@pytest.fixture(scope="module")
def services(lab: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    """This service on the first two nodes' engines (a host each, as operators run it)."""
    root = tmp_path_factory.mktemp("swarm")
    with (
        service_process(root / "n1", root / "n1.log", DM_DOCKER_HOST=lab.nodes[0].docker_host) as first,
        service_process(root / "n2", root / "n2.log", DM_DOCKER_HOST=lab.nodes[1].docker_host) as second,
    ):
        yield [first, second]


def cli(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env |= {"DM_URL": service.url, "DM_TOKEN": service.headers["Authorization"][7:], "HOME": "/nonexistent"}
    argv = [sys.executable, "-m", "docker_manager", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def call(service: ServiceProcess, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    kwargs.setdefault("headers", service.headers)
    return httpx2.request(method, f"{service.url}{path}", timeout=180, **kwargs)


def test_a_swarm_made_and_joined_through_the_services(lab: SwarmLab, services: list[ServiceProcess]) -> None:
    first, second = services
    n1, n2, n3 = lab.nodes
    outside = call(first, "GET", "/swarm").json()
    assert (outside["state"], outside["role"], outside["nodes"]) == ("inactive", None, None)
    for body in (
        {"advertise_addr": "eth0"},
        {"advertise_addr": "n1.example.com"},
        {"advertise_addr": n1.address, "address_pool": "10.0.0.0/30"},
        {"advertise_addr": n1.address, "extra": 1},
        {"advertise_addr": "fe80::1%eth0"},
        {"advertise_addr": "127.0.0.1"},
        {"advertise_addr": "0.0.0.0"},
        {"advertise_addr": n1.address, "address_pool": "0.0.0.0/0"},
        {"advertise_addr": n1.address, "address_pool": "10.20.0.0/255.255.0.0"},
        {"advertise_addr": n1.address, "address_pool": "10.20.0.0/24", "subnet_size": 16},
    ):
        refused = call(first, "POST", "/swarm/init", json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert call(first, "GET", "/swarm").json()["state"] == "inactive"  # nothing changed
    made = call(first, "POST", "/swarm/init", json={"advertise_addr": n1.address})
    assert made.status_code == 200, made.text
    assert made.json()["role"] == "manager" and len(made.json()["nodes"]) == 1
    assert call(first, "POST", "/swarm/init", json={"advertise_addr": n1.address}).status_code == 409
    # Only an admin may hand out a join token.
    reader = call(first, "POST", "/auth/tokens", json={"name": "ro", "scopes": ["read"]}).json()["token"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert call(first, "GET", "/swarm/join-token", headers=as_reader).status_code == 403
    assert call(first, "GET", "/swarm", headers=as_reader).status_code == 200
    token = call(first, "GET", "/swarm/join-token").json()
    assert token["token"].startswith("SWMTKN-1-") and token["managers"] == [f"{n1.address}:2377"]
    bad = {"remote_addrs": [f"{n1.address}:2377"], "join_token": "SWMTKN-1-x", "advertise_addr": n2.address}
    assert call(second, "POST", "/swarm/join", json=bad).status_code == 422
    body = {
        "remote_addrs": [f"{n1.address}:2377"],
        "join_token": token["token"],
        "advertise_addr": n2.address,
    }
    joined = call(second, "POST", "/swarm/join", json=body)
    assert joined.status_code == 200, joined.text
    assert joined.json()["role"] == "worker" and joined.json()["nodes"] is None
    n3.docker("swarm", "join", "--token", token["token"], f"{n1.address}:2377")  # by hand, as an operator
    cluster = call(first, "GET", "/swarm").json()
    assert [(n["hostname"], n["role"], n["state"]) for n in cluster["nodes"]] == [
        (n1.name, "manager", "ready"),
        (n2.name, "worker", "ready"),
        (n3.name, "worker", "ready"),
    ]
    assert cluster["nodes"][0]["leader"] and cluster["nodes"][1]["addr"] == n2.address
    # The terminal and the dashboard show the same nodes.
    shown = cli(first, "nodes")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (n1.name, "manager", "yes"),
        (n2.name, "worker", "no"),
        (n3.name, "worker", "no"),
    ]
    on_worker_cli = cli(second, "nodes")
    assert on_worker_cli.returncode == 0 and f"managers: {n1.address}:2377" in on_worker_cli.stdout
    with httpx2.Client(base_url=first.url, timeout=30, headers={"Origin": first.url}) as browser:
        browser.post("/ui/login", data={"token": first.headers["Authorization"][7:]})
        nodes_page = browser.get("/ui/nodes")
        assert nodes_page.status_code == 200 and all(n.name in nodes_page.text for n in lab.nodes)
        assert "leader" in nodes_page.text
    # A worker's service: cluster operations answer with a manager to ask.
    on_worker = call(second, "GET", "/swarm/join-token")
    assert on_worker.status_code == 409 and on_worker.json()["code"] == "not_a_swarm_manager"
    assert f"{n1.address}:2377" in on_worker.json()["detail"]
    node_id = cluster["nodes"][2]["id"]
    drain = call(second, "POST", f"/swarm/nodes/{node_id}/availability", json={"availability": "drain"})
    assert drain.status_code == 409 and n1.address in drain.json()["detail"]


def test_drain_waits_for_the_replicas_and_removal_for_the_drain(
    lab: SwarmLab, services: list[ServiceProcess], tmp_path: Path
) -> None:
    first = services[0]
    n1, n2, n3 = lab.nodes
    lab.load_image(IMAGE, busybox_rootfs(tmp_path / "rootfs.tar"))
    n1.docker(
        "service", "create", "--detach=false", "--name", "dmswt-sleep", "--replicas", "2",
        "--constraint", "node.role==worker", "--stop-grace-period", "1s", "--no-resolve-image",
        IMAGE, "/bin/busybox", "sleep", "3600",
    )  # fmt: skip
    try:
        nodes = {n["hostname"]: n for n in call(first, "GET", "/swarm").json()["nodes"]}
        assert nodes[n2.name]["running_replicas"] + nodes[n3.name]["running_replicas"] == 2
        target = nodes[n3.name]
        assert target["running_replicas"] >= 1, nodes
        refused = call(first, "DELETE", f"/swarm/nodes/{target['id']}")
        assert refused.status_code == 409 and "drain it first" in refused.json()["detail"]
        assert call(first, "DELETE", "/swarm/nodes/not-a-node-id").status_code == 422
        started = time.monotonic()
        drained = call(
            first, "POST", f"/swarm/nodes/{target['id']}/availability", json={"availability": "drain"}
        )
        assert drained.status_code == 200, drained.text
        answer = drained.json()
        assert answer["moved"] == target["running_replicas"] and answer["node"]["availability"] == "drain"
        # It answered once the replicas ran elsewhere: the engine says so too.
        running = n1.docker(
            "service",
            "ps",
            "dmswt-sleep",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
        ).stdout.splitlines()
        assert len(running) == 2 and all(
            line.startswith(n2.name) and "Running" in line for line in running
        ), running
        assert time.monotonic() - started < 120
        paused = call(
            first, "POST", f"/swarm/nodes/{nodes[n2.name]['id']}/availability", json={"availability": "pause"}
        )
        assert paused.status_code == 200 and paused.json()["node"]["availability"] == "pause"
        # The audit log says which node and what was asked.
        wanted = {"node_id": nodes[n2.name]["id"], "availability": "pause"}
        deadline = time.monotonic() + 10
        while not any(
            e["target"] == wanted
            for e in call(first, "GET", "/audit", params={"limit": 20}).json()["entries"]
        ):
            assert time.monotonic() < deadline, "no audit entry names the node"
            time.sleep(0.2)
        removed = call(first, "DELETE", f"/swarm/nodes/{target['id']}")
        assert removed.status_code == 200, removed.text
        left = [n["hostname"] for n in call(first, "GET", "/swarm").json()["nodes"]]
        assert left == [n1.name, n2.name]
    finally:
        n1.docker("service", "rm", "dmswt-sleep", check=False)
