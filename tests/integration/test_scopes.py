"""Scopes that hold: each class of way around them, tried with the scope the attack needs.

Every test asserts the refusal (a 4xx JSON error) and that nothing changed: volume contents,
network membership, a registry that received nothing, a tag still on its image, no file written
through a symlink, no file read outside its root.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.auth import Scope
from docker_manager.config import Settings
from docker_manager.runtime import Runtime
from tests.harness import BASE_IMAGE, app_client, docker_cli, wait_final

pytestmark = pytest.mark.docker


async def run_ext(client: httpx2.AsyncClient, headers: dict[str, str], **body: Any) -> httpx2.Response:
    return await client.post("/docker/run-extended", json={"image": BASE_IMAGE, **body}, headers=headers)


async def read_exec(services: Runtime) -> dict[str, str]:
    """A token with read and exec (a dashboard user who may look inside containers)."""
    _, secret = await services.tokens.create(name="read-exec", scopes=frozenset({Scope.READ, Scope.EXEC}))
    return {"Authorization": f"Bearer {secret}"}


def volume_file(volume: str, path: str) -> str:
    return docker_cli("run", "--rm", "-v", f"{volume}:/v", BASE_IMAGE, "cat", f"/v/{path}").stdout


# --- 1. the create body is an allowlist -------------------------------------------------------


async def test_another_apps_volume_cannot_be_mounted_read_or_wiped(
    client: httpx2.AsyncClient, operate: dict[str, str], unique: str
) -> None:
    volume = f"{unique}-billing-db"
    made = await run_ext(
        client,
        operate,
        name=f"{unique}-billing",
        app_id="billing",
        command=["sh", "-c", "echo ledger > /db/ledger; sleep 600"],
        volumes={volume: {"bind": "/db"}},
    )
    assert made.status_code == 200, made.text
    await asyncio.sleep(0.5)
    assert volume_file(volume, "ledger") == "ledger\n"
    for attempt in (
        {"app_id": "web", "command": ["cat", "/d/ledger"], "detach": False},
        {"app_id": "web", "command": ["sh", "-c", "rm -rf /d/*"]},
        {"command": ["cat", "/d/ledger"], "detach": False},  # no app at all
    ):
        refused = await run_ext(
            client, operate, name=f"{unique}-thief", volumes={volume: {"bind": "/d"}}, **attempt
        )
        assert refused.status_code == 403 and refused.json()["code"] == "policy_violation", refused.text
        assert "another app" in refused.json()["detail"]
    assert volume_file(volume, "ledger") == "ledger\n"
    assert docker_cli("ps", "-aq", "--filter", f"name={unique}-thief").stdout.strip() == ""


async def test_a_volume_made_by_hand_cannot_be_mounted(
    client: httpx2.AsyncClient, operate: dict[str, str], unique: str, tmp_path: Path
) -> None:
    # A `local` volume that is really a bind mount of a host directory.
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret\n")
    volume = f"{unique}-hostbind"
    docker_cli(
        "volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind",
        "--opt", f"device={host_dir}", volume,
    )  # fmt: skip
    refused = await run_ext(
        client,
        operate,
        name=f"{unique}-reader",
        command=["sh", "-c", "cat /h/secret; rm /h/secret"],
        volumes={volume: {"bind": "/h"}},
        detach=False,
    )
    assert refused.status_code == 403 and "did not create" in refused.json()["detail"]
    assert (host_dir / "secret").read_text() == "host secret\n"


async def test_networks_and_namespaces_of_others_cannot_be_joined(
    client: httpx2.AsyncClient, operate: dict[str, str], unique: str
) -> None:
    network = f"{unique}-lan"
    docker_cli("network", "create", network)
    docker_cli("run", "-d", "--name", f"{unique}-db", "--network", network, BASE_IMAGE, "sleep", "600")
    for body in (
        {"network": network},
        {"network_mode": network},
        {"network_mode": f"container:{unique}-db"},
        {"network_mode": "host"},
    ):
        refused = await run_ext(client, operate, name=f"{unique}-spy", command=["sleep", "5"], **body)
        assert refused.status_code == 403, (body, refused.text)
    members = json.loads(docker_cli("network", "inspect", network).stdout)[0]["Containers"]
    assert [m["Name"] for m in members.values()] == [f"{unique}-db"]
    assert docker_cli("ps", "-aq", "--filter", f"name={unique}-spy").stdout.strip() == ""


# --- 2. ownership is a record, not a label ----------------------------------------------------


async def test_a_forged_label_does_not_make_a_container_ours(
    client: httpx2.AsyncClient,
    services: Runtime,
    operate: dict[str, str],
    exec_: dict[str, str],
    read: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nLABEL docker-manager.managed=true docker-manager.app_id=web\n"
    )
    image = f"{unique}-forged:1"
    docker_cli("build", "-q", "-t", image, str(tmp_path))
    name = f"{unique}-forged"
    docker_cli("run", "-d", "--name", name, "-e", "API_KEY=hunter2", image, "sleep", "600")
    for route, body, headers in (
        ("/docker/stop", {"id_or_name": name}, operate),
        ("/docker/rm", {"id_or_name": name, "force": True}, operate),
        ("/docker/exec", {"id_or_name": name, "cmd": ["id"]}, exec_),
        ("/docker/container/fs/read", {"id_or_name": name, "path": "/etc/hostname"}, exec_),
    ):
        refused = await client.post(route, json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "not_managed", (route, refused.text)
    logs = await client.get(f"/docker/logs/{name}", headers=exec_)
    assert logs.status_code == 403
    inspected = (await client.get(f"/docker/containers/{name}", headers=await read_exec(services))).json()
    assert "API_KEY=<redacted>" in inspected["Config"]["Env"]  # not this service's: values hidden
    listed = {c["name"]: c for c in (await client.get("/docker/containers", headers=read)).json()}
    assert listed[name]["managed"] is False
    assert name not in {
        c["name"] for c in (await client.get("/docker/containers?managed=true", headers=read)).json()
    }
    assert json.loads(docker_cli("inspect", name).stdout)[0]["State"]["Running"] is True
    assert (await client.post("/docker/rmi", json={"id_or_name": image}, headers=operate)).status_code == 403
    docker_cli("stop", "-t", "0", name)
    assert (await client.post("/docker/prune", headers=operate)).status_code == 200
    assert docker_cli("inspect", name, check=False).returncode == 0  # a stopped foreign one is kept
    assert docker_cli("image", "inspect", image, check=False).returncode == 0


async def test_a_container_an_admin_gave_host_level_options_is_admin_only(
    tmp_path: Path, settings: Settings, unique: str
) -> None:
    config = Settings(
        data_dir=tmp_path,
        admin_token="hl-admin",  # type: ignore[arg-type]
        allow_privileged_options=True,
    )
    async with app_client(config) as (services, client):
        admin = {"Authorization": "Bearer hl-admin"}
        tokens = {}
        for scope in (Scope.OPERATE, Scope.EXEC):
            _, secret = await services.tokens.create(name=f"hl-{scope}", scopes=frozenset({scope}))
            tokens[scope] = {"Authorization": f"Bearer {secret}"}
        made = await run_ext(
            client, admin, name=f"{unique}-hl", command=["sleep", "600"], cap_add=["NET_ADMIN"]
        )
        assert made.status_code == 200, made.text
        stop = await client.post(
            "/docker/stop", json={"id_or_name": f"{unique}-hl"}, headers=tokens[Scope.OPERATE]
        )
        assert stop.status_code == 403 and "host-level" in stop.json()["detail"]
        execd = await client.post(
            "/docker/exec", json={"id_or_name": f"{unique}-hl", "cmd": ["id"]}, headers=tokens[Scope.EXEC]
        )
        assert execd.status_code == 403
        assert json.loads(docker_cli("inspect", f"{unique}-hl").stdout)[0]["State"]["Running"] is True
        ok = await client.post(
            "/docker/exec", json={"id_or_name": f"{unique}-hl", "cmd": ["id"]}, headers=admin
        )
        assert ok.status_code == 200


# --- 3. credentials and tags -----------------------------------------------------------------


class Recorder:
    """An HTTP server that records what reaches it (a registry an attacker would name)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="x"')
                self.end_headers()

            do_GET = do_POST = do_HEAD = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


