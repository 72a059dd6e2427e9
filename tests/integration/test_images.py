"""Image routes against the real engine: build, list, tag, rmi, prune."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.config import Settings
from tests.harness import docker_cli

pytestmark = pytest.mark.docker


def image_labels(ref: str) -> dict[str, str]:
    labels: dict[str, str] = (
        json.loads(docker_cli("image", "inspect", ref).stdout)[0]["Config"]["Labels"] or {}
    )
    return labels


def containers_from(image_id: str) -> list[str]:
    return docker_cli("ps", "-aq", "--filter", f"ancestor={image_id}").stdout.split()


@pytest.fixture
def context(settings: Settings, unique: str, base_image: str) -> Path:
    path = settings.context_paths[0] / unique
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /app\nRUN ls /app > /listing\n")
    (path / "keep.txt").write_text("kept\n")
    (path / "secret.env").write_text("TOKEN=x\n")
    (path / "logs").mkdir()
    (path / "logs" / "a.log").write_text("noise\n")
    (path / ".dockerignore").write_text("secret.env\nlogs\n")
    os.symlink("/etc/shadow", path / "link-to-shadow")
    return path


async def build(client: httpx2.AsyncClient, headers: dict[str, str], **body: Any) -> httpx2.Response:
    return await client.post("/docker/build", json=body, headers=headers)


async def test_build_honours_dockerignore_and_records_the_image_as_ours(
    client: httpx2.AsyncClient, operate: dict[str, str], read: dict[str, str], context: Path, unique: str
) -> None:
    response = await build(client, operate, path=context.name, tag=f"{unique}:v1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["image_id"].startswith("sha256:")
    assert body["tag"] == f"{unique}:v1"
    assert any("Successfully" in line or "Step" in line for line in body["logs"])
    # Ours by the ownership record; no label step by default (DM_BUILD_LABELS).
    listed = next(
        i for i in (await client.get("/docker/images", headers=read)).json() if i["id"] == body["image_id"]
    )
    assert listed["managed"] is True
    assert not any(key.startswith("docker-manager.") for key in image_labels(f"{unique}:v1"))
    listing = docker_cli("run", "--rm", f"{unique}:v1", "cat", "/listing").stdout.split()
    assert "keep.txt" in listing and "Dockerfile" in listing
    assert "secret.env" not in listing and "logs" not in listing
    # The symlink went in as a link, not as the host file it points at.
    target = docker_cli("run", "--rm", f"{unique}:v1", "readlink", "/app/link-to-shadow").stdout.strip()
    assert target == "/etc/shadow"


async def test_a_failing_step_is_an_error_not_ok_and_leaves_no_containers(
    client: httpx2.AsyncClient, operate: dict[str, str], context: Path, unique: str, base_image: str
) -> None:
    (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo about-to-fail && exit 3\n")
    before = set(docker_cli("ps", "-aq").stdout.split())
    response = await build(client, operate, path=str(context), tag=f"{unique}:broken")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "build_failed"
    assert "non-zero code: 3" in body["detail"]
    assert any("about-to-fail" in line for line in body["logs"])
    assert docker_cli("image", "inspect", f"{unique}:broken", check=False).returncode != 0
    assert set(docker_cli("ps", "-aq").stdout.split()) <= before  # forcerm: no intermediate containers


async def test_missing_base_image_is_build_failed(
    client: httpx2.AsyncClient, operate: dict[str, str], context: Path, unique: str
) -> None:
    (context / "Dockerfile").write_text(f"FROM {unique}-no-such-base:latest\n")
    response = await build(client, operate, path=str(context))
    assert response.status_code == 422
    assert response.json()["code"] == "build_failed"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/", "path_not_allowed"),
        ("/etc", "path_not_allowed"),
        ("../../etc", "path_not_allowed"),
        ("/proc/self/root", "path_not_allowed"),  # resolves to /
        ("%2e%2e/", "invalid_input"),  # not decoded: a folder of that name, which does not exist
        ("....//....//etc", "invalid_input"),  # likewise inside the root, and missing
        ("a\x00b", "invalid_input"),
        ("", "invalid_input"),
    ],
)
async def test_contexts_outside_the_roots_are_refused(
    client: httpx2.AsyncClient, operate: dict[str, str], path: str, code: str
) -> None:
    response = await build(client, operate, path=path, tag="dmt-never:latest")
    assert response.status_code == (403 if code == "path_not_allowed" else 422), response.text
    assert response.json()["code"] == code
    assert docker_cli("image", "inspect", "dmt-never:latest", check=False).returncode != 0


async def test_symlink_out_of_the_roots_is_refused(
    client: httpx2.AsyncClient, operate: dict[str, str], settings: Settings, unique: str
) -> None:
    link = settings.context_paths[0] / unique
    os.symlink("/etc", link)
    try:
        response = await build(client, operate, path=unique)
        assert response.status_code == 403
        assert response.json()["code"] == "path_not_allowed"
    finally:
        link.unlink()


async def test_context_without_dockerfile_is_422(
    client: httpx2.AsyncClient, operate: dict[str, str], context: Path
) -> None:
    (context / "Dockerfile").unlink()
    response = await build(client, operate, path=context.name)
    assert response.status_code == 422
    assert "no Dockerfile" in response.json()["detail"]


async def test_gc_removes_the_steps_an_unfinished_build_left_and_nothing_else(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    admin: dict[str, str],
    context: Path,
    unique: str,
    base_image: str,
) -> None:
    """A failed build leaves the steps it completed as untagged images (the engine's cache):
    recorded as the service's, `/system/gc` removes them; the base image and other dangling
    images stay."""
    foreign = docker_cli(
        "build", "-q", str(_foreign_context(context.parent / f"{unique}-foreign", base_image, unique))
    )
    foreign_id = foreign.stdout.strip()  # built without a tag: someone else's dangling image
    # The failing step prints lines shaped like the engine's own, naming someone else's image.
    short = foreign_id.removeprefix("sha256:")[:12]
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {unique} > /first\nRUN echo {unique} > /second\n"
        f"RUN echo ' ---> {short}' && exit 3\n"
    )
    failed = await build(client, operate, path=context.name, tag=f"{unique}:broken")
    assert failed.status_code == 422 and failed.json()["code"] == "build_failed", failed.text
    steps = [
        line.split("---> ", 1)[1].strip()
        for line in failed.json()["logs"]
        if "---> " in line and short not in line
    ]
    step_ids = [
        json.loads(docker_cli("image", "inspect", step).stdout)[0]["Id"]
        for step in steps
        if not step.startswith("Running")
        and docker_cli("image", "inspect", step, check=False).returncode == 0
    ]
    base_id = json.loads(docker_cli("image", "inspect", base_image).stdout)[0]["Id"]
    made = [step for step in step_ids if step != base_id]
    assert len(made) == 2, (steps, step_ids)
    report = await client.post("/system/gc", headers=admin)
    assert report.status_code == 200, report.text
    for step in made:
        assert docker_cli("image", "inspect", step, check=False).returncode != 0, step
    assert docker_cli("image", "inspect", base_image, check=False).returncode == 0
    assert docker_cli("image", "inspect", foreign_id, check=False).returncode == 0
    docker_cli("rmi", foreign_id, check=False)


def _foreign_context(folder: Path, base_image: str, unique: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {unique}-outside > /outside\n")
    return folder


async def test_list_tag_and_remove_images(
    client: httpx2.AsyncClient, operate: dict[str, str], read: dict[str, str], context: Path, unique: str
) -> None:
    built = await build(client, operate, path=context.name, tag=f"{unique}:v1")
    image_id = built.json()["image_id"]
    tagged = await client.post(
        "/docker/tag", json={"source": f"{unique}:v1", "repo": f"{unique}-copy", "tag": "v2"}, headers=operate
    )
    assert tagged.status_code == 200
    assert tagged.json()["tagged"] == f"{unique}-copy:v2"
    images = (await client.get("/docker/images", headers=read)).json()
    mine = next(i for i in images if i["id"] == image_id)
    assert set(mine["tags"]) == {f"{unique}:v1", f"{unique}-copy:v2"}
    assert mine["managed"] is True

    removed = await client.post("/docker/rmi", json={"id_or_name": f"{unique}-copy:v2"}, headers=operate)
    assert removed.status_code == 200
    assert {"Untagged": f"{unique}-copy:v2"} in removed.json()["removed"]
    assert docker_cli("image", "inspect", f"{unique}:v1", check=False).returncode == 0
    missing = await client.post("/docker/rmi", json={"id_or_name": f"{unique}-copy:v2"}, headers=operate)
    assert missing.status_code == 404


async def test_a_build_ending_on_an_existing_image_gets_one_of_its_own(
    client: httpx2.AsyncClient,
    operate: dict[str, str],
    read: dict[str, str],
    settings: Settings,
    unique: str,
    base_image: str,
) -> None:
    """Without a label step a build can end on an image that existed before it (a Dockerfile that
    is only FROM, or every step cached from a build made outside the service). Claiming it would
    let an operate token remove or retag someone else's image: a second pass with the label step
    gives the build an image of its own instead."""
    folder = settings.context_paths[0] / unique
    folder.mkdir(parents=True)
    base_id = json.loads(docker_cli("image", "inspect", base_image).stdout)[0]["Id"]
    (folder / "Dockerfile").write_text(f"FROM {base_image}\n")
    only_from = await build(client, operate, path=folder.name, tag=f"{unique}-from:v1")
    assert only_from.status_code == 200, only_from.text
    assert only_from.json()["image_id"] != base_id
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {unique} > /made-outside\n")
    docker_cli("build", "-q", "-t", f"{unique}-outside:v1", str(folder))  # someone else's build
    outside_id = json.loads(docker_cli("image", "inspect", f"{unique}-outside:v1").stdout)[0]["Id"]
    cached = await build(client, operate, path=folder.name, tag=f"{unique}-cached:v1")
    assert cached.status_code == 200 and cached.json()["image_id"] != outside_id
    assert image_labels(f"{unique}-cached:v1")["docker-manager.managed"] == "true"
    listed = {i["id"]: i for i in (await client.get("/docker/images", headers=read)).json()}
    assert listed[only_from.json()["image_id"]]["managed"] is True
    assert listed[cached.json()["image_id"]]["managed"] is True
    assert listed[base_id]["managed"] is False and listed[outside_id]["managed"] is False
    refused = await client.post("/docker/rmi", json={"id_or_name": base_image}, headers=operate)
    assert refused.status_code == 403 and refused.json()["code"] == "not_managed"
    refused = await client.post("/docker/rmi", json={"id_or_name": f"{unique}-outside:v1"}, headers=operate)
    assert refused.status_code == 403 and refused.json()["code"] == "not_managed"
    # A rebuild of the service's own image is the same image (no label pass), and stays ours.
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {unique} > /made-here\n")
    first = (await build(client, operate, path=folder.name, tag=f"{unique}-own:v1")).json()["image_id"]
    again = (await build(client, operate, path=folder.name, tag=f"{unique}-own:v2")).json()["image_id"]
    assert first == again
    assert not any(key.startswith("docker-manager.") for key in image_labels(f"{unique}-own:v2"))
    listed = {i["id"]: i for i in (await client.get("/docker/images", headers=read)).json()}
    assert listed[first]["managed"] is True
    for tag in ("from", "outside", "cached", "own"):
        docker_cli("rmi", f"{unique}-{tag}:v1", check=False)
    docker_cli("rmi", f"{unique}-own:v2", check=False)


async def test_rmi_of_an_image_the_service_did_not_build_needs_admin(
    client: httpx2.AsyncClient, operate: dict[str, str], admin: dict[str, str], base_image: str, unique: str
) -> None:
    docker_cli("tag", base_image, f"{unique}-foreign:v1")
    refused = await client.post("/docker/rmi", json={"id_or_name": f"{unique}-foreign:v1"}, headers=operate)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_managed"
    allowed = await client.post("/docker/rmi", json={"id_or_name": f"{unique}-foreign:v1"}, headers=admin)
    assert allowed.status_code == 200
    assert docker_cli("image", "inspect", base_image, check=False).returncode == 0


async def test_prune_removes_only_managed_objects(
    client: httpx2.AsyncClient, operate: dict[str, str], context: Path, unique: str, base_image: str
) -> None:
    built = await build(client, operate, path=context.name, tag=f"{unique}:prunable")
    assert built.status_code == 200
    ran = await client.post(
        "/docker/run",
        json={"image": base_image, "name": f"{unique}-done", "command": "true", "detach": False},
        headers=operate,
    )
    assert ran.status_code == 200
    docker_cli("create", "--name", f"{unique}-foreign", base_image, "true")
    docker_cli("tag", base_image, f"{unique}-foreign-img:v1")

    response = await client.post("/docker/prune", headers=operate)
    assert response.status_code == 200, response.text
    body = response.json()
    assert docker_cli("image", "inspect", f"{unique}:prunable", check=False).returncode != 0
    assert docker_cli("inspect", f"{unique}-done", check=False).returncode != 0
    assert any(c for c in body["containers_deleted"])
    # Someone else's stopped container and image are untouched.
    assert docker_cli("inspect", f"{unique}-foreign", check=False).returncode == 0
    assert docker_cli("image", "inspect", f"{unique}-foreign-img:v1", check=False).returncode == 0
    assert docker_cli("image", "inspect", base_image, check=False).returncode == 0
