"""Builds as tasks against the real engine: build-stream, build/start, files, cancel, disconnect."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.config import Settings
from tests.harness import app_client, docker_cli, wait_final

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


async def no_container_runs(command: str) -> bool:
    """Whether no running container (build steps included) runs `command`, waiting up to 10 s."""
    for _ in range(50):
        running = docker_cli("ps", "-q", "--filter", "status=running").stdout.split()
        commands = [
            docker_cli("inspect", "-f", "{{.Path}} {{.Args}}", c, check=False).stdout for c in running
        ]
        if not any(command in c for c in commands):
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.fixture
def context(settings: Settings, unique: str, base_image: str) -> Path:
    path = settings.context_paths[0] / unique
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo building-now\nCOPY . /app\n")
    (path / "index.html").write_text("<h1>hi</h1>\n")
    # A file of its own, so that `COPY .` and what follows it never come from an earlier run's
    # cache (the engine keeps its cache between runs; built images carry no per-build label).
    (path / ".test-id").write_text(unique)
    return path


async def stream_build(
    client: httpx2.AsyncClient, headers: dict[str, str], **body: Any
) -> list[dict[str, Any]]:
    lines = []
    async with client.stream(
        "POST", "/docker/build-stream", json=body, headers={**headers, "Accept": "application/x-ndjson"}
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        async for line in response.aiter_lines():
            if line:
                lines.append(json.loads(line))
    return lines


async def test_build_stream_success_framing_and_files(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    unique: str,
    settings: Settings,
) -> None:
    lines = await stream_build(client, operate, context_path=context.name, tag=f"{unique}:v1", app_id="shop")
    first, last = lines[0], lines[-1]
    task_id = first["task_id"]
    assert first["status"] == "started" and first["dockerfile"] == "Dockerfile" and first["inline"] is False
    assert all(line["task_id"] == task_id for line in lines)
    assert all(line["dockerfile"] == "Dockerfile" and line["inline"] is False for line in lines[:-1])
    streamed = [line["stream"] for line in lines if "stream" in line]
    assert any("building-now" in text for text in streamed)
    assert last["summary"] is True and last["status"] == "ok"
    assert last["image_id"].startswith("sha256:") and last["tag"] == f"{unique}:v1"
    assert any("Successfully" in text for text in last["logs"])
    assert docker_cli("image", "inspect", f"{unique}:v1").returncode == 0

    status = await wait_final(client, read, task_id)
    assert status["status"] == "completed" and status["result"]["image_id"] == last["image_id"]
    folder = settings.builds_path / task_id
    for name in (
        "build.log",
        "build.jsonl",
        "events.log",
        "build.info.json",
        "dockerfile.parsed.json",
        "Dockerfile.used",
    ):
        assert (folder / name).is_file(), name
    assert "building-now" in (folder / "build.log").read_text()
    for raw in (folder / "build.jsonl").read_text().splitlines():
        record = json.loads(raw)
        assert {"ts", "level", "event"} <= set(record) and record["ts"].endswith("Z")
    info = json.loads((folder / "build.info.json").read_text())
    assert info["status"] == "building" and info["stage"] == "building"
    assert info["image_id"] == last["image_id"] and info["app_id"] == "shop" and info["steps_detected"] == 3
    parsed = json.loads((folder / "dockerfile.parsed.json").read_text())
    assert [op["op"] for op in parsed["ops"]] == ["FROM", "RUN", "COPY"]
    assert (folder / "Dockerfile.used").read_text() == (context / "Dockerfile").read_text()
    labels = json.loads(docker_cli("image", "inspect", f"{unique}:v1").stdout)[0]["Config"]["Labels"] or {}
    assert not any(key.startswith("docker-manager.") for key in labels)  # DM_BUILD_LABELS is off


async def test_build_stream_failure_is_an_error_summary_with_error_log(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    unique: str,
    settings: Settings,
) -> None:
    (context / "Dockerfile").write_text("FROM dm-test-bb:latest\nRUN echo failing-step && exit 5\n")
    lines = await stream_build(client, operate, context_path=str(context), tag=f"{unique}:bad")
    last = lines[-1]
    assert last["status"] == "error" and last["image_id"] is None
    assert "non-zero code: 5" in last["error"]
    task_id = lines[0]["task_id"]
    status = await wait_final(client, read, task_id)
    assert status["status"] == "error"
    error_log = (settings.builds_path / task_id / "error.log").read_text()
    assert "non-zero code: 5" in error_log and "RUN echo failing-step" in error_log  # the Dockerfile too
    info = json.loads((settings.builds_path / task_id / "build.info.json").read_text())
    assert info["status"] == "error"
    logs = (await client.get(f"/tasks/logs/{task_id}", params={"tail": 50}, headers=read)).json()
    assert logs["status"] == "error" and any("non-zero code" in line for line in logs["build_logs"]["error"])


async def test_inline_dockerfile_with_custom_name_never_touches_the_context(
    client: httpx2.AsyncClient, operate: dict[str, str], context: Path, unique: str, base_image: str
) -> None:
    (context / "Custom.dockerfile").write_text("user's own file\n")
    before = {p.name: p.read_bytes() for p in context.iterdir()}
    inline = f"FROM {base_image}\nCOPY . /app\nRUN echo inline-used\n"
    lines = await stream_build(
        client,
        operate,
        context_path=context.name,
        tag=f"{unique}:inline",
        dockerfile_content=inline,
        dockerfile_name="Custom.dockerfile",
        cleanup=True,
    )
    assert lines[-1]["status"] == "ok", lines[-1]
    assert lines[0]["dockerfile"] == "Custom.dockerfile" and lines[0]["inline"] is True
    assert any("inline-used" in line.get("stream", "") for line in lines)
    # The user's file of that name is untouched, in the folder and in the image.
    assert {p.name: p.read_bytes() for p in context.iterdir()} == before
    inside = docker_cli("run", "--rm", f"{unique}:inline", "cat", "/app/Custom.dockerfile").stdout
    assert inside == "user's own file\n"


async def test_inline_only_build_without_a_context_folder(
    client: httpx2.AsyncClient, operate: dict[str, str], settings: Settings, unique: str, base_image: str
) -> None:
    lines = await stream_build(
        client,
        operate,
        context_path=f"{unique}-does-not-exist",
        tag=f"{unique}:empty",
        dockerfile_content=f"FROM {base_image}\nRUN echo only-inline\n",
    )
    assert lines[-1]["status"] == "ok"
    assert not (settings.context_paths[0] / f"{unique}-does-not-exist").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Paths outside the allowed roots: 403 path_not_allowed.
        ({"context_path": "/etc"}, 403),
        ({"context_path": "../../"}, 403),
        ({"context_path": "x", "dockerfile": "../../etc/passwd"}, 403),
        ({"context_path": "x", "dockerfile": "/etc/passwd"}, 403),
        # Values that are not what the field takes: 422.
        ({"context_path": "x", "dockerfile_content": "FROM a", "dockerfile_name": "../../etc/cron.d/x"}, 422),
        ({"context_path": "x", "dockerfile_content": "FROM a", "dockerfile_name": ".."}, 422),
        ({"context_path": "x", "dockerfile_content": "FROM a\x00"}, 422),
        ({"context_path": "x", "tag": "UPPER:case"}, 422),
        ({"context_path": "x", "task_id": "../x"}, 422),
        ({"context_path": "x", "build_args": {"A=B": "1"}}, 422),
        ({"context_path": "x", "remote": "http://169.254.169.254/"}, 422),
    ],
)
async def test_hostile_build_inputs_are_refused_before_anything_starts(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    body: dict[str, Any],
    expected: int,
) -> None:
    if body.get("context_path") == "x":
        body = {**body, "context_path": context.name}
    before = (await client.get("/tasks", params={"limit": 1}, headers=read)).json()["tasks"]
    for route in ("/docker/build-stream", "/docker/build/start"):
        response = await client.post(route, json=body, headers=operate)
        assert response.status_code == expected, (route, body, response.text)
        assert "code" in response.json()
    assert (await client.get("/tasks", params={"limit": 1}, headers=read)).json()["tasks"] == before


async def test_build_start_exports_the_tagged_image_as_lz4(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    unique: str,
    settings: Settings,
) -> None:
    response = await client.post(
        "/docker/build/start", json={"context_path": context.name, "app_id": unique}, headers=operate
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "started" and body["task_id"].startswith("docker_build-")
    status = await wait_final(client, read, body["task_id"])
    assert status["status"] == "completed", status
    stages = [(e["stage"], e["status"]) for e in status["events"]]
    assert ("building", "exporting") in stages and ("building", "exported") in stages
    folder = settings.builds_path / body["task_id"]
    artefact = folder / f"{unique}_latest.tar.lz4"
    assert artefact.is_file()
    assert not list(folder.glob("*.part")) and not list(folder.glob("*.tar"))
    info = json.loads((folder / "build.info.json").read_text())
    assert info["status"] == "building" and info["tag"] == f"{unique}:latest"
    assert info["compressed_image_size_bytes"] == artefact.stat().st_size
    assert info["compressed_image_sha256"] == hashlib.sha256(artefact.read_bytes()).hexdigest()
    # The archive carries the tag (the original exported by id: no RepoTags).
    raw = subprocess.run(["lz4", "-dc", str(artefact)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"{unique}:latest"]


async def test_client_disconnect_does_not_stop_the_build(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    unique: str,
    settings: Settings,
) -> None:
    (context / "Dockerfile").write_text("FROM dm-test-bb:latest\nRUN sleep 2 && echo after-the-sleep\n")
    async with client.stream(
        "POST",
        "/docker/build-stream",
        json={"context_path": context.name, "tag": f"{unique}:dc"},
        headers={**operate, "Accept": "application/x-ndjson"},
    ) as response:
        first = json.loads(await response.aiter_lines().__anext__())
    task_id = first["task_id"]  # the client has gone; the build must go on
    status = await wait_final(client, read, task_id)
    assert status["status"] == "completed"
    assert "after-the-sleep" in (settings.builds_path / task_id / "build.log").read_text()
    assert docker_cli("image", "inspect", f"{unique}:dc").returncode == 0


async def test_cancel_stops_a_running_build(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    context: Path,
    unique: str,
    settings: Settings,
) -> None:
    (context / "Dockerfile").write_text(
        f"FROM dm-test-bb:latest\nRUN echo {unique} > /done-before\nRUN echo started-sleeping && sleep 60\n"
    )
    response = await client.post(
        "/docker/build/start", json={"context_path": context.name, "tag": f"{unique}:cancel"}, headers=operate
    )
    task_id = response.json()["task_id"]
    log = settings.builds_path / task_id / "build.log"
    for _ in range(100):
        if log.exists() and "started-sleeping" in log.read_text():
            break
        await asyncio.sleep(0.1)
    cancelled = await client.post(f"/tasks/{task_id}/cancel", headers=operate)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    info = json.loads((settings.builds_path / task_id / "build.info.json").read_text())
    assert info["status"] == "error" and info["task_status"] == "cancelled"
    assert docker_cli("image", "inspect", f"{unique}:cancel", check=False).returncode != 0
    # The engine stops the build when its client goes: no `sleep 60` left running.
    assert await no_container_runs("sleep 60")
    # The step it completed is an untagged image: recorded as the service's (for /system/gc).
    step = [
        line.split("---> ", 1)[1].strip()
        for line in log.read_text().splitlines()
        if "---> " in line and "Running in" not in line
    ][-1]
    listed = {i["id"]: i for i in (await client.get("/docker/images", headers=read)).json()}
    step_id = json.loads(docker_cli("image", "inspect", step).stdout)[0]["Id"]
    base_id = json.loads(docker_cli("image", "inspect", "dm-test-bb:latest").stdout)[0]["Id"]
    assert step_id != base_id and listed[step_id]["managed"] is True


async def test_tail_reads_the_end_of_a_large_log(
    client: httpx2.AsyncClient, read: dict[str, str], settings: Settings, unique: str
) -> None:
    folder = settings.builds_path / f"{unique}-bigtask"
    folder.mkdir(parents=True)
    with (folder / "build.log").open("w") as handle:
        chunk = "".join(f"filler line {i}\n" for i in range(10_000))
        for _ in range(40):  # ~6 MB
            handle.write(chunk)
        handle.write("the very last line\n")
    (folder / "build.info.json").write_text(
        '{"status": "building", "stage": "uploading", "isChecking": true}'
    )
    response = await client.get(f"/tasks/logs/{unique}-bigtask", params={"tail": 3}, headers=read)
    assert response.status_code == 200
    body = response.json()
    assert body["build_logs"]["raw"] == ["filler line 9998", "filler line 9999", "the very last line"]
    assert body["status"] == "building" and body["isChecking"] is True  # health fields at the top level
    assert (await client.get("/tasks/logs/never-heard-of-it", headers=read)).status_code == 404
    # tail=0 was "everything" in the original: here, as many lines as a page may hold.
    everything = await client.get(f"/tasks/logs/{unique}-bigtask", params={"tail": 0}, headers=read)
    assert len(everything.json()["build_logs"]["raw"]) == 10_000
    assert (
        await client.get(f"/tasks/logs/{unique}-bigtask", params={"tail": -1}, headers=read)
    ).status_code == 422
    bad = await client.get(f"/tasks/logs/{unique}-bigtask", params={"server": "elsewhere"}, headers=read)
    assert bad.status_code == 422


async def test_a_build_past_its_time_limit_fails_and_stops(
    tmp_path: Path, settings: Settings, context: Path, unique: str
) -> None:
    (context / "Dockerfile").write_text("FROM dm-test-bb:latest\nRUN echo slow-step && sleep 45\n")
    limited = Settings(
        data_dir=tmp_path,
        admin_token="timeout-admin",
        context_roots=settings.context_roots,
        build_timeout=2,  # type: ignore[arg-type]
    )
    headers = {"Authorization": "Bearer timeout-admin"}
    async with app_client(limited) as (_services, own):
        started = await own.post(
            "/docker/build/start",
            json={"context_path": context.name, "tag": f"{unique}:slow"},
            headers=headers,
        )
        status = await wait_final(own, headers, started.json()["task_id"], timeout=30)
    assert status["status"] == "error" and "longer than 2 s" in status["error"]
    assert docker_cli("image", "inspect", f"{unique}:slow", check=False).returncode != 0
    assert await no_container_runs("sleep 45")


async def test_build_labels_setting_labels_the_image(
    tmp_path: Path, settings: Settings, context: Path, unique: str, base_image: str
) -> None:
    (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo labelled\n")
    labelled = settings.model_copy(update={"data_dir": tmp_path, "build_labels": True})
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    async with app_client(labelled) as (_services, own):
        lines = await stream_build(
            own, headers, context_path=context.name, tag=f"{unique}:labelled", app_id="shop"
        )
    assert lines[-1]["status"] == "ok", lines[-1]
    labels = json.loads(docker_cli("image", "inspect", f"{unique}:labelled").stdout)[0]["Config"]["Labels"]
    assert labels["docker-manager.managed"] == "true" and labels["docker-manager.app_id"] == "shop"
    assert labels["docker-manager.task_id"] == lines[0]["task_id"]