async def test_the_operators_registry_credentials_never_go_elsewhere(
    client: httpx2.AsyncClient, operate: dict[str, str], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "operator")
    monkeypatch.setenv("DOCKERHUB_PASSWORD", "operator-secret")
    for body in (
        {"dockerhub_repo": f"{recorder.address}/x/y"},
        {"dockerhub_repo": f"{recorder.address}/x/y", "dockerhub_username": "attacker"},  # no env password
    ):
        refused = await client.post("/pipeline/html-site/start", json=body, headers=operate)
        assert refused.status_code == 422 and refused.json()["field"] == "dockerhub_username", refused.text
    await asyncio.sleep(0.5)
    assert recorder.requests == []


async def test_a_tag_of_an_image_this_service_did_not_build_cannot_be_moved(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    admin: dict[str, str],
    unique: str,
    settings: Settings,
) -> None:
    foreign = f"{unique}-postgres:16"
    docker_cli("tag", BASE_IMAGE, foreign)
    foreign_id = json.loads(docker_cli("image", "inspect", foreign).stdout)[0]["Id"]
    context = settings.context_paths[0] / f"{unique}-evil"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN echo evil > /evil\n")
    built = await client.post(
        "/docker/build-stream",
        json={"context_path": context.name, "tag": f"{unique}-evil:1"},
        headers=operate,
    )
    assert built.json()["status"] == "ok"
    moved = await client.post(
        "/docker/tag",
        json={"source": f"{unique}-evil:1", "repo": f"{unique}-postgres", "tag": "16"},
        headers=operate,
    )
    assert moved.status_code == 403 and moved.json()["code"] == "not_managed"
    rebuilt = await client.post(
        "/docker/build-stream", json={"context_path": context.name, "tag": foreign}, headers=operate
    )
    assert rebuilt.status_code == 403
    assert json.loads(docker_cli("image", "inspect", foreign).stdout)[0]["Id"] == foreign_id
    # Loading an archive that carries that tag: put back, and refused.
    docker_cli("tag", f"{unique}-evil:1", foreign)
    folder = settings.upload_path / f"{unique}-evil-task"
    folder.mkdir(parents=True)
    archive = folder / "evil.tar.lz4"
    save = subprocess.Popen(["docker", "save", foreign], stdout=subprocess.PIPE)
    subprocess.run(["lz4", "-q", "-", str(archive)], stdin=save.stdout, check=True)
    save.wait()
    docker_cli("tag", foreign_id, foreign)  # as it was
    loaded = await client.post(
        "/docker/localrun",
        json={"lz4_path": str(archive), "task_id": f"{unique}-evil-task", "command": ["sleep", "5"]},
        headers=operate,
    )
    assert loaded.status_code == 403 and "put back" in loaded.json()["detail"], loaded.text
    assert json.loads(docker_cli("image", "inspect", foreign).stdout)[0]["Id"] == foreign_id
    # An admin may move it.
    as_admin = await client.post(
        "/docker/tag",
        json={"source": f"{unique}-evil:1", "repo": f"{unique}-postgres", "tag": "16"},
        headers=admin,
    )
    assert as_admin.status_code == 200


