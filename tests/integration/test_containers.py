"""Container routes against the real engine: effects are checked with `docker inspect`."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.harness import docker_cli, free_port

pytestmark = pytest.mark.docker


def inspect(ref: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docker_cli("inspect", ref).stdout)[0]
    return result


def exists(ref: str) -> bool:
    return docker_cli("inspect", ref, check=False).returncode == 0


@pytest.fixture
def unmanaged(base_image: str, unique: str) -> Iterator[str]:
    """A container created behind the service's back (no managed label)."""
    name = f"{unique}-foreign"
    docker_cli("run", "-d", "--name", name, base_image, "sleep", "300")
    yield name
    docker_cli("rm", "-f", name, check=False)


async def gone_from(container: str, command: str) -> bool:
    """Whether no process runs `command` in the container (waiting a little for the kill to land)."""
    for _ in range(40):
        table = docker_cli("exec", container, "ps", "-o", "stat,args").stdout.splitlines()[1:]
        alive = [
            row for row in table if row.split(None, 1)[-1].strip() == command and not row.startswith("Z")
        ]
        if not alive:
            return True
        await asyncio.sleep(0.1)
    return False


async def run(client: httpx2.AsyncClient, headers: dict[str, str], **body: Any) -> httpx2.Response:
    return await client.post("/docker/run", json=body, headers=headers)


