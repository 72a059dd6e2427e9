"""Image shipping end to end: build/start -> SFTP upload -> localrun -> HTTP -> health check."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.config import Settings
from tests.harness import PREFIX, Sshd, app_client, docker_cli, free_port, sshd, wait_final

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer ship-admin"}


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def ship_settings(data_dir: Path, server: Sshd, context_root: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_token": "ship-admin",
        "context_roots": [context_root],
        "sftp_host": "127.0.0.1",
        "sftp_port": server.port,
        "sftp_username": server.user,
        "sftp_key_file": server.key_file,
        "sftp_known_hosts": server.known_hosts,
        # The runtime role on this same machine: uploads land in this service's upload root.
        "sftp_remote_dir": str((data_dir / "upload").resolve()),
        "sftp_attempts": 2,
        **extra,
    }
    return Settings(**values)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx2.AsyncClient]:
    async with app_client(settings, timeout=120) as (_services, client):
        yield client


async def wait_health(info_path: Path, timeout: float = 30) -> dict[str, Any]:
    for _ in range(int(timeout * 10)):
        info: dict[str, Any] = json.loads(info_path.read_text())
        if info.get("isChecking") is False:
            return info
        await asyncio.sleep(0.1)
    raise AssertionError("the health check did not report")


@pytest.fixture
def web_context(settings: Settings, unique: str, base_image: str) -> Path:
    path = settings.context_paths[0] / unique
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN mkdir /www && echo shipped-{unique} > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    return path


async def test_build_upload_localrun_http_and_health(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path, unique: str
) -> None:
    config = ship_settings(tmp_path, ssh_server, settings.context_paths[0])
    async with running(config) as client:
        started = await client.post(
            "/docker/build/start", json={"context_path": web_context.name, "app_id": unique}, headers=ADMIN
        )
        task_id = started.json()["task_id"]
        status = await wait_final(client, ADMIN, task_id)
        assert status["status"] == "completed", status
        stages = [(e["stage"], e["status"]) for e in status["events"]]
        assert ("uploading", "starting") in stages and ("uploading", "completed") in stages
        assert any(s == ("uploading", "progress") for s in stages)

        # The runtime side received the folder, build.info.json included and complete.
        remote = config.upload_path / task_id
        artefact = remote / f"{unique}_latest.tar.lz4"
        assert artefact.is_file() and not list(remote.glob("*.part"))
        manifest = json.loads((remote / "build.manifest.json").read_text())
        assert manifest["sha256"] == hashlib.sha256(artefact.read_bytes()).hexdigest()
        info = json.loads((remote / "build.info.json").read_text())
        assert info["status"] == "building" and info["stage"] == "uploading"
        assert info["sftp_deployment"]["status"] == "success"
        assert info["sftp_deployment"]["remote_path"] == str(remote)
        local_info = json.loads((config.builds_path / task_id / "build.info.json").read_text())
        assert local_info["stage"] == "uploading" and local_info["sftp_deployment"]["files_transferred"] >= 6

        docker_cli("rmi", f"{unique}:latest")  # the runtime host starts without the image
        port = free_port()
        response = await client.post(
            "/docker/localrun",
            json={
                "lz4_path": f"{task_id}/{artefact.name}",
                "task_id": task_id,
                "ports": {"80/tcp": port},
                "env": {"SECRET_TOKEN": "hunter2"},
                "memory": "64m",
                "cpu": 0.5,
                "healthcheck_time": 2,
                # The original's named volume of the app.
                "volume_name": f"{unique}-data",
                "mount_path": "/data",
                "mode": "rw",
            },
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["container_name"] == f"{unique}-{task_id}"
        assert body["generated_name"] == body["container_name"]  # the original's: the name itself
        mounts = json.loads(docker_cli("inspect", body["container_id"]).stdout)[0]["Mounts"]
        assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
            ("volume", f"{unique}-data", "/data", True)
        ]
        assert body["tag"] == f"{unique}:latest" and body["isChecking"] is True
        async with httpx2.AsyncClient() as web:
            page = await web.get(f"http://127.0.0.1:{port}/")
        assert page.text.strip() == f"shipped-{unique}"
        inspect = json.loads(docker_cli("inspect", body["container_id"]).stdout)[0]
        assert inspect["HostConfig"]["Memory"] == 64 << 20
        assert inspect["Config"]["Labels"]["docker-manager.task_id"] == task_id

        healthy = await wait_health(remote / "build.info.json")
        assert healthy["status"] == "successful" and healthy["healthcheck"] is True
        assert healthy["healthchecksstatus"] == "running" and healthy["http_status"] == 200
        assert healthy["container_name"] == body["container_name"] and healthy["host_port"] == port
        assert healthy["localrun"]["env"] == {"SECRET_TOKEN": "<redacted>"}
        assert "hunter2" not in (remote / "build.info.json").read_text()
        logs = (await client.get(f"/tasks/logs/{task_id}", headers=ADMIN)).json()
        assert logs["server"] == "runtime" and logs["status"] == "completed"  # the build task's status
        assert logs["build_status"] == "successful"  # build.info.json's, after the health check
        assert logs["healthcheck"] is True and logs["isChecking"] is False
        localrun = await wait_final(client, ADMIN, body["localrun_task_id"])
        assert [e["stage"] for e in localrun["events"] if e["status"] == "starting"] == [
            "decompiling",
            "running",
        ]


async def test_a_container_that_exits_at_once_fails_its_check(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path, unique: str
) -> None:
    (web_context / "Dockerfile").write_text(
        'FROM dm-test-bb:latest\nCMD ["sh", "-c", "echo about-to-die >&2; exit 3"]\n'
    )
    config = ship_settings(tmp_path, ssh_server, settings.context_paths[0], sftp_host=None)
    async with running(config) as client:
        started = await client.post(
            "/docker/build/start",
            json={"context_path": web_context.name, "tag": f"{unique}:dies"},
            headers=ADMIN,
        )
        task_id = started.json()["task_id"]
        assert (await wait_final(client, ADMIN, task_id))["status"] == "completed"
        info = json.loads((config.builds_path / task_id / "build.info.json").read_text())
        assert "sftp_deployment" not in info  # no SFTP configured: no upload stage
        response = await client.post(
            "/docker/localrun",
            json={
                "lz4_path": info["compressed_image_path"],
                "task_id": task_id,
                "app_id": unique,
                "healthcheck_time": 1,
            },
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
        verdict = await wait_health(config.builds_path / task_id / "build.info.json")
    assert verdict["status"] == "failed" and verdict["healthcheck"] is False
    assert verdict["healthchecksstatus"] == "exited(3)" and verdict["exit_code"] == 3
    assert verdict["oom_killed"] is False and "about-to-die" in verdict["last_lines"]
    assert "healthcheck failed" in (config.builds_path / task_id / "error.log").read_text()


async def test_a_pending_check_survives_a_restart(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path, unique: str
) -> None:
    config = ship_settings(tmp_path, ssh_server, settings.context_paths[0], sftp_host=None)
    async with running(config) as client:
        started = await client.post(
            "/docker/build/start", json={"context_path": web_context.name, "app_id": unique}, headers=ADMIN
        )
        task_id = started.json()["task_id"]
        await wait_final(client, ADMIN, task_id)
        info_path = config.builds_path / task_id / "build.info.json"
        artefact = json.loads(info_path.read_text())["compressed_image_path"]
        response = await client.post(
            "/docker/localrun",
            json={
                "lz4_path": artefact,
                "task_id": task_id,
                "ports": {"80/tcp": free_port()},
                "healthcheck_time": 3,
            },
            headers=ADMIN,
        )
        assert response.status_code == 200
    # The service stopped before the check was due.
    assert json.loads(info_path.read_text())["isChecking"] is True
    async with running(config):
        verdict = await wait_health(info_path)
    assert verdict["status"] == "successful"


async def test_unknown_host_key_fails_the_upload_without_retrying(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = ship_settings(tmp_path, ssh_server, settings.context_paths[0], sftp_known_hosts=empty)
    async with running(config) as client:
        started = await client.post(
            "/docker/build/start",
            json={"context_path": web_context.name, "app_id": f"{PREFIX}-keytest"},
            headers=ADMIN,
        )
        status = await wait_final(client, ADMIN, started.json()["task_id"])
    assert status["status"] == "error" and "refused" in status["error"]
    assert status["stage"] == "uploading"
    info = json.loads((config.builds_path / status["task_id"] / "build.info.json").read_text())
    assert info["status"] == "error" and info["sftp_deployment"]["status"] == "error"
    assert not (config.upload_path / status["task_id"]).exists()


async def test_a_key_the_server_refuses_and_a_closed_port_fail_cleanly(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path
) -> None:
    for extra in ({"sftp_key_file": ssh_server.other_key_file}, {"sftp_port": free_port()}):
        config = ship_settings(
            tmp_path / str(len(extra)) / next(iter(extra)), ssh_server, settings.context_paths[0], **extra
        )
        async with running(config) as client:
            started = await client.post(
                "/docker/build/start",
                json={"context_path": web_context.name, "app_id": f"{PREFIX}-keytest"},
                headers=ADMIN,
            )
            status = await wait_final(client, ADMIN, started.json()["task_id"])
        assert status["status"] == "error", extra
        assert "SFTP" in status["error"]


async def test_request_fields_override_settings_and_password_is_never_stored(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, web_context: Path
) -> None:
    config = ship_settings(
        tmp_path, ssh_server, settings.context_paths[0], sftp_host=None, sftp_key_file=None
    )
    async with running(config) as client:
        missing = await client.post(
            "/docker/build/start",
            json={"context_path": web_context.name, "sftp_host": "127.0.0.1"},
            headers=ADMIN,
        )
        assert missing.status_code == 422 and missing.json()["field"] == "sftp_password"
        started = await client.post(
            "/docker/build/start",
            json={
                "context_path": web_context.name,
                "app_id": f"{PREFIX}-pwtest",
                "sftp_host": "127.0.0.1",
                "sftp_port": ssh_server.port,
                "sftp_username": ssh_server.user,
                "sftp_password": "pw-s3cret",
            },
            headers=ADMIN,
        )
        status = await wait_final(client, ADMIN, started.json()["task_id"])
        assert status["status"] == "error"  # the server takes keys only
        folder = config.builds_path / status["task_id"]
        for file in folder.iterdir():
            assert "pw-s3cret" not in file.read_text(errors="replace"), file
        assert "pw-s3cret" not in json.dumps(status)


async def test_hostile_or_broken_artefacts_are_refused_and_load_nothing(
    client: httpx2.AsyncClient, operate: dict[str, str], settings: Settings, unique: str
) -> None:
    folder = settings.upload_path / f"{unique}-task"
    folder.mkdir(parents=True)
    good = folder / "good.tar.lz4"
    # An image under a name of its own, saved, then untagged: loading it would bring the name back.
    docker_cli("tag", "dm-test-bb:latest", f"{unique}-img:v1")
    docker_cli("save", "-o", str(folder / "image.tar"), f"{unique}-img:v1")
    docker_cli("rmi", f"{unique}-img:v1")
    subprocess.run(["lz4", "-q", "-z", "-f", str(folder / "image.tar"), str(good)], check=True)
    (folder / "image.tar").unlink()
    raw = good.read_bytes()
    (folder / "truncated.tar.lz4").write_bytes(raw[: len(raw) // 2])
    (folder / "garbage.tar.lz4").write_bytes(b"this is not lz4 at all")
    corrupt = bytearray(raw)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (folder / "corrupt.tar.lz4").write_bytes(bytes(corrupt))
    os.mkfifo(folder / "fifo.tar.lz4")
    os.symlink("/etc/shadow", folder / "link.tar.lz4")
    (folder / "build.manifest.json").write_text(json.dumps({"artefact": "good.tar.lz4", "sha256": "0" * 64}))
    cases = {
        "/etc/shadow": 403,
        "../../../../etc/passwd": 403,
        "/dev/zero": 403,
        "/proc/self/environ": 403,
        f"{unique}-task/link.tar.lz4": 403,
        f"{unique}-task/fifo.tar.lz4": 422,
        f"{unique}-task/missing.tar.lz4": 422,
        f"{unique}-task/garbage.tar.lz4": 422,
        f"{unique}-task/truncated.tar.lz4": 422,
        f"{unique}-task/corrupt.tar.lz4": 422,
        f"{unique}-task/good.tar.lz4": 422,  # the manifest's checksum does not match
    }
    before = set(docker_cli("images", "-qa").stdout.split())
    for path, code in cases.items():
        response = await client.post(
            "/docker/localrun",
            json={"lz4_path": path, "task_id": f"{unique}-task", "name": unique},
            headers=operate,
        )
        assert response.status_code == code, (path, response.text)
        assert "code" in response.json()
    assert set(docker_cli("images", "-qa").stdout.split()) - before == set()  # nothing was loaded
    assert docker_cli("image", "inspect", f"{unique}-img:v1", check=False).returncode != 0
    assert docker_cli("inspect", unique, check=False).returncode != 0
    assert "sha256" in (folder / "error.log").read_text()