# --- 4. paths and URLs -------------------------------------------------------------------------


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(argv, cwd=path, check=True, env=env)
    return path


async def test_clone_urls_are_decoded_before_they_are_confined(tmp_path: Path, unique: str) -> None:
    allowed = tmp_path / "repos"
    make_repo(allowed / "site", {"index.html": "hi"})
    outside = make_repo(tmp_path / "secret-repo", {"secret.txt": "secret"})
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="git-admin",  # type: ignore[arg-type]
        git_local_roots=[allowed],
    )
    async with app_client(config) as (_, client):
        headers = {"Authorization": "Bearer git-admin"}
        for url, expected in (
            # Decoded, these lie outside the root: 403 path_not_allowed.
            (f"file://{allowed}/%2e%2e/{outside.name}", 403),
            (f"file://{allowed}/%2E%2E%2F{outside.name}", 403),
            (f"file://{allowed}/..%2f{outside.name}", 403),
            (f"{allowed}/../{outside.name}", 403),
            (f"file://localhost{allowed}/%2e%2e/{outside.name}", 403),
            # Still encoded after one decoding: refused as it is, 422.
            (f"file://{allowed}/%252e%252e/{outside.name}", 422),
        ):
            refused = await client.post(
                "/pipeline/html-site/start",
                json={
                    "repo_url": url,
                    "dockerhub_repo": "x/y",
                    "dockerhub_username": "u",
                    "dockerhub_password": "p",
                },
                headers=headers,
            )
            assert refused.status_code == expected and refused.json()["field"] == "repo_url", (
                url,
                refused.text,
            )


