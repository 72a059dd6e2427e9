"""nginx sites and traffic switching against a real nginx and real containers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from docker_manager.adapters.netfilter import chain_of
from docker_manager.adapters.site_header import read_header
from docker_manager.config import Settings
from tests.harness import NginxServer, app_client, docker_cli, free_port, nginx

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer nginx-admin"}


@pytest.fixture(scope="module")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture
async def app(
    tmp_path: Path, nginx_server: NginxServer, settings: Settings
) -> AsyncIterator[httpx2.AsyncClient]:
    for leftover in nginx_server.sites.glob("*.conf"):  # every test starts with no sites
        leftover.unlink()
    config = Settings(
        data_dir=tmp_path,
        admin_token="nginx-admin",  # type: ignore[arg-type]
        switch_drain_seconds=1,
        switch_stop_timeout=1,
        **nginx_server.settings(),
    )  # type: ignore[arg-type]
    async with app_client(config, timeout=60) as (services, client):
        client.settings = config  # type: ignore[attr-defined]
        client.services = services  # type: ignore[attr-defined]
        yield client


async def web(
    client: httpx2.AsyncClient,
    name: str,
    text: str,
    *,
    port: int | None = None,
    serve: bool = True,
    app_id: str | None = None,
) -> tuple[str, int]:
    """A managed busybox container answering `text` on a host port."""
    port = port or free_port()
    script = (
        f"mkdir -p /www && echo {text} > /www/index.html && httpd -f -p 80 -h /www" if serve else "sleep 600"
    )
    response = await client.post(
        "/docker/run",
        json={
            "image": "dm-test-bb:latest",
            "name": name,
            "command": ["sh", "-c", script],
            "ports": {"80/tcp": port},
            "env": {"KEPT": "yes"},
            "memory": "64m",
            "app_id": app_id,
        },
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    if serve:
        async with httpx2.AsyncClient() as probe:
            for _ in range(50):
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                await asyncio.sleep(0.1)
    return response.json()["id"], port


async def through_nginx(server: NginxServer, domain: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as browser:
        return await browser.get(f"http://127.0.0.1:{server.port}/", headers={"Host": domain})


def snapshot(server: NginxServer) -> tuple[int, dict[str, str]]:
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in server.sites.iterdir()}
    return server.master_pid(), files


async def test_sites_are_served_side_by_side_and_deleted(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    _, port_a = await web(app, f"{unique}-a", "site-a")
    _, port_b = await web(app, f"{unique}-b", "site-b")
    created = await app.post(
        "/nginx/site/create", json={"domain": "a.example.com", "port": port_a}, headers=ADMIN
    )
    assert created.status_code == 200, created.text
    assert created.json()["nginx_reload"]["verified"] is True
    # A second site must not break the first (the original's duplicate limit_req_zone did).
    second = await app.post(
        "/nginx/site/create",
        json={"domain": "b.example.com", "port": port_b, "app_id": "bee"},
        headers=ADMIN,
    )
    assert second.status_code == 200, second.text
    assert (nginx_server.sites / "bee.conf").is_file()
    assert (await through_nginx(nginx_server, "a.example.com")).text.strip() == "site-a"
    assert (await through_nginx(nginx_server, "b.example.com")).text.strip() == "site-b"
    assert (await through_nginx(nginx_server, "other.example.com")).status_code == 404
    taken = await app.post(
        "/nginx/site/create",
        json={"domain": "a.example.com", "port": port_b, "app_id": "thief"},
        headers=ADMIN,
    )
    assert taken.status_code == 409
    deleted = await app.post("/nginx/site/delete", json={"domain": "a.example.com"}, headers=ADMIN)
    assert deleted.status_code == 200, deleted.text
    assert sorted(p.name for p in nginx_server.sites.iterdir()) == ["bee.conf"], deleted.text
    assert (await through_nginx(nginx_server, "a.example.com")).status_code == 404
    assert (await through_nginx(nginx_server, "b.example.com")).text.strip() == "site-b"
    assert (
        await app.post("/nginx/site/delete", json={"domain": "a.example.com"}, headers=ADMIN)
    ).status_code == 404


HOSTILE_DOMAINS = [
    "example.com;\ninclude /etc/passwd",
    "a.com\nserver{listen 80;}",
    "a.com { }",
    "a.com$host",
    "a.com#",
    "a.com\r\n",
    "http://a.com/#;\ninjection_point",
    "a.com/..",
    "*",
    "_",
    "localhost",
    "127.0.0.1",
    "exämple.com",
    "a" * 64 + ".com",
    "-a.com",
    "a.com.",
    "a b.com",
    "",
    "a.*.com",
    "x" * 250 + ".com",
    " a.com",
    "a.com ",
]


async def test_hostile_domains_are_refused_with_nothing_written(
    app: httpx2.AsyncClient, nginx_server: NginxServer
) -> None:
    before = snapshot(nginx_server)
    for domain in HOSTILE_DOMAINS:
        for route, body in (
            ("/nginx/site/create", {"domain": domain, "port": 8080}),
            ("/nginx/site/delete", {"domain": domain}),
            ("/nginx/sign-domain", {"domain": domain, "app_id": "x", "new_container": "x"}),
            ("/app/update-port", {"domain": domain, "task_id": "t", "new_port": 8080}),
        ):
            response = await app.post(route, json=body, headers=ADMIN)
            assert response.status_code == 422, (route, domain, response.text)
    assert snapshot(nginx_server) == before


async def test_conf_dir_outside_the_allowlist_and_foreign_ports_are_refused(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    _, port = await web(app, unique, "x")
    before = snapshot(nginx_server)
    for conf_dir in ("/etc", "/tmp", f"{nginx_server.sites}/../../..", f"{nginx_server.prefix}"):
        response = await app.post(
            "/nginx/site/create",
            json={"domain": "c.example.com", "port": port, "conf_dir": conf_dir},
            headers=ADMIN,
        )
        assert response.status_code == 403, conf_dir
    for app_id in ("../nginx", "-x", "a/b", "a b", ".hidden"):
        response = await app.post(
            "/nginx/site/create",
            json={"domain": "c.example.com", "port": port, "app_id": app_id},
            headers=ADMIN,
        )
        assert response.status_code == 422
    not_ours = await app.post(
        "/nginx/site/create", json={"domain": "c.example.com", "port": 22}, headers=ADMIN
    )
    assert not_ours.status_code == 422
    assert snapshot(nginx_server) == before


async def test_a_config_nginx_refuses_leaves_the_old_site_serving(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    _, port = await web(app, unique, "still-here")
    await app.post("/nginx/site/create", json={"domain": "keep.example.com", "port": port}, headers=ADMIN)
    broken = nginx_server.sites / "someone-else.conf"
    broken.write_text("server { this is not nginx }\n")
    try:
        pid = nginx_server.master_pid()
        response = await app.post(
            "/nginx/site/create", json={"domain": "new.example.com", "port": port}, headers=ADMIN
        )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "nginx_config_invalid" and "someone-else.conf" in body["detail"]
        assert not (nginx_server.sites / "new.example.com.conf").exists()
        assert nginx_server.master_pid() == pid
        assert (await through_nginx(nginx_server, "keep.example.com")).text.strip() == "still-here"
    finally:
        broken.unlink()


async def test_switching_versions_under_load_drops_no_request(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    first, _ = await web(app, f"{unique}-v1", "version-1", app_id="shop")
    second, _ = await web(app, f"{unique}-v2", "version-2", app_id="shop")
    signed = await app.post(
        "/nginx/sign-domain",
        json={"domain": "shop.example.com", "app_id": "shop", "new_container": f"{unique}-v1"},
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["stage"] == "signing_domain" and signed.json()["status"] == "completed"
    assert (await through_nginx(nginx_server, "shop.example.com")).text.strip() == "version-1"

    failures: list[str] = []
    answers: list[str] = []
    stop = asyncio.Event()

    url, host = f"http://127.0.0.1:{nginx_server.port}/", {"Host": "shop.example.com"}

    async def hammer(keepalive: bool) -> None:
        """A client looping over GETs: a fresh connection each time (like curl in a loop), or one
        kept alive that never retries (a switch moves new upstream connections in the kernel:
        nginx is not reloaded, so its client connections are never closed under a request)."""
        async with httpx2.AsyncClient(timeout=5) as shared:
            while not stop.is_set():
                try:
                    if keepalive:
                        reply = await shared.get(url, headers=host)
                    else:
                        async with httpx2.AsyncClient(timeout=5) as fresh:
                            reply = await fresh.get(url, headers=host)
                    if reply.status_code != 200:
                        failures.append(str(reply.status_code))
                    answers.append(reply.text.strip())
                except httpx2.HTTPError as exc:
                    failures.append(repr(exc))

    workers = nginx_workers(nginx_server)
    loops = [asyncio.create_task(hammer(keepalive)) for keepalive in (False, True, True)]
    switches = []
    for new, old in (("v2", None), ("v1", None), ("v2", "v1")):
        await asyncio.sleep(0.4)
        seen = len(answers)
        body = {"domain": "shop.example.com", "app_id": "shop", "new_container": f"{unique}-{new}"}
        retire = {"old_container": f"{unique}-{old}"} if old else {}
        switches.append(await app.post("/nginx/sign-domain", json={**body, **retire}, headers=ADMIN))
        await asyncio.sleep(0.4)
        assert f"version-{new[1]}" in answers[seen:]
    stop.set()
    await asyncio.gather(*loops)
    assert [s.status_code for s in switches] == [200, 200, 200], switches[-1].text
    assert failures == []
    assert {"version-1", "version-2"} == set(answers)
    switched = switches[-1].json()
    assert (switched["nginx_reload"]["mechanism"], switched["nginx_reload"]["nginx_reloaded"]) == (
        "nat",
        False,
    )
    assert nginx_workers(nginx_server) == workers  # not one reload
    assert switched["old_stop"]["status"] == "exited"
    assert json.loads(docker_cli("inspect", first).stdout)[0]["State"]["Running"] is False
    assert json.loads(docker_cli("inspect", second).stdout)[0]["State"]["Running"] is True


def nginx_workers(server: NginxServer) -> set[int]:
    return {child.pid for child in psutil.Process(server.master_pid()).children()}


async def test_a_lost_kernel_rule_is_put_back_at_start(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    _, port = await web(app, f"{unique}-kept", "kept", app_id="kept")
    signed = await app.post(
        "/nginx/sign-domain",
        json={"domain": "kept.example.com", "app_id": "kept", "new_container": f"{unique}-kept"},
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text
    header = read_header(nginx_server.sites / "kept.conf")
    assert header is not None and header.front is not None and header.upstream.port == port
    chain = chain_of(header.front)
    assert f"--to-destination 127.0.0.1:{port}" in iptables("-S", chain)
    iptables("-F", chain)  # as after a reboot: the file is there, the rule is not
    assert (await through_nginx(nginx_server, "kept.example.com")).status_code == 502
    await app.services.sites.switch.start()  # type: ignore[attr-defined]
    assert (await through_nginx(nginx_server, "kept.example.com")).text.strip() == "kept"
    # Deleting the site removes its rule too.
    deleted = await app.post("/nginx/site/delete", json={"domain": "kept.example.com"}, headers=ADMIN)
    assert deleted.status_code == 200, deleted.text
    assert chain not in iptables("-S")


def iptables(*args: str) -> str:
    return subprocess.run(["iptables", "-w", "5", "-t", "nat", *args], capture_output=True, text=True).stdout


async def test_an_unhealthy_new_container_changes_nothing(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    await web(app, f"{unique}-good", "good", app_id="stable")
    await app.post(
        "/nginx/sign-domain",
        json={"domain": "stable.example.com", "app_id": "stable", "new_container": f"{unique}-good"},
        headers=ADMIN,
    )
    await web(app, f"{unique}-mute", "", serve=False, app_id="stable")
    before = snapshot(nginx_server)
    response = await app.post(
        "/nginx/sign-domain",
        json={
            "domain": "stable.example.com",
            "app_id": "stable",
            "new_container": f"{unique}-mute",
            "old_container": f"{unique}-good",
            "health_timeout": 1,
        },
        headers=ADMIN,
    )
    assert response.status_code == 409 and response.json()["code"] == "unhealthy_container"
    assert snapshot(nginx_server) == before
    assert (await through_nginx(nginx_server, "stable.example.com")).text.strip() == "good"
    assert json.loads(docker_cli("inspect", f"{unique}-good").stdout)[0]["State"]["Running"] is True


def write_task(app: httpx2.AsyncClient, task_id: str, info: dict[str, Any]) -> Path:
    settings: Settings = app.settings  # type: ignore[attr-defined]
    folder = settings.upload_path / task_id
    folder.mkdir(parents=True)
    (folder / "build.info.json").write_text(json.dumps(info))
    return folder


async def test_sign_domain_from_a_task_and_update_port(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    name = f"{unique}-app"
    container_id, port = await web(app, name, "moving", app_id="mover")
    folder = write_task(
        app,
        f"{unique}-task",
        {
            "status": "successful",
            "app_id": "mover",
            "container_id": container_id,
            "container_name": name,
            "host_port": port,
            "localrun": {"app_id": "mover", "internal_port_key": "80/tcp"},
        },
    )
    signed = await app.post(
        "/nginx/sign-domain",
        json={"domain": "mover.example.com", "task_id": f"{unique}-task"},
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["port"] == port and (nginx_server.sites / "mover.conf").is_file()
    assert json.loads((folder / "build.info.json").read_text())["upstream"]["port"] == port

    new_port = free_port()
    moved = await app.post(
        "/app/update-port",
        json={"task_id": f"{unique}-task", "new_port": new_port, "domain": "mover.example.com"},
        headers=ADMIN,
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["stage"] == "update_port" and body["new_port"] == new_port
    assert body["container"]["name"] == name
    assert body["stop"] == {"status": "stopped"} and body["remove"] == {"status": "removed"}
    inspect = json.loads(docker_cli("inspect", name).stdout)[0]
    assert inspect["Id"] != container_id
    assert inspect["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(new_port)
    assert inspect["HostConfig"]["Memory"] == 64 << 20  # limits kept
    assert "KEPT=yes" in inspect["Config"]["Env"] and inspect["Config"]["Cmd"][0] == "sh"
    assert inspect["Config"]["Labels"]["docker-manager.managed"] == "true"
    assert docker_cli("inspect", container_id, check=False).returncode != 0  # the old one is gone
    assert (await through_nginx(nginx_server, "mover.example.com")).text.strip() == "moving"
    info = json.loads((folder / "build.info.json").read_text())
    assert info["host_port"] == new_port and info["localrun"]["ports_requested"] == {"80/tcp": new_port}

    # A port already taken: the running container and nginx stay as they are.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        before = snapshot(nginx_server)
        refused = await app.post(
            "/app/update-port",
            json={"task_id": f"{unique}-task", "new_port": taken, "domain": "mover.example.com"},
            headers=ADMIN,
        )
    assert refused.status_code == 409 and refused.json()["code"] == "port_in_use"
    assert snapshot(nginx_server) == before
    assert json.loads(docker_cli("inspect", name).stdout)[0]["State"]["Running"] is True
    assert (await through_nginx(nginx_server, "mover.example.com")).text.strip() == "moving"
    assert docker_cli("ps", "-aq", "--filter", f"name={name}-next").stdout.split() == []


def bridge_ip(name: str) -> str:
    networks = json.loads(docker_cli("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


async def test_sign_domain_to_an_unpublished_port_follows_the_container_across_restarts(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    """As the original: a localrun without `ports` is signed on the container's own port."""
    old_id, _ = await web(app, f"{unique}-old", "old-version", app_id="quiet")
    write_task(app, f"{unique}-old-task", {"app_id": "quiet", "container_id": old_id})
    script = "mkdir -p /www && echo unpublished > /www/index.html && httpd -f -p 8080 -h /www"
    run = await app.post(
        "/docker/run",
        json={"image": "dm-test-bb:latest", "name": f"{unique}-quiet", "command": ["sh", "-c", script]},
        headers=ADMIN,
    )
    assert run.status_code == 200 and run.json()["ports"] == {}
    write_task(
        app,
        f"{unique}-quiet-task",
        {
            "app_id": "quiet",
            "container_name": f"{unique}-quiet",
            "localrun": {"app_id": "quiet", "internal_port_key": "8080/tcp"},
        },
    )
    signed = await app.post(
        "/nginx/sign-domain",
        json={
            "domain": "quiet.example.com",
            "task_id": f"{unique}-quiet-task",
            "old_task_id": f"{unique}-old-task",  # the original's way to name the old container
        },
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["upstream"] == f"{bridge_ip(f'{unique}-quiet')}:8080"
    assert signed.json()["old_stop"]["id"] == old_id
    assert json.loads(docker_cli("inspect", old_id).stdout)[0]["State"]["Running"] is False
    assert (await through_nginx(nginx_server, "quiet.example.com")).text.strip() == "unpublished"
    # The container comes back with another address: the site follows it.
    first = bridge_ip(f"{unique}-quiet")
    docker_cli("stop", "-t", "0", f"{unique}-quiet")
    for number in range(10):  # other containers take addresses until one holds the freed one
        squatter = f"{unique}-squatter{number}"
        docker_cli("run", "-d", "--name", squatter, "dm-test-bb:latest", "sleep", "60")
        if bridge_ip(squatter) == first:
            break
    assert bridge_ip(squatter) == first
    docker_cli("start", f"{unique}-quiet")
    assert bridge_ip(f"{unique}-quiet") != first
    for _ in range(100):
        page = await through_nginx(nginx_server, "quiet.example.com")
        if page.status_code == 200 and page.text.strip() == "unpublished":
            break
        await asyncio.sleep(0.1)
    assert page.text.strip() == "unpublished"
    assert bridge_ip(f"{unique}-quiet") in (nginx_server.sites / "quiet.conf").read_text()


async def test_nginx_not_running_is_503_and_writes_nothing(
    tmp_path: Path, nginx_server: NginxServer, unique: str
) -> None:
    config = Settings(
        data_dir=tmp_path,
        admin_token="nginx-admin",  # type: ignore[arg-type]
        **{**nginx_server.settings(), "nginx_pid_file": tmp_path / "none.pid"},
    )  # type: ignore[arg-type]
    async with app_client(config) as (_services, client):
        before = snapshot(nginx_server)
        response = await client.post(
            "/nginx/site/create", json={"domain": "down.example.com", "port": 8080}, headers=ADMIN
        )
        assert response.status_code == 503 and response.json()["code"] == "nginx_unavailable"
        assert snapshot(nginx_server) == before


async def test_a_domain_with_a_certificate_is_served_over_tls(
    tmp_path: Path, nginx_server: NginxServer, unique: str
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tls.example.com",
            "-keyout",
            str(certs / "tls.example.com.key"),
            "-out",
            str(certs / "tls.example.com.crt"),
        ],
        check=True,
        capture_output=True,
    )
    tls_port = free_port()
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="nginx-admin",  # type: ignore[arg-type]
        nginx_cert_dir=certs,
        nginx_tls_listen=f"127.0.0.1:{tls_port}",
        **nginx_server.settings(),
    )  # type: ignore[arg-type]
    async with app_client(config, timeout=60) as (_services, client):
        _, port = await web(client, unique, "secure")
        created = await client.post(
            "/nginx/site/create", json={"domain": "tls.example.com", "port": port}, headers=ADMIN
        )
        assert created.status_code == 200, created.text
        try:
            plain = await through_nginx(nginx_server, "tls.example.com")
            assert plain.status_code == 301 and plain.headers["location"].startswith(
                "https://tls.example.com"
            )
            async with httpx2.AsyncClient(verify=False) as browser:
                secure = await browser.get(
                    f"https://127.0.0.1:{tls_port}/", headers={"Host": "tls.example.com"}
                )
            assert secure.text.strip() == "secure"
        finally:
            await client.post("/nginx/site/delete", json={"domain": "tls.example.com"}, headers=ADMIN)


