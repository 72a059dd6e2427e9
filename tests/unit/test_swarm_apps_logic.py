"""The pure parts of swarm apps: the service spec a deploy writes, the replicas read back, the site
header that records them, and the deploy body's rules."""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
from types import SimpleNamespace
from typing import cast

import pytest
from pydantic import ValidationError

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.site_header import parse_header
from docker_manager.errors import EngineError
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.services.swarm.apps import plan_of
from docker_manager.services.swarm.options import SwarmOptions
from docker_manager.services.swarm.replicas import node_address, replica_of, servers_of, swarm_upstream
from docker_manager.services.swarm.rollout import UPDATE_RETRIES, Written, write_spec
from docker_manager.services.swarm.spec import (
    SECOND,
    SwarmPlan,
    for_release,
    recorded,
    repository_name,
    service_name,
    service_spec,
    spec_task_id,
)


def plan(**changes: object) -> SwarmPlan:
    values: dict[str, object] = {
        "app_id": "shop",
        "task_id": "deploy-abc",
        "image": "10.0.0.5:5000/apps/shop@sha256:" + "a" * 64,
        "container_port": 8080,
        "replicas": 3,
        "env": {"SECRET": "s3cret"},
        **changes,
    }
    return SwarmPlan(**values)  # type: ignore[arg-type]


def test_the_spec_rolls_out_start_first_and_rolls_back_by_itself() -> None:
    spec = service_spec(plan(placement=("node.role==worker",), memory=256 << 20, nano_cpus=500_000_000))
    assert spec["Name"] == "dm-shop" and spec["Mode"] == {"Replicated": {"Replicas": 3}}
    assert (
        spec["UpdateConfig"]["Order"] == "start-first" and spec["UpdateConfig"]["FailureAction"] == "rollback"
    )
    assert spec["UpdateConfig"]["Parallelism"] == 1 and spec["RollbackConfig"]["Order"] == "start-first"
    # A rollback meeting a failing replica goes on to the end: never a service left paused.
    assert spec["RollbackConfig"]["FailureAction"] == "continue"
    # No routing mesh (IPVS) and no fixed host port: each replica on a port its node chooses.
    assert spec["EndpointSpec"] == {
        "Mode": "dnsrr",
        "Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishMode": "host"}],
    }
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Labels"]["docker-manager.task_id"] == "deploy-abc"
    assert container["Env"] == ["SECRET=s3cret"]
    assert spec["TaskTemplate"]["Resources"]["Limits"] == {"MemoryBytes": 256 << 20, "NanoCPUs": 500_000_000}
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==worker"]
    assert spec_task_id({"Spec": spec}) == "deploy-abc"


def test_the_health_check_is_quoted_and_sized_to_the_deploys() -> None:
    check = service_spec(plan(health_path="/a'b$(id)", health_interval=0.5, health_timeout=6))[
        "TaskTemplate"
    ]["ContainerSpec"]["Healthcheck"]
    command = check["Test"][1]
    url = shlex.quote("http://127.0.0.1:8080/a'b$(id)")
    assert command == f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"
    assert shlex.split(command)[4] == "http://127.0.0.1:8080/a'b$(id)"  # one word, never run
    assert check["Interval"] == SECOND and check["Retries"] == 6  # (at least a second apart)


def test_a_release_keeps_the_spec_without_env_and_runs_it_again() -> None:
    spec = service_spec(plan())
    kept = recorded(spec)
    assert (
        "Env" not in kept["swarm"]["TaskTemplate"]["ContainerSpec"]
        and "Env" in spec["TaskTemplate"]["ContainerSpec"]
    )
    again = for_release(kept, ["SECRET=s3cret"], "rollback-xyz")
    assert again["TaskTemplate"]["ContainerSpec"]["Env"] == ["SECRET=s3cret"]
    assert spec_task_id({"Spec": again}) == "rollback-xyz"
    assert "Env" not in kept["swarm"]["TaskTemplate"]["ContainerSpec"]  # (a copy was changed)


def test_names_fit_the_engine_and_the_registry() -> None:
    long_id = "a" * 63
    assert len(service_name(long_id)) <= 63 and service_name(long_id) != service_name("a" * 62 + "b")
    assert repository_name("shop") == "shop"
    assert repository_name("Web") != repository_name("web") and repository_name("Web").startswith("web-")
    assert repository_name("my_app.v2").startswith("my-app-v2-")


def test_replicas_answer_on_their_nodes_address_and_own_port() -> None:
    nodes = {
        "m": node_address({"ID": "m", "Status": {"State": "ready", "Addr": "0.0.0.0"},
                           "ManagerStatus": {"Addr": "10.0.0.11:2377"}, "Description": {"Hostname": "n1"}}),
        "w": node_address({"ID": "w", "Status": {"State": "ready", "Addr": "10.0.0.12"},
                           "Description": {"Hostname": "n2"}}),
        "d": node_address({"ID": "d", "Status": {"State": "down", "Addr": "10.0.0.13"}}),
    }  # fmt: skip
    assert nodes["m"].addr == "10.0.0.11" and nodes["m"].ready and not nodes["d"].ready

    def task(node: str, state: str, port: int, desired: str = "running") -> dict[str, object]:
        return {
            "ID": f"t-{node}-{port}",
            "Slot": 1,
            "NodeID": node,
            "DesiredState": desired,
            "Status": {"State": state, "PortStatus": {"Ports": [{"PublishedPort": port, "TargetPort": 80}]}},
            "Spec": {"ContainerSpec": {"Labels": {"docker-manager.task_id": "deploy-1"}}},
        }

    replicas = [
        replica_of(task("w", "running", 30001), nodes),
        replica_of(task("m", "running", 30000), nodes),
        replica_of(task("d", "running", 30002), nodes),  # its node is down
        replica_of(task("w", "starting", 30003), nodes),  # its health check has not passed
        replica_of(task("w", "running", 30004, desired="shutdown"), nodes),  # being replaced
    ]
    assert replicas[0].release_task == "deploy-1" and replicas[1].node == "n1"
    assert servers_of(replicas) == ("10.0.0.11:30000", "10.0.0.12:30001")


