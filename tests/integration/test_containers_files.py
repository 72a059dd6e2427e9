"""Files inside containers, against the real engine: a busybox container and a shell-less one."""

from __future__ import annotations

import base64
import json
import os
import resource
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import docker_cli

pytestmark = pytest.mark.docker


async def run_managed(client: httpx2.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    """A container this service creates (and so manages): through its own run route."""
    response = await client.post("/docker/run-extended", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(body["name"])


@pytest.fixture
async def box(client: httpx2.AsyncClient, operate: dict[str, str], unique: str, base_image: str) -> str:
    """A running busybox container the service manages, with a named volume at /data."""
    await run_managed(
        client,
        operate,
        image=base_image,
        name=unique,
        command=["sleep", "600"],
        volumes={f"{unique}-vol": {"bind": "/data"}},
    )
    docker_cli("exec", unique, "mkdir", "-p", "/tmp")  # the base image is FROM scratch: no /tmp
    return unique


@pytest.fixture
async def shellless(
    client: httpx2.AsyncClient, operate: dict[str, str], unique: str, tmp_path: Path
) -> AsyncIterator[str]:
    """A running container of an image with one static binary and no shell, no rm, no ls."""
    (tmp_path / "ctx").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", tmp_path / "ctx" / "busybox")
    (tmp_path / "ctx" / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sleep", "600"]\n'
    )
    image = f"{unique}-noshell:v1"
    docker_cli("build", "-q", "-t", image, str(tmp_path / "ctx"))
    name = f"{unique}-noshell"
    yield await run_managed(client, operate, image=image, name=name)


async def fs(client: httpx2.AsyncClient, headers: dict[str, str], op: str, **body: Any) -> httpx2.Response:
    return await client.post(f"/docker/container/fs/{op}", json=body, headers=headers)


def sh(container: str, script: str) -> str:
    return docker_cli("exec", container, "sh", "-c", script).stdout


async def test_write_read_round_trips_text_and_binary(
    client: httpx2.AsyncClient, exec_: dict[str, str], box: str
) -> None:
    written = await fs(
        client,
        exec_,
        "write",
        id_or_name=box,
        path="/srv/app/config.txt",
        content="héllo\nwörld\n",
        parents=True,
        mode=0o600,
    )
    assert written.status_code == 200, written.text
    assert written.json()["created_dirs"] == ["srv", "srv/app"]
    assert sh(box, "cat /srv/app/config.txt") == "héllo\nwörld\n"
    assert sh(box, "stat -c '%a %u' /srv/app/config.txt").split() == ["600", "0"]
    read = (await fs(client, exec_, "read", id_or_name=box, path="/srv/app/config.txt")).json()
    assert read["encoding"] == "utf-8" and read["content"] == "héllo\nwörld\n" and read["truncated"] is False

    blob = os.urandom(100_000) + b"\x00\xff"
    encoded = base64.b64encode(blob).decode()
    response = await fs(
        client, exec_, "write", id_or_name=box, path="/srv/blob.bin", content=encoded, base64=True
    )
    assert response.status_code == 200
    assert (
        docker_cli("exec", box, "md5sum", "/srv/blob.bin").stdout.split()[0]
        == __import__("hashlib").md5(blob).hexdigest()
    )
    back = (await fs(client, exec_, "read", id_or_name=box, path="/srv/blob.bin")).json()
    assert back["encoding"] == "base64" and base64.b64decode(back["content"]) == blob
    ranged = (
        await fs(client, exec_, "read", id_or_name=box, path="/srv/blob.bin", offset=10, length=20)
    ).json()
    assert base64.b64decode(ranged["content"]) == blob[10:30] and ranged["truncated"] is True
    # Overwriting replaces the file.
    await fs(client, exec_, "write", id_or_name=box, path="/srv/app/config.txt", content="v2")
    assert sh(box, "cat /srv/app/config.txt") == "v2"


async def test_write_refusals(client: httpx2.AsyncClient, exec_: dict[str, str], box: str) -> None:
    cases = [
        ({"path": "/etc", "content": "x"}, 409),
        ({"path": "/", "content": "x"}, 422),
        ({"path": "relative.txt", "content": "x"}, 422),
        ({"path": "/tmp/a\x00b", "content": "x"}, 422),
        ({"path": "/tmp/a\nb", "content": "x"}, 422),
        ({"path": "/no/such/dir/file", "content": "x"}, 404),
        ({"path": "/tmp/x", "content": "!!not base64!!", "base64": True}, 422),
        ({"path": "/tmp/x", "content": "x", "mode": 0o4755}, 422),
    ]
    for body, code in cases:
        response = await fs(client, exec_, "write", id_or_name=box, **body)
        assert response.status_code == code, (body, response.text)
        assert "code" in response.json()
    assert "x" not in sh(box, "ls /tmp").split()
    huge = await client.post(
        "/docker/container/fs/write",
        json={"id_or_name": box, "path": "/tmp/huge", "content": "a" * (15 << 20)},
        headers=exec_,
    )
    assert huge.status_code == 413


async def test_list_one_directory_sorted_and_paginated(
    client: httpx2.AsyncClient, exec_: dict[str, str], box: str
) -> None:
    sh(
        box,
        "mkdir -p /work/sub/deeper && for i in $(seq 1 25); do echo $i > /work/f$(printf %02d $i); done; "
        "ln -s /etc/passwd /work/link; touch /work/sub/deeper/hidden",
    )
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        body: dict[str, Any] = {"id_or_name": box, "path": "/work", "limit": 10}
        if cursor:
            body["cursor"] = cursor
        page = (await fs(client, exec_, "list", **body)).json()
        seen.extend(page["entries"])
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
    names = [e["name"] for e in seen]
    assert names == sorted([f"f{i:02d}" for i in range(1, 26)] + ["link", "sub"])
    assert pages == 3
    by_name = {e["name"]: e for e in seen}
    # `type` is the original's dir/file; `kind` tells the rest apart.
    assert by_name["sub"]["type"] == "dir" and by_name["sub"]["kind"] == "directory"
    assert by_name["link"]["kind"] == "symlink" and by_name["link"]["link_target"] == "/etc/passwd"
    assert by_name["f01"]["type"] == "file" and by_name["f01"]["size"] == 2
    assert by_name["f01"]["mode"] == 0o644 and by_name["f01"]["path"] == "/work/f01"
    assert page["stat"]["name"] == "work" and page["stat"]["mode"] & (1 << 31)  # the engine's dir bit
    assert "hidden" not in names and "deeper" not in names  # one level, not a recursive dump
    not_dir = await fs(client, exec_, "list", id_or_name=box, path="/work/f01")
    assert not_dir.status_code == 409
    missing = await fs(client, exec_, "list", id_or_name=box, path="/nope")
    assert missing.status_code == 404


async def test_mkdir(client: httpx2.AsyncClient, exec_: dict[str, str], box: str) -> None:
    no_parents = await fs(client, exec_, "mkdir", id_or_name=box, path="/a/b/c", parents=False)
    assert no_parents.status_code == 404
    made = await fs(client, exec_, "mkdir", id_or_name=box, path="/a/b/c")  # mkdir -p by default
    assert made.status_code == 200 and made.json()["created_dirs"] == ["a", "a/b", "a/b/c"]
    assert made.json()["exit_code"] == 0
    assert sh(box, "test -d /a/b/c && echo yes").strip() == "yes"
    assert (await fs(client, exec_, "mkdir", id_or_name=box, path="/a/b/c", parents=False)).status_code == 409
    assert (await fs(client, exec_, "mkdir", id_or_name=box, path="/a/b/c", parents=True)).status_code == 200
    sh(box, "touch /a/file")
    assert (
        await fs(client, exec_, "mkdir", id_or_name=box, path="/a/file/x", parents=True)
    ).status_code == 409


async def test_delete_and_its_refusals(client: httpx2.AsyncClient, exec_: dict[str, str], box: str) -> None:
    sh(box, "mkdir -p /gone/inner && touch /gone/inner/f /lonely && touch /data/keep")
    assert (await fs(client, exec_, "delete", id_or_name=box, path="/lonely")).json()["deleted"] is True
    assert sh(box, "test -e /lonely || echo absent").strip() == "absent"
    refused = await fs(client, exec_, "delete", id_or_name=box, path="/gone", recursive=False)
    assert refused.status_code == 409
    gone = await fs(client, exec_, "delete", id_or_name=box, path="/gone")  # rm -rf by default
    assert gone.status_code == 200 and gone.json()["exit_code"] == 0
    assert sh(box, "test -e /gone || echo absent").strip() == "absent"
    for path in ("/", "/proc", "/proc/1", "/sys", "/dev", "/dev/null", "/data", "/.", "/data/..", ""):
        response = await fs(client, exec_, "delete", id_or_name=box, path=path, recursive=True)
        assert response.status_code == 422, (path, response.text)
    assert sh(box, "ls /data").split() == ["keep"]
    missing = await fs(client, exec_, "delete", id_or_name=box, path="/missing")
    assert missing.status_code == 200 and missing.json() == {
        "path": "/missing",
        "exit_code": 0,
        "deleted": False,
        "type": None,
        "helper": False,
    }
    # A leading dash is a path, never an option of rm.
    sh(box, "touch /tmp/-rf")
    assert (await fs(client, exec_, "delete", id_or_name=box, path="/tmp/-rf")).status_code == 200


async def test_deleting_through_a_host_bind_mount_is_refused(
    client: httpx2.AsyncClient,
    exec_: dict[str, str],
    admin: dict[str, str],
    unique: str,
    base_image: str,
    tmp_path: Path,
) -> None:
    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    (host_dir / "precious").write_text("host data\n")
    name = f"{unique}-bind"
    # Made by hand (a bind mount is host-level): only an admin may touch it, and even an admin may
    # not delete through the bind mount.
    docker_cli("run", "-d", "--name", name, "-v", f"{host_dir}:/mnt/host", base_image, "sleep", "600")
    not_ours = await fs(client, exec_, "delete", id_or_name=name, path="/mnt/host/precious")
    assert not_ours.status_code == 403 and not_ours.json()["code"] == "not_managed"
    for path in ("/mnt/host/precious", "/mnt/host", "/mnt"):
        response = await fs(client, admin, "delete", id_or_name=name, path=path, recursive=True)
        assert response.status_code == 422, (path, response.text)
    assert (host_dir / "precious").read_text() == "host data\n"


async def test_a_shell_less_image_lists_reads_writes_mkdirs_and_deletes(
    client: httpx2.AsyncClient, exec_: dict[str, str], shellless: str
) -> None:
    assert docker_cli("exec", shellless, "sh", "-c", "true", check=False).returncode != 0
    listed = (await fs(client, exec_, "list", id_or_name=shellless, path="/bin")).json()
    assert [e["name"] for e in listed["entries"]] == ["busybox"]
    assert (await fs(client, exec_, "mkdir", id_or_name=shellless, path="/cfg")).status_code == 200
    wrote = await fs(client, exec_, "write", id_or_name=shellless, path="/cfg/app.json", content='{"a": 1}')
    assert wrote.status_code == 200
    read = (await fs(client, exec_, "read", id_or_name=shellless, path="/cfg/app.json")).json()
    assert json.loads(read["content"]) == {"a": 1}
    # No rm in the image: a static helper is copied in, runs `rm`, and is removed again.
    await fs(client, exec_, "mkdir", id_or_name=shellless, path="/cfg/sub/deeper")
    await fs(client, exec_, "write", id_or_name=shellless, path="/cfg/sub/deeper/x", content="x")
    deleted = await fs(client, exec_, "delete", id_or_name=shellless, path="/cfg/app.json")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"] is True and deleted.json()["helper"] is True
    tree = await fs(client, exec_, "delete", id_or_name=shellless, path="/cfg/sub")
    assert tree.status_code == 200 and tree.json()["type"] == "directory"
    left = (await fs(client, exec_, "list", id_or_name=shellless, path="/", recursive=True)).json()
    names = [e["name"] for e in left["entries"]]
    assert "cfg" in names and not [n for n in names if n.startswith("cfg/")]
    assert not [n for n in names if ".dm-rm-" in n]  # the helper went too
    for path in ("/", "/proc", "/dev/null"):  # the same refusals as with the image's own rm
        response = await fs(client, exec_, "delete", id_or_name=shellless, path=path)
        assert response.status_code == 422


async def test_a_stopped_container_can_still_be_browsed(
    client: httpx2.AsyncClient, exec_: dict[str, str], box: str
) -> None:
    sh(box, "echo kept > /note")
    docker_cli("stop", "-t", "0", box)
    read = (await fs(client, exec_, "read", id_or_name=box, path="/note")).json()
    assert read["content"] == "kept\n"
    assert (await fs(client, exec_, "write", id_or_name=box, path="/note2", content="x")).status_code == 200
    assert (await fs(client, exec_, "delete", id_or_name=box, path="/note")).status_code == 409


async def test_a_100_mb_file_is_refused_without_reading_it(
    client: httpx2.AsyncClient, exec_: dict[str, str], box: str
) -> None:
    sh(box, "head -c 100000000 /dev/urandom > /big.bin")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = await fs(client, exec_, "read", id_or_name=box, path="/big.bin")
    assert response.status_code == 413 and response.json()["size"] == 100_000_000
    middle = await fs(
        client, exec_, "read", id_or_name=box, path="/big.bin", offset=60_000_000, length=1 << 20
    )
    assert middle.status_code == 200 and middle.json()["length"] == 1 << 20
    expected = docker_cli(
        "exec", box, "sh", "-c", "tail -c +60000001 /big.bin | head -c 16 | od -An -tx1"
    ).stdout
    got = base64.b64decode(middle.json()["content"])[:16]
    assert got.hex() == "".join(expected.split())
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 30, grown_mib


async def test_scope_and_ownership(
    client: httpx2.AsyncClient,
    read: dict[str, str],
    operate: dict[str, str],
    exec_: dict[str, str],
    admin: dict[str, str],
    unique: str,
    base_image: str,
) -> None:
    foreign = f"{unique}-foreign"
    docker_cli("run", "-d", "--name", foreign, base_image, "sleep", "600")
    for headers in (read, operate):
        assert (await fs(client, headers, "list", id_or_name=foreign, path="/")).status_code == 403
    refused = await fs(client, exec_, "read", id_or_name=foreign, path="/etc/hostname")
    assert refused.status_code == 403 and refused.json()["code"] == "not_managed"
    assert (await fs(client, admin, "list", id_or_name=foreign, path="/bin")).status_code == 200


async def test_raw_download_streams_any_size(
    client: httpx2.AsyncClient, exec_: dict[str, str], box: str
) -> None:
    sh(box, "head -c 30000000 /dev/urandom > /raw.bin")
    digest = docker_cli("exec", box, "md5sum", "/raw.bin").stdout.split()[0]
    accept = {**exec_, "Accept": "application/octet-stream"}
    response = await client.post(
        "/docker/container/fs/read", json={"id_or_name": box, "path": "/raw.bin"}, headers=accept
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert __import__("hashlib").md5(response.content).hexdigest() == digest
    part = await client.post(
        "/docker/container/fs/read",
        json={"id_or_name": box, "path": "/raw.bin", "offset": 5, "length": 100},
        headers=accept,
    )
    assert part.content == response.content[5:105]
    directory = await client.post(
        "/docker/container/fs/read", json={"id_or_name": box, "path": "/"}, headers=accept
    )
    assert directory.status_code == 409