async def test_a_repository_dockerfile_symlink_is_refused(tmp_path: Path) -> None:
    allowed = tmp_path / "repos"
    repo = make_repo(allowed / "site", {"index.html": "hi"})
    (repo / "Dockerfile").symlink_to("/etc/passwd")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "link"], cwd=repo, check=True, env=env)
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="git-admin",  # type: ignore[arg-type]
        git_local_roots=[allowed],
    )
    async with app_client(config) as (_, client):
        headers = {"Authorization": "Bearer git-admin"}
        started = await client.post(
            "/pipeline/html-site/start",
            json={
                "repo_url": str(repo),
                "dockerhub_repo": "127.0.0.1:1/x/y",
                "dockerhub_username": "u",
                "dockerhub_password": "p",
            },
            headers=headers,
        )
        status = await wait_final(client, headers, started.json()["task_id"])
    assert status["status"] == "error" and status["stage"] == "build"
    assert "symbolic link" in status["error"]


async def test_a_symlinked_task_folder_is_never_written_through(
    client: httpx2.AsyncClient, operate: dict[str, str], settings: Settings, unique: str, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    artefact_dir = settings.upload_path / f"{unique}-real"
    artefact_dir.mkdir(parents=True)
    (artefact_dir / "a.tar.lz4").write_bytes(b"not even lz4")
    task_id = f"{unique}-linked"
    (settings.upload_path / task_id).symlink_to(target)
    refused = await client.post(
        "/docker/localrun",
        json={"lz4_path": str(artefact_dir / "a.tar.lz4"), "task_id": task_id},
        headers=operate,
    )
    assert refused.status_code == 403 and refused.json()["code"] == "path_not_allowed", refused.text
    logs = await client.get(f"/tasks/logs/{task_id}", headers=operate)
    assert logs.status_code == 403  # operate does not read logs
    assert list(target.iterdir()) == []


def test_a_directory_swapped_for_a_symlink_is_not_followed(tmp_path: Path) -> None:
    """The build-context walk holds directory descriptors: a symlink in a directory's place is
    archived as a link, and its target's files are never read."""
    import io
    import tarfile

    from docker_manager.adapters.docker.build_context import DockerIgnore, _add_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("secret")
    root = tmp_path / "ctx"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_text("ok")
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_tree(tar, root, DockerIgnore.parse(""), set())
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"sub"} and members["sub"].issym()


# --- 5. what each scope may read ----------------------------------------------------------------