async def operate_token(app: httpx2.AsyncClient) -> dict[str, str]:
    made = await app.post(
        "/auth/tokens", json={"name": "nginx-operate", "scopes": ["operate"]}, headers=ADMIN
    )
    return {"Authorization": f"Bearer {made.json()['token']}"}


async def test_an_operate_token_reaches_only_its_own_containers_through_a_site(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    operate = await operate_token(app)
    with socket.socket() as host_service:  # a host process on TCP; the container takes UDP P
        host_service.bind(("127.0.0.1", 0))
        host_service.listen()
        port = host_service.getsockname()[1]
        udp = await app.post(
            "/docker/run",
            json={
                "image": "dm-test-bb:latest",
                "name": f"{unique}-udp",
                "command": "sleep 60",
                "ports": {"80/udp": port},
            },
            headers=operate,
        )
        assert udp.status_code == 200, udp.text
        before = snapshot(nginx_server)
        refused = await app.post(
            "/nginx/site/create", json={"domain": "db.example.com", "port": port}, headers=operate
        )
        assert refused.status_code == 422 and refused.json()["field"] == "port"
        assert snapshot(nginx_server) == before
    # An admin's site to a host process is the admin's: an operate token cannot take it over.
    _, mine = await web(app, f"{unique}-mine", "mine", app_id="mine")
    with socket.socket() as host_service:
        host_service.bind(("127.0.0.1", 0))
        host_service.listen()
        admin_site = await app.post(
            "/nginx/site/create",
            json={
                "domain": "grafana.example.com",
                "port": host_service.getsockname()[1],
                "app_id": "grafana",
            },
            headers=ADMIN,
        )
        assert admin_site.status_code == 200 and admin_site.json()["upstream_managed"] is False
        before = snapshot(nginx_server)
        for route, body in (
            ("/nginx/site/create", {"domain": "grafana.example.com", "port": mine, "app_id": "grafana"}),
            (
                "/nginx/sign-domain",
                {
                    "domain": "grafana.example.com",
                    "app_id": "grafana",
                    "new_container": f"{unique}-mine",
                },
            ),
            ("/nginx/site/delete", {"domain": "grafana.example.com"}),
        ):
            response = await app.post(route, json=body, headers=operate)
            assert response.status_code == 403 and response.json()["code"] == "not_managed", (
                route,
                response.text,
            )
        assert snapshot(nginx_server) == before


async def test_a_site_on_a_stopped_containers_address_sends_nothing_there(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    script = "mkdir -p /www && echo pinned > /www/index.html && httpd -f -p 8080 -h /www"
    run = await app.post(
        "/docker/run",
        json={"image": "dm-test-bb:latest", "name": f"{unique}-pin", "command": ["sh", "-c", script]},
        headers=ADMIN,
    )
    assert run.status_code == 200
    signed = await app.post(
        "/nginx/sign-domain",
        json={
            "domain": "pin.example.com",
            "app_id": "pin",
            "new_container": f"{unique}-pin",
            "port": 8080,
        },
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text
    docker_cli("stop", "-t", "0", f"{unique}-pin")
    for _ in range(100):
        if "upstream=down" in (nginx_server.sites / "pin.conf").read_text():
            break
        await asyncio.sleep(0.1)
    assert "upstream=down" in (nginx_server.sites / "pin.conf").read_text()
    # (the header is in the file as soon as it is written; nginx answers 503 once it has reloaded)
    status = 0
    for _ in range(50):
        try:
            status = (await through_nginx(nginx_server, "pin.example.com")).status_code
        except httpx2.TimeoutException:
            continue  # nginx had not reloaded yet and tried the stopped container's address
        if status != 502:
            break
        await asyncio.sleep(0.1)
    assert status == 503
    docker_cli("start", f"{unique}-pin")
    for _ in range(100):
        try:
            page = await through_nginx(nginx_server, "pin.example.com")
        except httpx2.TimeoutException:
            continue  # nginx tried the new address before the container's network was up
        if page.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert page.text.strip() == "pinned"


async def test_a_site_an_earlier_version_wrote_follows_its_container_once_adopted(
    app: httpx2.AsyncClient, nginx_server: NginxServer, unique: str
) -> None:
    container, port = await web(app, f"{unique}-old", "old", app_id="old")
    made = await app.post(
        "/nginx/site/create", json={"domain": "old.example.com", "port": port, "app_id": "old"}, headers=ADMIN
    )
    assert made.status_code == 200, made.text
    path = nginx_server.sites / "old.conf"
    # As an earlier version wrote it: the port, and no container.
    path.write_text(re.sub(r" container=[0-9a-f]+ published=\S+", "", path.read_text(), count=1))
    header = read_header(path)
    assert header is not None and header.upstream.container is None
    await app.services.sites.addresses.adopt_host_port_sites()  # type: ignore[attr-defined]  (what a start does)
    header = read_header(path)
    assert header is not None and header.upstream.container == container
    assert header.upstream.published == "80/tcp"
    docker_cli("stop", "-t", "0", f"{unique}-old")
    for _ in range(100):
        if (await through_nginx(nginx_server, "old.example.com")).status_code == 503:
            break
        await asyncio.sleep(0.1)
    assert (await through_nginx(nginx_server, "old.example.com")).status_code == 503
