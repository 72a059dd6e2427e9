"""Disk pre-flight on real small filesystems (tmpfs): refused before anything starts, nothing written;
a disk that fills up anyway ends the task with `reason: disk_full` and no partial file."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_manager.config import Settings
from docker_manager.runner import TaskContext, TaskSpec
from docker_manager.util.lz4file import compress_to_file
from tests.harness import Sshd, app_client, docker_cli, sshd, tmpfs, wait_final

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer disk-admin"}


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def context_with(settings: Settings, name: str, base_image: str, payload_bytes: int) -> Path:
    """A build context holding `payload_bytes` of incompressible data."""
    path = settings.context_paths[0] / name
    path.mkdir(parents=True)
    (path / "payload.bin").write_bytes(os.urandom(payload_bytes))
    (path / "Dockerfile").write_text(f"FROM {base_image}\nCOPY payload.bin /payload.bin\n")
    return path


async def test_a_build_larger_than_the_builds_disk_is_refused_before_it_starts(
    tmp_path: Path, settings: Settings, unique: str, base_image: str
) -> None:
    with tmpfs(tmp_path / "builds", "4m") as builds:
        config = Settings(
            data_dir=tmp_path / "data",
            builds_dir=builds,
            admin_token="disk-admin",  # type: ignore[arg-type]
            context_roots=settings.context_paths,
        )
        context = context_with(config, unique, base_image, 6 << 20)
        async with app_client(config) as (_services, client):
            started = await client.post(
                "/docker/build/start", json={"context_path": context.name, "app_id": unique}, headers=ADMIN
            )
            assert started.status_code == 200, started.text
            status = await wait_final(client, ADMIN, started.json()["task_id"])
            assert status["status"] == "error" and "needs" in status["error"], status
            result = status["result"]
            assert result["code"] == "insufficient_storage" and result["reason"] == "insufficient_storage"
            assert result["path"] == str(builds) and result["needed_bytes"] >= 6 << 20
            assert result["free_bytes"] <= 4 << 20
            # Nothing was built, nothing half-written: no image, no artefact, no Dockerfile copy.
            assert docker_cli("image", "inspect", f"{unique}:latest", check=False).returncode != 0
            folder = builds / status["task_id"]
            assert not list(folder.glob("*.tar.lz4*")) and not (folder / "Dockerfile.used").exists()

        # A synchronous build writes no artefact: the engine's disk must have room. The operator
        # asks for more room to stay free than there is.
        strict = config.model_copy(update={"min_free_bytes": 1 << 60})
        async with app_client(strict) as (_services, client):
            sync = await client.post("/docker/build", json={"path": context.name}, headers=ADMIN)
            assert sync.status_code == 507
            body = sync.json()
            engine_root = docker_cli("info", "--format", "{{.DockerRootDir}}").stdout.strip()
            assert body["code"] == "insufficient_storage" and body["path"] == engine_root
            assert body["needed_bytes"] >= 6 << 20 and body["free_bytes"] < 1 << 60


async def test_an_upload_larger_than_the_remote_disk_is_refused_with_nothing_sent(
    tmp_path: Path, settings: Settings, ssh_server: Sshd, unique: str, base_image: str
) -> None:
    with tmpfs(tmp_path / "remote", "2m") as remote:
        config = Settings(
            data_dir=tmp_path / "data",
            admin_token="disk-admin",  # type: ignore[arg-type]
            context_roots=settings.context_paths,
            sftp_host="127.0.0.1",
            sftp_port=ssh_server.port,
            sftp_username=ssh_server.user,
            sftp_key_file=ssh_server.key_file,
            sftp_known_hosts=ssh_server.known_hosts,
            sftp_remote_dir=str(remote),
            sftp_attempts=1,
        )
        context = context_with(config, unique, base_image, 3 << 20)
        async with app_client(config) as (_services, client):
            started = await client.post(
                "/docker/build/start", json={"context_path": context.name, "app_id": unique}, headers=ADMIN
            )
            status = await wait_final(client, ADMIN, started.json()["task_id"], timeout=120)
            assert status["status"] == "error" and status["stage"] == "uploading", status
            assert status["result"]["code"] == "insufficient_storage"
            assert status["result"]["path"] == str(remote)
            assert list(remote.iterdir()) == []  # not even the task's folder
            # The image and its artefact are here: the build itself had room.
            artefact = config.builds_path / status["task_id"] / f"{unique}_latest.tar.lz4"
            assert artefact.is_file()

        # The operator asks for more room to stay free: loading the image is refused first.
        strict = config.model_copy(update={"min_free_bytes": 1 << 60})
        async with app_client(strict) as (_services, client):
            refused = await client.post(
                "/docker/localrun",
                json={"lz4_path": str(artefact), "task_id": status["task_id"], "app_id": unique},
                headers=ADMIN,
            )
            assert refused.status_code == 507, refused.text
            assert refused.json()["code"] == "insufficient_storage"
            assert docker_cli("ps", "-aq", "--filter", f"name={unique}").stdout.strip() == ""
    docker_cli("rmi", f"{unique}:latest", check=False)


@pytest.fixture
async def plain_app(tmp_path: Path) -> AsyncIterator[Any]:
    config = Settings(data_dir=tmp_path / "data", admin_token="disk-admin")  # type: ignore[arg-type]
    async with app_client(config) as (services, client):
        yield services, client, config


async def test_a_disk_that_fills_up_ends_the_task_with_disk_full_and_no_partial_file(
    tmp_path: Path, plain_app: Any
) -> None:
    services, client, config = plain_app
    with tmpfs(tmp_path / "small", "256k") as small:
        target = small / "image.tar.lz4"

        async def incompressible() -> AsyncIterator[bytes]:
            for _ in range(16):
                yield os.urandom(64 << 10)

        async def export(ctx: TaskContext) -> dict[str, Any]:
            await compress_to_file(incompressible(), target)
            return {}

        record = await services.runner.submit(
            TaskSpec(task_type="test_task", work=export, files_dir=config.builds_path / "fill-task")
        )
        status = await wait_final(client, ADMIN, record.id)
        assert status["status"] == "error"
        assert status["result"]["code"] == "disk_full" and status["result"]["reason"] == "disk_full"
        assert list(small.iterdir()) == []  # neither the artefact nor its .part


async def test_system_disk_needs_a_token_and_answers_for_every_root(plain_app: Any) -> None:
    _services, client, config = plain_app
    assert (await client.get("/system/disk")).status_code == 401
    body = (await client.get("/system/disk", headers=ADMIN)).json()
    paths = {fs["name"]: fs["path"] for fs in body["filesystems"]}
    assert paths["builds"] == str(config.builds_path) and paths["upload"] == str(config.upload_path)
    assert all(fs["free_bytes"] <= fs["total_bytes"] for fs in body["filesystems"])
    assert set(body["engine"]) == {"images", "containers", "volumes", "build_cache"}
    await asyncio.sleep(0)
    json.dumps(body)