def test_the_site_header_records_the_service_and_its_servers() -> None:
    upstream = swarm_upstream("dm-shop", ("10.0.0.11:30000", "10.0.0.12:30001"))
    assert (upstream.host, upstream.port) == ("10.0.0.11", 30000)
    line = (
        "# managed-by=docker-manager app_id=shop domain=shop.example.com port=30000 upstream=10.0.0.11:30000"
        " kind=managed service=dm-shop servers=10.0.0.11:30000,10.0.0.12:30001"
    )
    header = parse_header(line)
    assert header is not None and header.upstream.service == "dm-shop"
    assert header.upstream.servers == ("10.0.0.11:30000", "10.0.0.12:30001")
    assert swarm_upstream("dm-shop", ()).down
    hostile = line.replace("servers=10.0.0.11:30000", "servers=10.0.0.11:30000;include")
    parsed = parse_header(hostile)
    assert parsed is None or ";" not in ",".join(parsed.upstream.servers)


def test_the_deploy_body_rules_for_swarm() -> None:
    base = {"context": "shop", "mode": "swarm"}
    for bad in (
        {"port": 8080},  # a fixed host port: a start-first rollout could not converge
        {"export": True},
        {"replicas": 65},
        {"placement": ["node.role==worker\n"]},
        {"placement": ["node.labels.zone==a b"]},
        {"placement": ["engine.version>=20"]},
        {"mode": "container", "replicas": 2},
    ):
        with pytest.raises(ValidationError):
            DeployRequest.model_validate({**base, **bad})
    ok = DeployRequest.model_validate({**base, "replicas": 2, "placement": ["node.labels.zone != b"]})
    current = {"Spec": service_spec(plan(replicas=5, placement=("node.role==manager",)))}
    chosen = plan_of(ok, app_id="shop", task_id="deploy-2", image="i", current=current)
    assert (chosen.replicas, chosen.placement) == (2, ("node.labels.zone != b",))
    kept = plan_of(DeployRequest.model_validate(base), app_id="shop", task_id="t", image="i", current=current)
    assert (kept.replicas, kept.placement) == (5, ("node.role==manager",))


def test_the_registry_credentials_are_forwarded_and_never_shown() -> None:
    options = SwarmOptions(
        roots=None,  # type: ignore[arg-type]
        registry="10.0.0.5:5000/apps",
        registry_username="ci",
        registry_password="p4ss",
        rollout_timeout=60,
        poll_interval=1,
    )
    auth = json.loads(base64.urlsafe_b64decode(options.registry_auth or ""))
    assert auth == {"username": "ci", "password": "p4ss", "serveraddress": "10.0.0.5:5000"}
    assert "p4ss" not in repr(options)


def test_a_log_line_says_its_node_and_slot() -> None:
    from docker_manager.adapters.docker import StreamId
    from docker_manager.services.swarm.logs import MAX_LINE, _record
    from docker_manager.services.swarm.replicas import NodeAddress

    line = (
        "2026-12-07T07:08:35.1Z com.docker.swarm.node.id=n2,com.docker.swarm.service.id=s,"
        "com.docker.swarm.task.id=t7 GET / 200 with spaces"
    )
    nodes = {"n2": NodeAddress(hostname="worker-2", addr="10.0.0.12", ready=True)}
    record = _record(line, StreamId.STDERR, nodes, {"t7": 3})
    assert record == {
        "time": "2026-12-07T07:08:35.1Z",
        "node": "worker-2",
        "slot": 3,
        "task": "t7",
        "stream": "stderr",
        "line": "GET / 200 with spaces",
    }
    assert len(_record("t d " + "x" * (MAX_LINE * 2), StreamId.STDOUT, {}, {})["line"]) == MAX_LINE


class _Services:
    """A swarm's services API that answers "update out of sequence" while another writer is
    ahead, as the engine does (its version moved on)."""

    def __init__(self, conflicts: int, error: str = "rpc error: update out of sequence") -> None:
        self.version, self.conflicts, self.error = 7, conflicts, error
        self.tried: list[int] = []

    async def inspect(self, name: str) -> dict[str, object]:
        return {"ID": "svc1", "Version": {"Index": self.version}, "Spec": {"Name": name}}

    async def update(self, service: str, *, version: int, spec: dict[str, object], auth: str | None) -> None:
        self.tried.append(version)
        if self.conflicts:
            self.conflicts -= 1
            self.version += 1  # (the other writer's update)
            raise EngineError(self.error)


def _written(services: _Services) -> Written:
    docker = cast(Docker, SimpleNamespace(services=services))
    return asyncio.run(write_spec(docker, "dm-shop", {"Name": "dm-shop"}, auth=None))


def test_an_update_out_of_sequence_is_written_again_at_the_version_read_again() -> None:
    services = _Services(conflicts=2)
    assert _written(services) == Written("svc1", created=False, started_before=None)
    assert services.tried == [7, 8, 9]
    # A writer that keeps winning: the engine's answer, after a bounded number of tries.
    endless = _Services(conflicts=100)
    with pytest.raises(EngineError, match="out of sequence"):
        _written(endless)
    assert len(endless.tried) == UPDATE_RETRIES
    # Any other engine error is not retried.
    other = _Services(conflicts=1, error="invalid mount config")
    with pytest.raises(EngineError, match="invalid mount"):
        _written(other)
    assert other.tried == [7]
