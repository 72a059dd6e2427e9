"""Apps, releases, rollback and retention against the real engine and a real nginx."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import lz4.frame
import pytest

from docker_manager.config import Settings
from docker_manager.runner import TaskContext, TaskSpec
from docker_manager.runtime import Runtime
from docker_manager.util.clock import utcnow
from tests.harness import NginxServer, app_client, docker_cli, free_port, nginx, wait_final

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer rel-admin"}


@dataclass
class Deployed:
    release: int
    task_id: str
    container_id: str
    container_name: str
    port: int
    artefact: Path


@pytest.fixture(scope="module")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@dataclass
class App:
    client: httpx2.AsyncClient
    services: Runtime
    settings: Settings


def app_settings(tmp_path: Path, settings: Settings, server: NginxServer, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        admin_token="rel-admin",  # type: ignore[arg-type]
        context_roots=settings.context_roots or settings.context_paths,
        switch_drain_seconds=0.5,
        switch_stop_timeout=1,
        **server.settings(),  # type: ignore[arg-type]
        **extra,
    )


@pytest.fixture
async def app(tmp_path: Path, settings: Settings, nginx_server: NginxServer) -> AsyncIterator[App]:
    for leftover in nginx_server.sites.glob("*.conf"):
        leftover.unlink()
    config = app_settings(tmp_path, settings, nginx_server)
    async with app_client(config, timeout=120) as (services, client):
        yield App(client, services, config)


async def deploy(
    app: App, app_id: str, version: int, base_image: str, *, port: int | None = None
) -> Deployed:
    """Build version `version` of a busybox site, then localrun its artefact (a real release)."""
    context = app.settings.context_paths[0] / f"{app_id}-v{version}"
    context.mkdir(parents=True, exist_ok=True)
    # The app id in a layer: the same text in another test's app would be that build's cached
    # image, which this service did not make (and so would not remove).
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {app_id} > /app\n"
        f"RUN mkdir /www && echo release-{version} > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    started = await app.client.post(
        "/docker/build/start", json={"context_path": context.name, "app_id": app_id}, headers=ADMIN
    )
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    built = await wait_final(app.client, ADMIN, task_id, timeout=120)
    assert built["status"] == "completed", built
    artefact = app.settings.builds_path / task_id / f"{app_id}_latest.tar.lz4"
    assert artefact.is_file()
    port = port or free_port()
    ran = await app.client.post(
        "/docker/localrun",
        json={
            "lz4_path": str(artefact),
            "task_id": task_id,
            "ports": {"80/tcp": port},
            "env": {"SECRET_VALUE": f"secret-{version}"},
            "memory": "64m",
            "healthcheck_time": 1,
        },
        headers=ADMIN,
    )
    assert ran.status_code == 200, ran.text
    body = ran.json()
    await wait_serving(port, f"release-{version}")
    return Deployed(body["release"], task_id, body["container_id"], body["container_name"], port, artefact)


async def wait_serving(port: int, text: str) -> None:
    async with httpx2.AsyncClient(timeout=2) as web:
        for _ in range(100):
            try:
                if (await web.get(f"http://127.0.0.1:{port}/")).text.strip() == text:
                    return
            except httpx2.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"port {port} never served {text}")


async def sign(app: App, app_id: str, domain: str, new: Deployed, old: Deployed | None = None) -> None:
    body = {"domain": domain, "app_id": app_id, "new_container": new.container_name, "drain_seconds": 0}
    if old is not None:
        body["old_container"] = old.container_name
    signed = await app.client.post("/nginx/sign-domain", json=body, headers=ADMIN)
    assert signed.status_code == 200, signed.text


async def stop(client: httpx2.AsyncClient, ref: str) -> None:
    stopped = await client.post("/docker/stop", json={"id_or_name": ref, "timeout": 1}, headers=ADMIN)
    assert stopped.status_code == 200, stopped.text


def inspect(ref: str) -> dict[str, Any]:
    return json.loads(docker_cli("inspect", ref).stdout)[0]  # type: ignore[no-any-return]


def exists(kind: str, ref: str) -> bool:
    return docker_cli(kind, "inspect", ref, check=False).returncode == 0


async def rollback(app: App, app_id: str, **body: Any) -> dict[str, Any]:
    started = await app.client.post(f"/apps/{app_id}/rollback", json=body, headers=ADMIN)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "started"
    return await wait_final(app.client, ADMIN, started.json()["task_id"], timeout=90)


def same_config(new: dict[str, Any], old: dict[str, Any]) -> None:
    """What a rollback must reproduce exactly."""
    assert new["Image"] == old["Image"]
    for key in ("Cmd", "Entrypoint", "Env", "Labels", "ExposedPorts", "WorkingDir", "User"):
        assert new["Config"][key] == old["Config"][key], key
    for key in ("Memory", "NanoCpus", "RestartPolicy", "LogConfig", "NetworkMode", "Binds"):
        assert new["HostConfig"][key] == old["HostConfig"][key], key
    assert set(new["HostConfig"]["PortBindings"]) == set(old["HostConfig"]["PortBindings"])


async def test_releases_are_listed_and_rollback_with_a_site_drops_no_request(
    app: App, nginx_server: NginxServer, unique: str, base_image: str
) -> None:
    app_id, domain = unique, f"{unique}.example.com"
    first = await deploy(app, app_id, 1, base_image)
    await sign(app, app_id, domain, first)
    second = await deploy(app, app_id, 2, base_image)
    await sign(app, app_id, domain, second, first)
    third = await deploy(app, app_id, 3, base_image)
    await sign(app, app_id, domain, third, second)
    assert [first.release, second.release, third.release] == [1, 2, 3]

    listed = await app.client.get(f"/apps/{app_id}/releases", headers=ADMIN)
    assert listed.status_code == 200
    releases = listed.json()
    assert [(r["release"], r["status"], r["source"]) for r in releases] == [
        (3, "live", "localrun"),
        (2, "retained", "localrun"),
        (1, "retained", "localrun"),
    ]
    assert releases[2]["container_name"] == first.container_name and releases[2]["host_port"] == first.port
    assert releases[2]["task_id"].startswith("localrun-") and releases[2]["origin_task_id"] == first.task_id
    assert releases[0]["deployed_by"] and "secret-" not in listed.text
    apps = (await app.client.get("/apps", headers=ADMIN)).json()
    mine = next(a for a in apps if a["app_id"] == app_id)
    assert mine["live_release"] == 3 and mine["domains"] == [domain] and mine["host_port"] == third.port
    assert mine["state"] == "running" and mine["container_name"] == third.container_name
    # Env values are sealed at rest: not in the database in clear.
    raw = (app.settings.data_dir / "docker-manager.db").read_bytes()
    assert b"secret-1" not in raw and b"secret-3" not in raw

    failures: list[str] = []
    answers: set[str] = set()
    stop = asyncio.Event()

    async def hammer() -> None:
        # A fresh connection per request, like curl in a loop: nginx 1.22 closes idle keep-alive
        # connections as old workers exit on a reload, which browsers retry (see README).
        while not stop.is_set():
            async with httpx2.AsyncClient(timeout=5) as web:
                try:
                    reply = await web.get(f"http://127.0.0.1:{nginx_server.port}/", headers={"Host": domain})
                    if reply.status_code != 200:
                        failures.append(str(reply.status_code))
                    answers.add(reply.text.strip())
                except httpx2.HTTPError as exc:
                    failures.append(repr(exc))

    # Inspected now: retention (keep 3) removes release 1's own container once release 4 exists.
    first_inspect, third_inspect = inspect(first.container_id), inspect(third.container_id)
    loops = [asyncio.create_task(hammer()) for _ in range(3)]
    await asyncio.sleep(0.3)
    done = await rollback(app, app_id, release=1)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*loops)
    assert done["status"] == "completed", done
    assert failures == [] and answers == {"release-3", "release-1"}
    result = done["result"]
    assert result["release"] == 4 and result["restored_release"] == 1 and result["from_release"] == 3
    stages = [e["stage"] for e in done["events"] if e["status"] == "completed" and e["stage"]]
    assert stages[:5] == ["preparing", "starting", "health", "switching", "retiring"]
    restored = inspect(result["container_id"])
    same_config(restored, first_inspect)
    assert "SECRET_VALUE=secret-1" in restored["Config"]["Env"]
    assert inspect(third.container_id)["State"]["Running"] is False  # retired after the drain

    releases = (await app.client.get(f"/apps/{app_id}/releases", headers=ADMIN)).json()
    assert (releases[0]["release"], releases[0]["source"], releases[0]["restored_from"]) == (4, "rollback", 1)
    assert releases[0]["status"] == "live" and releases[1]["status"] == "retained"

    # Rolling back the rollback: the default is the newest release before the live one (3).
    again = await rollback(app, app_id)
    assert again["status"] == "completed", again
    assert again["result"]["restored_release"] == 3 and again["result"]["release"] == 5
    page = await httpx2.AsyncClient().get(f"http://127.0.0.1:{nginx_server.port}/", headers={"Host": domain})
    assert page.text.strip() == "release-3"
    same_config(inspect(again["result"]["container_id"]), third_inspect)


async def test_rollback_without_a_site_keeps_the_host_port_and_restores_on_failure(
    app: App, unique: str, base_image: str
) -> None:
    app_id = unique
    first = await deploy(app, app_id, 1, base_image)
    await stop(app.client, first.container_id)
    second = await deploy(app, app_id, 2, base_image)

    # A release that never answers as required: the previous container comes back.
    failed = await rollback(
        app, app_id, release=1, health_path="/missing", expected_status=200, health_timeout=2
    )
    assert failed["status"] == "error" and "started again" in failed["error"], failed
    assert inspect(second.container_id)["State"]["Running"] is True
    await wait_serving(second.port, "release-2")
    left = docker_cli("ps", "-aq", "--filter", f"name={unique}-").stdout.split()
    assert len(left) == 2  # the failed attempt's container was removed

    done = await rollback(app, app_id)  # default: release 1
    assert done["status"] == "completed", done
    assert [e["stage"] for e in done["events"] if e["status"] == "completed" and e["stage"]][:4] == [
        "preparing",
        "stopping",
        "starting",
        "health",
    ]
    await wait_serving(second.port, "release-1")  # the app kept its host port
    assert inspect(second.container_id)["State"]["Running"] is False
    restored = inspect(done["result"]["container_id"])
    same_config(restored, inspect(first.container_id))
    assert restored["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(second.port)

    refused = await app.client.post(f"/apps/{app_id}/rollback", json={"release": 3}, headers=ADMIN)
    assert refused.status_code == 409 and "already live" in refused.json()["detail"]
    missing = await app.client.post(f"/apps/{app_id}/rollback", json={"release": 9}, headers=ADMIN)
    assert missing.status_code == 404
    unknown = await app.client.get("/apps/no-such-app/releases", headers=ADMIN)
    assert unknown.status_code == 404


async def test_a_release_whose_image_left_the_host_says_what_is_missing_until_it_is_back(
    app: App, unique: str, base_image: str
) -> None:
    """As after a restore onto a new host: the engine lost a release's container and image (not
    pruned by this service). The release is listed `gone` with its image in `missing`; once the
    image is loaded again it is whole, and a rollback runs it from its recorded config."""
    app_id = unique
    first = await deploy(app, app_id, 1, base_image)
    image = inspect(first.container_id)["Image"]
    await stop(app.client, first.container_id)
    second = await deploy(app, app_id, 2, base_image)
    docker_cli("rm", "-f", first.container_id)
    docker_cli("rmi", image)

    listed = (await app.client.get(f"/apps/{app_id}/releases", headers=ADMIN)).json()
    one = next(r for r in listed if r["release"] == 1)
    assert one["status"] == "gone" and len(one["missing"]) == 1 and image in one["missing"][0], one
    assert all(r["missing"] == [] for r in listed if r["release"] != 1)
    refused = await app.client.post(f"/apps/{app_id}/rollback", json={"release": 1}, headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["missing"]["image_id"] == image, refused.text

    archive = lz4.frame.decompress(first.artefact.read_bytes())
    loaded = subprocess.run(["docker", "load"], input=archive, capture_output=True, check=False)
    assert loaded.returncode == 0, loaded.stderr
    listed = (await app.client.get(f"/apps/{app_id}/releases", headers=ADMIN)).json()
    one = next(r for r in listed if r["release"] == 1)
    assert one["status"] == "retained" and one["missing"] == [], one
    done = await rollback(app, app_id, release=1)
    assert done["status"] == "completed", done
    await wait_serving(second.port, "release-1")  # (on the app's host port)


async def test_retention_keeps_the_last_releases_and_nothing_else_is_touched(
    tmp_path: Path, settings: Settings, nginx_server: NginxServer, unique: str, base_image: str
) -> None:
    config = app_settings(tmp_path, settings, nginx_server, keep_releases=2)
    async with app_client(config, timeout=120) as (services, client):
        app = App(client, services, config)
        app_id = unique
        # An image this service did not make, named like the app's: never touched.
        docker_cli("tag", base_image, f"{app_id}-lookalike:v1")
        # Someone's upload, and releases of another app that name its folder as their task: the
        # file is not theirs, and retention never removes it.
        foreign = config.upload_path / f"{unique}-upload" / "someone_latest.tar.lz4"
        foreign.parent.mkdir(parents=True)
        foreign.write_bytes(b"not ours")
        for index in range(3):
            ran = await client.post(
                "/docker/run",
                json={
                    "name": f"{app_id}-other-{index}",
                    "image": base_image,
                    "command": ["sleep", "60"],
                    "app_id": f"{app_id}-other",
                    "task_id": foreign.parent.name,
                },
                headers=ADMIN,
            )
            assert ran.status_code == 200, ran.text
            await stop(client, ran.json()["id"])
        first = await deploy(app, app_id, 1, base_image)
        first_image = inspect(first.container_id)["Image"]
        await stop(client, first.container_id)
        second = await deploy(app, app_id, 2, base_image)
        third = await deploy(app, app_id, 3, base_image)

        for _ in range(100):  # retention runs in the background after the deploy
            releases = (await client.get(f"/apps/{app_id}/releases", headers=ADMIN)).json()
            if releases[-1]["status"] == "gone" and not first.artefact.exists():
                break
            await asyncio.sleep(0.1)
        assert [(r["release"], r["status"]) for r in releases] == [(3, "live"), (2, "retained"), (1, "gone")]
        assert not exists("container", first.container_id)
        assert not exists("image", first_image)
        assert not first.artefact.exists()
        assert second.artefact.exists() and third.artefact.exists()
        assert exists("container", second.container_id) and exists("container", third.container_id)
        assert exists("image", f"{app_id}-lookalike:v1") and exists("image", base_image)
        assert foreign.read_bytes() == b"not ours"
        others = (await client.get(f"/apps/{app_id}-other/releases", headers=ADMIN)).json()
        assert [r["status"] for r in others] == ["retained", "retained", "gone"]

        refused = await client.post(f"/apps/{app_id}/rollback", json={"release": 1}, headers=ADMIN)
        assert refused.status_code == 409
        assert refused.json()["missing"]["image_id"] == first_image

        # Tasks: a final task older than the retention goes (row, events, folder); the tasks
        # behind kept releases stay.
        async def quick(ctx: TaskContext) -> dict[str, Any]:
            await ctx.event("work", "completed", message="done")
            return {}

        record = await services.runner.submit(
            TaskSpec(task_type="test_task", work=quick, files_dir=config.builds_path / "old-task-1")
        )
        await wait_final(client, ADMIN, record.id)
        report = await services.retention.collect(now=utcnow() + timedelta(days=31))
        assert record.id in report.tasks and str(config.builds_path / "old-task-1") in report.task_folders
        assert (await client.get(f"/tasks/status/{record.id}", headers=ADMIN)).status_code == 404
        assert not (config.builds_path / "old-task-1").exists()
        assert second.task_id not in report.tasks and third.task_id not in report.tasks
        assert (config.builds_path / third.task_id / "build.info.json").exists()
        assert (await client.get(f"/tasks/status/{third.task_id}", headers=ADMIN)).status_code == 200
        docker_cli("rmi", f"{app_id}-lookalike:v1")


async def test_gc_route_is_admin_only_and_reports(app: App, operate: dict[str, str]) -> None:
    refused = await app.client.post("/system/gc", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    report = await app.client.post("/system/gc", headers=ADMIN)
    assert report.status_code == 200
    assert set(report.json()) >= {"releases_pruned", "images", "tasks", "bytes_reclaimed"}


async def test_system_disk_matches_df_and_the_engine(app: App) -> None:
    answer = await app.client.get("/system/disk", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    by_name = {fs["name"]: fs for fs in body["filesystems"]}
    assert set(by_name) == {"data", "builds", "upload", "engine"}
    df = (
        subprocess.run(
            ["df", "-B1", "--output=size,avail", str(app.settings.builds_path)],
            capture_output=True,
            text=True,
        )
        .stdout.split("\n")[1]
        .split()
    )
    assert by_name["builds"]["total_bytes"] == int(df[0])
    assert abs(by_name["builds"]["free_bytes"] - int(df[1])) < 64 << 20
    engine = json.loads(
        docker_cli("system", "df", "--format", "{{json .}}").stdout.splitlines()[0]
    )  # the first line: images
    assert engine["Type"] == "Images"
    assert body["engine"]["images"]["count"] == int(engine["TotalCount"])