async def test_run_applies_limits_ports_env_labels_and_naming_rule(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    port = free_port()
    response = await run(
        client,
        operate,
        image=base_image,
        command="httpd -f -p 80 -h /etc",
        ports={"80/tcp": port},
        env={"GREETING": "hello world"},
        cpu=0.5,
        cpuset="0",
        memory="64m",
        app_id=unique,
        task_id="docker_build-0123456789",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    name = f"{unique}-docker_build-0123456789"
    assert body["name"] == name
    assert body["status"] == "running"
    assert body["ports"] == {"80/tcp": port}

    info = inspect(name)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 << 20
    assert host["CpusetCpus"] == "0"
    assert host["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert "GREETING=hello world" in info["Config"]["Env"]
    assert info["Config"]["Labels"]["docker-manager.managed"] == "true"
    assert info["Config"]["Labels"]["docker-manager.app_id"] == unique
    assert info["Config"]["Labels"]["docker-manager.task_id"] == "docker_build-0123456789"
    assert info["Config"]["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "/etc"]

    # The port really is published: busybox httpd serves /etc/hostname... or at least answers.
    async with httpx2.AsyncClient() as web:
        for _ in range(50):
            try:
                answer = await web.get(f"http://127.0.0.1:{port}/hostname")
                break
            except httpx2.TransportError:
                await asyncio.sleep(0.1)
        assert answer.status_code == 200  # the engine mounts /etc/hostname into every container


async def test_explicit_name_overrides_the_rule(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    response = await run(
        client, operate, image=base_image, command="sleep 60", name=unique, app_id="web", task_id="t1"
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == unique
    assert not exists("web-t1")


async def test_missing_image_is_404_without_pull(
    client: httpx2.AsyncClient, operate: dict[str, str], unique: str
) -> None:
    response = await run(client, operate, image=f"{unique}-nope:latest", name=unique)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "never pulls" in response.json()["detail"]
    assert not exists(unique)


async def test_port_in_use_is_409_and_leaves_nothing_behind(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        response = await run(
            client, operate, image=base_image, command="sleep 60", name=unique, ports={"80/tcp": port}
        )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "port_in_use"
    assert not exists(unique)


async def test_reserved_host_port_and_impossible_cpu_are_refused(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    for body in (
        {"ports": {"80/tcp": 22}},
        {"ports": {"80/tcp": 8002}},
        {"cpu": 64},
        {"cpuset": "0-99"},
    ):
        response = await run(client, operate, image=base_image, name=unique, **body)
        assert response.status_code == 422, (body, response.text)
        assert not exists(unique)


async def test_name_clash_is_409(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    first = await run(client, operate, image=base_image, command="sleep 60", name=unique)
    assert first.status_code == 200
    again = await run(client, operate, image=base_image, command="sleep 60", name=unique)
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"


async def test_host_level_options_are_refused_on_run_extended(
    client: httpx2.AsyncClient, operate: dict[str, str], admin: dict[str, str], base_image: str, unique: str
) -> None:
    hostile: list[dict[str, Any]] = [
        {"privileged": True},
        {"cap_add": ["SYS_ADMIN"]},
        {"volumes": {"/": {"bind": "/host"}}},
        {"volumes": {"/var/run/docker.sock": {"bind": "/var/run/docker.sock"}}},
        {"network_mode": "host"},
        {"pid_mode": "host"},
        {"devices": ["/dev/sda"]},
        {"security_opt": ["seccomp=unconfined"]},
        {"log_driver": "syslog", "log_options": {"syslog-address": "tcp://127.0.0.1:9"}},
    ]
    for fields in hostile:
        for headers in (operate, admin):  # admin too: the operator has not enabled them
            response = await client.post(
                "/docker/run-extended", json={"image": base_image, "name": unique, **fields}, headers=headers
            )
            assert response.status_code == 403, (fields, response.text)
            assert response.json()["code"] == "policy_violation"
            assert not exists(unique)


async def test_run_extended_applies_every_field(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    response = await client.post(
        "/docker/run-extended",
        json={
            "image": base_image,
            "name": unique,
            "command": ["sleep", "120"],
            "mem_limit": "128m",
            "memswap_limit": "256m",
            "nano_cpus": 250_000_000,
            "cpu_shares": 512,
            "pids_limit": 64,
            "log_driver": "json-file",
            "log_options": {"max-size": "10m", "max-file": "3"},
            "volumes": {f"{unique}-data": {"bind": "/data", "mode": "rw"}},
            "network": f"{unique}-net",
            "restart_policy": {"name": "on-failure", "maximum_retry_count": 2},
            "cap_drop": ["NET_RAW"],
            "app_id": "shop",
        },
        headers=operate,
    )
    assert response.status_code == 200, response.text
    host = inspect(unique)["HostConfig"]
    assert host["Memory"] == 128 << 20
    assert host["MemorySwap"] == 256 << 20
    assert host["NanoCpus"] == 250_000_000
    assert host["CpuShares"] == 512
    assert host["PidsLimit"] == 64
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["Binds"] == [f"{unique}-data:/data:rw"]
    assert host["NetworkMode"] == f"{unique}-net"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["CapDrop"] == ["NET_RAW"]
    # The volume and network it created carry the service's labels.
    volume = json.loads(docker_cli("volume", "inspect", f"{unique}-data").stdout)[0]
    network = json.loads(docker_cli("network", "inspect", f"{unique}-net").stdout)[0]
    assert volume["Labels"]["docker-manager.managed"] == "true"
    assert network["Labels"]["docker-manager.managed"] == "true"
    docker_cli("rm", "-f", unique)


async def test_detach_false_waits_and_returns_output(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    response = await run(
        client,
        operate,
        image=base_image,
        name=unique,
        detach=False,
        command=["sh", "-c", "echo done; exit 3"],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exit_code"] == 3
    assert body["output"].strip() == "done"
    assert body["status"] == "exited"


async def test_list_shows_managed_flag_and_filters(
    client: httpx2.AsyncClient,
    read: dict[str, str],
    operate: dict[str, str],
    base_image: str,
    unique: str,
    unmanaged: str,
) -> None:
    await run(client, operate, image=base_image, command="sleep 60", name=unique, app_id="shop", task_id="t9")
    listed = (await client.get("/docker/containers", params={"all": "true"}, headers=read)).json()
    by_name = {c["name"]: c for c in listed}
    assert by_name[unique]["managed"] is True
    assert by_name[unique]["app_id"] == "shop"
    assert by_name[unmanaged]["managed"] is False
    managed_only = (await client.get("/docker/containers", params={"managed": "true"}, headers=read)).json()
    names = {c["name"] for c in managed_only}
    assert unique in names and unmanaged not in names


async def test_lifecycle_actions_change_the_container(
    client: httpx2.AsyncClient, operate: dict[str, str], base_image: str, unique: str
) -> None:
    await run(client, operate, image=base_image, command="sleep 300", name=unique)

    async def act(action: str, **extra: Any) -> dict[str, Any]:
        response = await client.post(
            f"/docker/{action}", json={"id_or_name": unique, **extra}, headers=operate
        )
        assert response.status_code == 200, (action, response.text)
        result: dict[str, Any] = response.json()
        return result

    assert (await act("pause"))["status"] == "paused"
    assert inspect(unique)["State"]["Paused"] is True
    assert (await act("unpause"))["status"] == "running"
    started_at = inspect(unique)["State"]["StartedAt"]
    assert (await act("restart", timeout=0))["status"] == "running"
    assert inspect(unique)["State"]["StartedAt"] != started_at
    assert (await act("stop", timeout=0))["status"] == "exited"
    assert (await act("start"))["status"] == "running"
    assert (await act("kill", signal="SIGKILL"))["status"] == "exited"
    removed = await client.post("/docker/rm", json={"id_or_name": unique, "force": True}, headers=operate)
    assert removed.json()["removed"] is True
    assert not exists(unique)
    gone = await client.post("/docker/stop", json={"id_or_name": unique}, headers=operate)
    assert gone.status_code == 404


async def test_unmanaged_containers_need_admin(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    exec_: dict[str, str],
    admin: dict[str, str],
    unmanaged: str,
) -> None:
    for path, body, headers in (
        ("/docker/stop", {"id_or_name": unmanaged, "timeout": 0}, operate),
        ("/docker/rm", {"id_or_name": unmanaged, "force": True}, operate),
        ("/docker/kill", {"id_or_name": unmanaged}, operate),
        ("/docker/exec", {"id_or_name": unmanaged, "cmd": "true"}, exec_),
    ):
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "not_managed"
    logs = await client.get(f"/docker/logs/{unmanaged}", headers=exec_)
    assert logs.status_code == 403
    assert inspect(unmanaged)["State"]["Running"] is True
    response = await client.post("/docker/stop", json={"id_or_name": unmanaged, "timeout": 0}, headers=admin)
    assert response.status_code == 200
    assert inspect(unmanaged)["State"]["Running"] is False


async def test_logs_keep_stdout_and_stderr_apart(
    client: httpx2.AsyncClient, operate: dict[str, str], exec_: dict[str, str], base_image: str, unique: str
) -> None:
    script = "echo out-1; echo err-1 >&2; echo out-2; sleep 60"
    await run(client, operate, image=base_image, name=unique, command=["sh", "-c", script])
    for _ in range(50):
        body = (await client.get(f"/docker/logs/{unique}", params={"tail": 10}, headers=exec_)).json()
        if len(body["lines"]) >= 3:
            break
        await asyncio.sleep(0.1)
    assert {"stream": "stdout", "text": "out-1"} in body["lines"]
    assert {"stream": "stderr", "text": "err-1"} in body["lines"]
    assert {"stream": "stdout", "text": "out-2"} in body["lines"]
    tail_one = (await client.get(f"/docker/logs/{unique}", params={"tail": 1}, headers=exec_)).json()
    assert len(tail_one["lines"]) == 1
    stamped = (
        await client.get(f"/docker/logs/{unique}", params={"timestamps": "true"}, headers=exec_)
    ).json()
    assert stamped["lines"][0]["text"][:2] == "20"  # RFC 3339 timestamp first
    bad = await client.get(f"/docker/logs/{unique}", params={"tail": -1}, headers=exec_)
    assert bad.status_code == 422


async def test_exec_runs_argv_in_the_container_with_real_exit_codes(
    client: httpx2.AsyncClient, operate: dict[str, str], exec_: dict[str, str], base_image: str, unique: str
) -> None:
    await run(client, operate, image=base_image, command="sleep 300", name=unique)

    async def exec_cmd(cmd: Any, **extra: Any) -> dict[str, Any]:
        response = await client.post(
            "/docker/exec", json={"id_or_name": unique, "cmd": cmd, **extra}, headers=exec_
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    result = await exec_cmd(["sh", "-c", "echo to-out; sleep 0.2; echo to-err >&2; exit 7"])
    assert result == {
        "exit_code": 7,
        "output": "to-out\nto-err\n",  # the original's: both streams, in order
        "stdout": "to-out\n",
        "stderr": "to-err\n",
        "timed_out": False,
        "truncated": False,
    }
    # Shell metacharacters in a string command are literal arguments, not a host shell.
    literal = await exec_cmd("echo $(id); touch /tmp/pwned")
    assert literal["stdout"] == "$(id); touch /tmp/pwned\n"
    assert literal["exit_code"] == 0
    missing = await exec_cmd(["cat", "/nope"])
    assert missing["exit_code"] == 1 and "nope" in missing["stderr"]
    workdir = await exec_cmd("pwd", workdir="/etc")
    assert workdir["stdout"] == "/etc\n"


async def test_exec_time_and_output_are_capped(
    client: httpx2.AsyncClient, operate: dict[str, str], exec_: dict[str, str], base_image: str, unique: str
) -> None:
    await run(client, operate, image=base_image, command="sleep 300", name=unique)
    started = time.monotonic()
    slow = await client.post(
        "/docker/exec", json={"id_or_name": unique, "cmd": "sleep 100", "timeout": 1}, headers=exec_
    )
    assert slow.status_code == 200
    assert slow.json()["timed_out"] is True
    assert time.monotonic() - started < 10
    # The killed process is really gone from the container.
    assert await gone_from(unique, "sleep 100")
    flood = await client.post("/docker/exec", json={"id_or_name": unique, "cmd": "yes"}, headers=exec_)
    body = flood.json()
    assert body["truncated"] is True
    assert len(body["stdout"]) <= 256 * 1024
    assert await gone_from(unique, "yes")


async def test_exec_on_a_stopped_container_is_409(
    client: httpx2.AsyncClient, operate: dict[str, str], exec_: dict[str, str], base_image: str, unique: str
) -> None:
    await run(client, operate, image=base_image, command="true", name=unique, detach=False)
    response = await client.post("/docker/exec", json={"id_or_name": unique, "cmd": "ls"}, headers=exec_)
    assert response.status_code == 409


async def test_inspect_redacts_env_for_read_tokens_and_stats_report_usage(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    exec_: dict[str, str],
    base_image: str,
    unique: str,
) -> None:
    await run(
        client,
        operate,
        image=base_image,
        command="sleep 300",
        name=unique,
        env={"DB_PASSWORD": "hunter2"},
        memory="32m",
    )
    seen_by_read = await client.get(f"/docker/containers/{unique}", headers=read)
    assert seen_by_read.status_code == 200
    assert "hunter2" not in seen_by_read.text
    assert "DB_PASSWORD=<redacted>" in seen_by_read.json()["Config"]["Env"]
    seen_by_exec = await client.get(f"/docker/containers/{unique}", headers=exec_)
    assert seen_by_exec.status_code == 403  # exec does not include read
    stats = await client.get(f"/docker/containers/{unique}/stats", headers=read)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["memory_limit"] == 32 << 20
    assert 0 < body["memory_usage"] < 32 << 20
    assert body["pids"] >= 1
    missing = await client.get(f"/docker/containers/{unique}-nope", headers=read)
    assert missing.status_code == 404