async def test_host_commands_are_admins_to_see_and_cancel(
    client: httpx2.AsyncClient,
    admin: dict[str, str],
    read: dict[str, str],
    operate: dict[str, str],
    unique: str,
) -> None:
    task_id = f"{unique}-cmd"
    started = asyncio.create_task(
        client.post(
            "/tasks/run-stream",
            json={"cmd": "echo secret-output; sleep 3", "task_id": task_id},
            headers=admin,
        )
    )
    for _ in range(100):
        if (await client.get(f"/tasks/status/{task_id}", headers=admin)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    for path in (f"/tasks/status/{task_id}", f"/tasks/logs/{task_id}", f"/tasks/{task_id}/events"):
        refused = await client.get(path, headers=read)
        assert refused.status_code == 403 and "secret-output" not in refused.text, path
    cancel = await client.post(f"/tasks/{task_id}/cancel", headers=operate)
    assert cancel.status_code == 403
    listed = (await client.get("/tasks", params={"type": "generic_task"}, headers=read)).json()
    assert listed["tasks"] == []
    answer = (await started).json()
    assert answer["exit_code"] == "0"  # it ran to its end: the cancel did nothing


async def test_container_output_in_a_summary_is_for_exec_tokens(
    client: httpx2.AsyncClient, read: dict[str, str], services: Runtime, settings: Settings, unique: str
) -> None:
    folder = settings.builds_path / f"{unique}-health"
    folder.mkdir(parents=True)
    (folder / "build.info.json").write_text(
        json.dumps({"status": "failed", "last_lines": ["DB_PASSWORD=hunter2 printed by the app"]})
    )
    as_read = (await client.get(f"/tasks/logs/{unique}-health", headers=read)).json()
    assert "hunter2" not in json.dumps(as_read)
    as_exec = (await client.get(f"/tasks/logs/{unique}-health", headers=await read_exec(services))).json()
    assert as_exec["build_metadata"]["summary"]["last_lines"] == ["DB_PASSWORD=hunter2 printed by the app"]


# --- 6. limits per caller --------------------------------------------------------------------


async def test_a_body_is_not_read_before_the_token_is_checked(live_url: str) -> None:
    host, port = live_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    # A promise of 900 KB that never comes: the answer must not wait for it.
    writer.write(
        b"POST /docker/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900000\r\n\r\n{"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    assert b" 401 " in status_line
    writer.close()


async def test_failed_authentication_is_rate_limited_per_address(tmp_path: Path) -> None:
    config = Settings(
        data_dir=tmp_path,
        admin_token="rl-admin",  # type: ignore[arg-type]
        auth_failure_limit=5,
        auth_failure_window=30,
    )
    async with app_client(config) as (_, client):
        codes = [
            (await client.get("/system/info", headers={"Authorization": f"Bearer wrong-{i}"})).status_code
            for i in range(8)
        ]
        assert codes[:4] == [401] * 4 and codes[4:] == [429] * 4  # the 5th failure starts the wait
        blocked = await client.get("/system/info", headers={"Authorization": "Bearer wrong-again"})
        assert int(blocked.headers["Retry-After"]) > 0
        # A valid token from the same address is never refused for others' failures.
        assert (
            await client.get("/system/info", headers={"Authorization": "Bearer rl-admin"})
        ).status_code == 200
        # Rotating X-Forwarded-For changes nothing: without a trusted proxy, every request that
        # carries one counts as the same unknown client (tests/integration/test_hostile_callers.py
        # has the same against real server processes).
        spoofed = [
            await client.get(
                "/system/info", headers={"Authorization": "Bearer x", "X-Forwarded-For": f"10.9.8.{i}"}
            )
            for i in range(8)
        ]
        assert [r.status_code for r in spoofed] == [401] * 4 + [429] * 4


async def test_every_kind_of_task_has_a_concurrency_limit(tmp_path: Path) -> None:
    config = Settings(
        data_dir=tmp_path,
        admin_token="lim-admin",  # type: ignore[arg-type]
        max_concurrent_commands=1,
    )
    async with app_client(config) as (_, client):
        headers = {"Authorization": "Bearer lim-admin"}
        first = asyncio.create_task(
            client.post("/tasks/run-stream", json={"cmd": "sleep 2", "task_id": "lim-1"}, headers=headers)
        )
        await asyncio.sleep(0.3)
        second = asyncio.create_task(
            client.post("/tasks/run-stream", json={"cmd": "sleep 0.1", "task_id": "lim-2"}, headers=headers)
        )
        await asyncio.sleep(0.3)
        status = (await client.get("/tasks/status/lim-2", headers=headers)).json()
        assert status["status"] == "queued" and status["queue_position"] == 1
        await first
        await second


async def test_the_first_start_token_file_is_private_from_its_creation(tmp_path: Path) -> None:
    # A symlink planted where the token file goes is replaced, never written through.
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").symlink_to(victim)
    async with app_client(Settings(data_dir=data)):
        pass
    token_file = data / "admin-token"
    assert not token_file.is_symlink() and token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().startswith("dm_")
    assert victim.read_text() == "untouched\n"
