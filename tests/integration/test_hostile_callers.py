"""Hostile callers against a real server process (`docker-manager serve`): floods of unfinished
requests and streams, forged forwarding headers, unauthenticated audit floods, sites whose container
moved or stopped (and a local user who binds its freed port), slow readers of big logs, command
lines, other tokens' volumes, and dashboard messages made by one session for another."""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import (
    BASE_IMAGE,
    ServiceProcess,
    docker_cli,
    free_port,
    service_process,
    service_with_nginx,
)

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True, scope="module")
def _many_sockets() -> Iterator[None]:
    """This test process opens over a thousand sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def port_of(service: ServiceProcess) -> int:
    return int(service.url.rsplit(":", 1)[1])


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def open_raw(
    port: int, count: int, payload: bytes, *, receive_buffer: int | None = None
) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", port))
        sock.sendall(payload)
        sockets.append(sock)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def status_line(sock: socket.socket) -> int:
    sock.settimeout(10)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(256)
        if not chunk:
            return 0
        head += chunk
    return int(head.split(b" ", 2)[1])


def token(service: ServiceProcess, *scopes: str, name: str = "t") -> dict[str, str]:
    made = httpx2.post(
        f"{service.url}/auth/tokens",
        json={"name": f"{name}-{secrets.token_hex(3)}", "scopes": list(scopes)},
        headers=service.headers,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


def wait_final(service: ServiceProcess, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx2.get(
            f"{service.url}/tasks/status/{task_id}", headers=service.headers, timeout=30
        ).json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end")


def start_build(service: ServiceProcess, contexts: Path, name: str, steps: str) -> str:
    context = contexts / name
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n{steps}\n")
    started = httpx2.post(
        f"{service.url}/docker/build/start",
        json={"context_path": name, "tag": f"{name}:latest", "app_id": name},
        headers=service.headers,
        timeout=30,
    )
    assert started.status_code == 200, started.text
    return str(started.json()["task_id"])


# --- 1. floods of unfinished requests and of streams ------------------------------------------


def test_a_flood_of_unfinished_requests_stops_nothing(tmp_path: Path, unique: str) -> None:
    with service_with_nginx(tmp_path, DM_HEADER_TIMEOUT="3") as (service, _, contexts):
        pid = service.process.pid
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # Started with Debian's soft limit of 1,024, it raised its own to the hard one.
        limits = Path(f"/proc/{pid}/limits").read_text()
        soft_now = int(re.search(r"Max open files\s+(\d+)", limits).group(1))  # type: ignore[union-attr]
        assert soft_now == hard
        baseline = descriptors(pid)
        build = start_build(
            service, contexts, unique, 'RUN for i in $(seq 1 300); do echo "line $i"; sleep 0.01; done'
        )
        flood = open_raw(port_of(service), 1100, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            began = time.monotonic()
            health = httpx2.get(f"{service.url}/healthz", timeout=5)
            assert health.status_code == 200 and time.monotonic() - began < 1.0
            info = httpx2.get(f"{service.url}/system/info", headers=service.headers, timeout=5)
            assert info.status_code == 200
            assert descriptors(pid) < baseline + 1100  # it never held all of them
            final = wait_final(service, build)
            assert final["status"] == "completed", final
            build_log = (tmp_path / "data" / "builds" / build / "build.log").read_text()
            assert "line 300" in build_log  # the whole log, not a part
            time.sleep(4)  # past the head deadline: every unfinished request is closed
            assert descriptors(pid) < baseline + 20
        finally:
            close_all(flood)
        docker_cli("rmi", f"{unique}:latest", check=False)


def test_answers_nobody_reads_do_not_hold_the_listener(tmp_path: Path) -> None:
    # Pipelined requests for a big public file, never read: the answers stall (the socket buffers
    # full) and neither deadline applies. Stalled answers are closed for room, and after
    # DM_SEND_TIMEOUT without progress.
    with service_process(tmp_path, DM_MAX_CONNECTIONS="16", DM_SEND_TIMEOUT="3") as service:
        pid = service.process.pid
        baseline = descriptors(pid)
        bundle = "/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js"
        request = f"GET {bundle} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * 4
        stuck = open_raw(port_of(service), 16, request, receive_buffer=4096)
        try:
            time.sleep(1)
            for _ in range(5):
                began = time.monotonic()
                assert httpx2.get(f"{service.url}/healthz", timeout=5).status_code == 200
                assert time.monotonic() - began < 1.0
            time.sleep(5)  # past the send timeout: the rest are closed too
            assert descriptors(pid) < baseline + 10
        finally:
            close_all(stuck)


def test_live_streams_are_capped_per_token_and_give_their_slot_back(tmp_path: Path, unique: str) -> None:
    with service_with_nginx(tmp_path, DM_MAX_STREAMS_PER_TOKEN="8", DM_MAX_STREAMS="12") as (
        service,
        _,
        contexts,
    ):
        pid = service.process.pid
        reader, other = token(service, "read"), token(service, "read")
        build = start_build(service, contexts, unique, "RUN sleep 30")
        baseline = descriptors(pid)

        def streams(headers: dict[str, str], count: int) -> tuple[list[socket.socket], list[int]]:
            request = (
                f"GET /tasks/{build}/events?format=ndjson HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {headers['Authorization']}\r\n\r\n"
            ).encode()
            opened = open_raw(port_of(service), count, request)
            return opened, [status_line(sock) for sock in opened]

        mine, codes = streams(reader, 100)
        assert codes.count(200) == 8 and codes.count(429) == 92  # this token's cap
        theirs, codes = streams(other, 10)
        assert codes.count(200) == 4 and codes.count(429) == 6  # the cap of all
        refused = httpx2.get(f"{service.url}/tasks/{build}/events", headers=other, timeout=5)
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) > 0
        assert httpx2.get(f"{service.url}/healthz", timeout=5).status_code == 200
        close_all(mine + theirs)
        time.sleep(1)
        assert descriptors(pid) < baseline + 10  # the slots and the descriptors came back
        again, codes = streams(other, 1)
        assert codes == [200]
        close_all(again)
        cancel = httpx2.post(f"{service.url}/tasks/{build}/cancel", headers=service.headers, timeout=30)
        assert cancel.status_code == 200


# --- 2. forwarded addresses -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["serve", "uvicorn"])
def test_a_rotating_forwarded_for_does_not_reset_the_limiter(tmp_path: Path, how: str) -> None:
    env = {"DM_AUTH_FAILURE_LIMIT": "5"}
    if how == "serve":
        with service_process(tmp_path, **env) as service:
            check_limiter(service)
        return
    # The original's Quick Start: uvicorn with its own defaults (which believe X-Forwarded-For
    # from any loopback peer).
    port = free_port()
    admin = "dm_uvicorn_" + secrets.token_hex(8)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DM_")},
            "DM_DATA_DIR": str(tmp_path),
            "DM_PORT": str(port),
            "DM_ADMIN_TOKEN": admin,
            "DM_CONFIG": "/nonexistent/config.json",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from tests.harness import wait_for_port

        wait_for_port(port, process, timeout=30)
        check_limiter(
            ServiceProcess(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {admin}"}, process)
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def check_limiter(service: ServiceProcess) -> None:
    codes = [
        httpx2.get(
            f"{service.url}/system/info",
            headers={"Authorization": f"Bearer wrong-{i}", "X-Forwarded-For": f"10.0.{i}.{i}"},
            timeout=10,
        ).status_code
        for i in range(40)
    ]
    assert codes[:4] == [401] * 4 and set(codes[4:]) == {429}, codes
    # The dashboard's login shares the limiter, whatever the header says.
    login = httpx2.post(
        f"{service.url}/ui/login",
        data={"token": "wrong"},
        headers={"X-Forwarded-For": "10.1.2.3", "Origin": service.url},
        timeout=10,
    )
    assert login.status_code == 429
    entries = httpx2.get(f"{service.url}/audit?limit=100", headers=service.headers, timeout=10).json()
    clients = {entry["client"] for entry in entries["entries"]}
    assert not any(str(client).startswith("10.") for client in clients), clients


def test_a_trusted_proxys_forwarded_address_is_the_client(tmp_path: Path) -> None:
    """DM_TRUSTED_PROXIES names the proxy: then its X-Forwarded-For is the client, for the
    limiter (per forwarded client) and the audit log alike."""
    with service_process(tmp_path, DM_AUTH_FAILURE_LIMIT="5", DM_TRUSTED_PROXIES='["127.0.0.1"]') as service:

        def wrong(client: str) -> int:
            return httpx2.get(
                f"{service.url}/system/info",
                headers={"Authorization": "Bearer wrong", "X-Forwarded-For": client},
                timeout=10,
            ).status_code

        assert {wrong(f"10.0.{i}.{i}") for i in range(10)} == {401}  # ten clients, one failure each
        repeated = [wrong("10.9.9.9") for _ in range(8)]
        assert repeated[:4] == [401] * 4 and set(repeated[4:]) == {429}, repeated
        entries = httpx2.get(f"{service.url}/audit?limit=100", headers=service.headers, timeout=10).json()
        clients = {entry["client"] for entry in entries["entries"]}
        assert {"10.0.3.3", "10.9.9.9"} <= clients, clients


# --- 3. the audit log under unauthenticated floods --------------------------------------------


def test_requests_without_credentials_fill_no_audit_and_forge_no_switch(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        forged = {"domain": "forged.example.com", "port": "8080", "app_id": "victim", "csrf": "x"}
        with httpx2.Client(base_url=service.url, timeout=10) as client:
            for i in range(300):
                # A 422 (a field missing), a 401 (no session), a 413: all without credentials.
                client.post("/ui/sites/create", data={**forged, "port": "x" * (i % 3)})
                client.post("/docker/run", json={"image": "x", "app_id": "victim"})
                client.post("/ui/sites/delete", content=b"domain=" + b"a" * (2 << 20))
        entries = httpx2.get(f"{service.url}/audit?limit=1000", headers=service.headers, timeout=10).json()
        anonymous = [e for e in entries["entries"] if e["token_id"] is None and e["route"] != "/audit"]
        # 900 requests: 30 a minute per address are written, the rest counted into the next one.
        assert 0 < len(anonymous) <= 31, len(anonymous)
        assert all(e["app_id"] is None for e in anonymous)
        assert not any("forged" in json.dumps(e["target"]) or "victim" in json.dumps(e) for e in anonymous)


# --- 4. sites follow their container -----------------------------------------------------------


@contextmanager
def local_listener(port: int, text: bytes) -> Iterator[None]:
    """A process of an unprivileged local user, serving its own page on a loopback port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def through_nginx(port: int, domain: str) -> httpx2.Response:
    return httpx2.get(f"http://127.0.0.1:{port}/", headers={"Host": domain}, timeout=10)


def until(predicate: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_site_follows_its_container_to_a_new_port_and_never_to_a_freed_one(
    tmp_path: Path, unique: str
) -> None:
    with service_with_nginx(tmp_path) as (service, web, _):
        operate = token(service, "operate", "read")
        script = "mkdir -p /www && echo shop > /www/index.html && httpd -f -p 80 -h /www"
        run = httpx2.post(
            f"{service.url}/docker/run",
            json={
                "image": BASE_IMAGE,
                "name": f"{unique}-shop",
                "command": ["sh", "-c", script],
                "ports": {"80/tcp": None},  # a port the engine chooses
                "app_id": "shop",
            },
            headers=operate,
            timeout=30,
        )
        assert run.status_code == 200, run.text
        first = run.json()["ports"]["80/tcp"]
        site = httpx2.post(
            f"{service.url}/nginx/site/create",
            json={"domain": "shop.example.com", "port": first, "app_id": "shop"},
            headers=operate,
            timeout=30,
        )
        assert site.status_code == 200, site.text
        assert until(lambda: through_nginx(web.port, "shop.example.com").text.strip() == "shop")

        # Restarted by hand: the engine publishes it elsewhere; the site goes with it.
        docker_cli("restart", "-t", "0", f"{unique}-shop")
        second = int(docker_cli("port", f"{unique}-shop", "80/tcp").stdout.strip().rsplit(":", 1)[1])
        assert second != first
        assert until(lambda: f"port={second} " in (web.sites / "shop.conf").read_text())
        assert until(lambda: through_nginx(web.port, "shop.example.com").text.strip() == "shop")
        # /apps shows where it is now (the engine's listing is cached for a second).
        assert until(
            lambda: (
                httpx2.get(f"{service.url}/apps/shop", headers=operate, timeout=10).json()["host_port"]
                == second
            )
        )

        # Stopped through the API: the site answers 503 before the port is free, and a local user
        # who binds the freed port serves nothing through it.
        stop = httpx2.post(
            f"{service.url}/docker/stop",
            json={"id_or_name": f"{unique}-shop", "timeout": 0},
            headers=operate,
            timeout=30,
        )
        assert stop.status_code == 200
        with local_listener(second, b"HIJACKED"):
            for _ in range(20):
                answer = through_nginx(web.port, "shop.example.com")
                assert answer.status_code == 503 and b"HIJACKED" not in answer.content, answer.text
                time.sleep(0.05)
            assert "container is not running" in answer.text
        # A signal that does not end the process leaves the site serving (it is looked at again
        # after the action, whatever it did).
        docker_cli("start", f"{unique}-shop")
        assert until(lambda: through_nginx(web.port, "shop.example.com").status_code == 200)
        hup = httpx2.post(
            f"{service.url}/docker/kill",
            json={"id_or_name": f"{unique}-shop", "signal": "SIGWINCH"},
            headers=operate,
            timeout=30,
        )
        assert hup.status_code == 200, hup.text
        assert through_nginx(web.port, "shop.example.com").status_code == 200
        docker_cli("stop", "-t", "0", f"{unique}-shop")
        assert until(lambda: through_nginx(web.port, "shop.example.com").status_code == 503)
        # Stopped from outside (the engine's event): the same.
        docker_cli("start", f"{unique}-shop")
        assert until(lambda: through_nginx(web.port, "shop.example.com").status_code == 200)
        third = int(docker_cli("port", f"{unique}-shop", "80/tcp").stdout.strip().rsplit(":", 1)[1])
        docker_cli("stop", "-t", "0", f"{unique}-shop")
        assert until(lambda: through_nginx(web.port, "shop.example.com").status_code == 503)
        with local_listener(third, b"HIJACKED"):
            assert through_nginx(web.port, "shop.example.com").status_code == 503


def test_a_port_a_host_site_or_another_apps_site_reaches_cannot_be_published(
    tmp_path: Path, unique: str, base_image: str
) -> None:
    with service_with_nginx(tmp_path) as (service, web, _):
        operate = token(service, "operate")
        port = free_port()
        with local_listener(port, b"grafana"):  # the admin's host service
            site = httpx2.post(
                f"{service.url}/nginx/site/create",
                json={"domain": "grafana.example.com", "port": port, "app_id": "grafana"},
                headers=service.headers,
                timeout=30,
            )
            assert site.status_code == 200 and site.json()["upstream_managed"] is False
        # The host listener is down: an operate token publishes a container on its port.
        before = (web.sites / "grafana.conf").read_bytes()
        for who in (operate, service.headers):
            taken = httpx2.post(
                f"{service.url}/docker/run",
                json={
                    "image": BASE_IMAGE,
                    "name": f"{unique}-grab",
                    "command": "sleep 60",
                    "ports": {"80/tcp": port},
                },
                headers=who,
                timeout=30,
            )
            assert taken.status_code == 409 and taken.json()["code"] == "port_in_use", taken.text
            assert "grafana.example.com" in taken.json()["detail"]
        assert docker_cli("ps", "-aq", "--filter", f"name={unique}-grab").stdout.strip() == ""
        assert (web.sites / "grafana.conf").read_bytes() == before

        # Another app's site follows its container, not a port: while a site's app runs, the
        # engine holds its port; once it stops, the site answers 503 and another app that
        # publishes the freed port serves nothing through it.
        shop_port = free_port()

        def run(name: str, app_id: str, text: str) -> httpx2.Response:
            return httpx2.post(
                f"{service.url}/docker/run",
                json={
                    "image": BASE_IMAGE,
                    "name": f"{unique}-{name}",
                    "command": [
                        "sh",
                        "-c",
                        f"mkdir -p /w && echo {text} > /w/index.html && httpd -f -p 80 -h /w",
                    ],
                    "ports": {"80/tcp": shop_port},
                    "app_id": app_id,
                },
                headers=operate,
                timeout=30,
            )

        first = run("shop", f"{unique}-shop", "SHOP")
        assert first.status_code == 200, first.text
        signed = httpx2.post(
            f"{service.url}/nginx/site/create",
            json={"domain": "shop.example.com", "port": shop_port, "app_id": f"{unique}-shop"},
            headers=operate,
            timeout=30,
        )
        assert signed.status_code == 200, signed.text
        assert until(lambda: through_nginx(web.port, "shop.example.com").text.strip() == "SHOP")
        busy = run("other", f"{unique}-other", "OTHER")  # (the engine: the port is taken)
        assert busy.status_code == 409 and busy.json()["code"] == "port_in_use", busy.text
        docker_cli("stop", "-t", "0", f"{unique}-shop")
        assert until(lambda: through_nginx(web.port, "shop.example.com").status_code == 503)
        docker_cli("rm", "-f", f"{unique}-other")
        taken = run("other", f"{unique}-other", "OTHER")
        assert taken.status_code == 200, taken.text
        for _ in range(20):
            answer = through_nginx(web.port, "shop.example.com")
            assert answer.status_code == 503 and b"OTHER" not in answer.content, answer.text
            time.sleep(0.05)
        docker_cli("rm", "-f", f"{unique}-other")
        docker_cli("start", f"{unique}-shop")
        ok = until(lambda: through_nginx(web.port, "shop.example.com").text.strip() == "SHOP")
        assert ok, (
            through_nginx(web.port, "shop.example.com").text[:300],
            (web.sites / f"{unique}-shop.conf").read_text()[:600],
            docker_cli("ps", "-a", "--filter", f"name={unique}").stdout,
        )


# --- 5. slow readers of big logs ----------------------------------------------------------------


def test_slow_readers_of_a_big_log_keep_memory_flat(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        reader = token(service, "read")
        folder = tmp_path / "builds" / "big_logs_task"
        folder.mkdir(parents=True)
        line = "x" * 400 + "\n"
        for name in ("build.log", "events.log", "error.log"):
            (folder / name).write_text(line * 12_000)  # ~4.8 MB each, over the 4 MiB read cap
        (folder / "build.jsonl").write_text(json.dumps({"event": "x" * 400}) + "\n" * 1)
        whole = httpx2.get(f"{service.url}/tasks/logs/big_logs_task?tail=0", headers=reader, timeout=60)
        assert whole.status_code == 200
        body = whole.json()
        assert len(body["build_logs"]["raw"]) == 10_000 and body["build_logs"]["raw"][-1] == "x" * 400
        assert body["build_logs"]["raw_bytes"] == 12_000 * 401
        assert body["build_logs"]["structured"] == [{"event": "x" * 400}]
        pid = service.process.pid
        before = rss_mib(pid)
        request = (
            "GET /tasks/logs/big_logs_task?tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {reader['Authorization']}\r\n\r\n"
        ).encode()
        slow = open_raw(port_of(service), 100, request, receive_buffer=4096)
        try:
            time.sleep(5)
            grown = rss_mib(pid) - before
            assert grown < 64, f"+{grown:.0f} MiB for 100 readers that do not read"
            assert httpx2.get(f"{service.url}/healthz", timeout=5).status_code == 200
        finally:
            close_all(slow)


# --- 6. a command line is for exec tokens -----------------------------------------------------


def artefact_of(tmp_path: Path, image: str, folder: Path) -> Path:
    context = tmp_path / "image"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN echo {image} > /tag\n")
    docker_cli("build", "-q", "-t", image, str(context))
    folder.mkdir(parents=True)
    artefact = folder / "app_v1.tar.lz4"
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    with artefact.open("wb") as out:
        subprocess.run(["lz4", "-q", "-c"], stdin=save.stdout, stdout=out, check=True)
    assert save.wait() == 0
    docker_cli("rmi", image)
    return artefact


@contextmanager
def dashboard_session(service: ServiceProcess, headers: dict[str, str]) -> Iterator[httpx2.Client]:
    """A browser's session (cookie jar) logged in with a token."""
    with httpx2.Client(base_url=service.url, timeout=30, headers={"Origin": service.url}) as client:
        login = client.post("/ui/login", data={"token": headers["Authorization"].split(" ", 1)[1]})
        assert login.status_code == 303, login.text
        yield client


def test_a_localrun_command_line_is_shown_to_exec_tokens_only(tmp_path: Path, unique: str) -> None:
    with service_process(tmp_path / "data") as service:
        build_task = f"{unique}-cmd"  # the artefact's folder, as a build host's upload makes it
        artefact = artefact_of(tmp_path, f"{unique}-cmd:v1", tmp_path / "data" / "upload" / build_task)
        run = httpx2.post(
            f"{service.url}/docker/localrun",
            json={
                "lz4_path": str(artefact),
                "app_id": f"{unique}-cmd",
                "name": f"{unique}-cmd",
                "command": ["sh", "-c", "sleep 600", "--password=hunter2"],
                "healthcheck_time": 1,
                "task_id": build_task,
            },
            headers=service.headers,
            timeout=120,
        )
        assert run.status_code == 200, run.text
        task_id = run.json()["localrun_task_id"]
        wait_final(service, task_id)
        reader, executor = token(service, "read"), token(service, "read", "exec")
        for who, shown in ((reader, False), (executor, True)):
            for task in (build_task, task_id):  # the artefact's folder, by either task
                logs = httpx2.get(f"{service.url}/tasks/logs/{task}", headers=who, timeout=30)
                assert logs.status_code == 200 and '"localrun"' in logs.text
                assert ("hunter2" in logs.text) is shown
            assert (
                "hunter2" in httpx2.get(f"{service.url}/tasks/status/{task_id}", headers=who).text
            ) is False
            with dashboard_session(service, who) as browser:
                page = browser.get(f"/ui/tasks/{task_id}")
                assert page.status_code == 200 and ("hunter2" in page.text) is shown


# --- 7. a named volume is its maker's -----------------------------------------------------------


def test_another_tokens_volume_of_the_same_app_is_refused(tmp_path: Path, unique: str) -> None:
    with service_process(tmp_path) as service:
        owner, thief = token(service, "operate", name="owner"), token(service, "operate", name="thief")
        volume = f"{unique}-secrets"

        def run(who: dict[str, str], name: str, command: list[str], detach: bool) -> httpx2.Response:
            return httpx2.post(
                f"{service.url}/docker/run-extended",
                json={
                    "image": BASE_IMAGE,
                    "name": name,
                    "app_id": "shop",
                    "command": command,
                    "volumes": {volume: {"bind": "/v"}},
                    "detach": detach,
                },
                headers=who,
                timeout=60,
            )

        made = run(owner, f"{unique}-owner", ["sh", "-c", "echo s3cret > /v/key; sleep 600"], True)
        assert made.status_code == 200, made.text
        time.sleep(0.5)
        stolen = run(thief, f"{unique}-thief", ["cat", "/v/key"], False)
        assert stolen.status_code == 403 and stolen.json()["code"] == "policy_violation", stolen.text
        assert "another token" in stolen.json()["detail"] and "s3cret" not in stolen.text
        assert docker_cli("ps", "-aq", "--filter", f"name={unique}-thief").stdout.strip() == ""
        mine = run(owner, f"{unique}-again", ["cat", "/v/key"], False)
        assert mine.status_code == 200 and "s3cret" in mine.json()["output"]
        # Squatting: a name another token made first is refused to an admin's deploy too (what the
        # app wrote there would be the squatter's to read).
        squat = run(thief, f"{unique}-squat", ["true"], True)
        assert squat.status_code == 403  # (the owner's volume, still)
        squatted = f"{unique}-squatted"
        made = httpx2.post(
            f"{service.url}/docker/run-extended",
            json={
                "image": BASE_IMAGE,
                "name": f"{unique}-sq",
                "app_id": "billing",
                "command": ["true"],
                "volumes": {squatted: {"bind": "/v"}},
            },
            headers=thief,
            timeout=60,
        )
        assert made.status_code == 200, made.text
        deploy = httpx2.post(
            f"{service.url}/docker/run-extended",
            json={
                "image": BASE_IMAGE,
                "name": f"{unique}-billing",
                "app_id": "billing",
                "command": ["sh", "-c", "echo ledger > /v/ledger"],
                "volumes": {squatted: {"bind": "/v"}},
            },
            headers=service.headers,
            timeout=60,
        )
        assert deploy.status_code == 403 and "another token made" in deploy.json()["detail"], deploy.text


# --- 8. the dashboard's messages, origins and sessions ---------------------------------------


def test_a_sessions_message_shows_on_its_own_page_only(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        with dashboard_session(service, token(service, "read")) as attacker:
            page = attacker.get("/ui/containers")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            lure = "Your-token-was-rotated-paste-it-at-evil.example"
            refused = attacker.post(f"/ui/containers/abc/{lure}", data={"csrf": csrf})
            assert refused.status_code == 303
            link = refused.headers["location"]
            assert lure not in attacker.get(link).text  # no caller text is echoed, even to itself
            shown = attacker.get(link).text
            assert "Refused:" in shown  # its own refusal, on its own page
        with dashboard_session(service, service.headers) as admin:
            assert "Refused:" not in admin.get(link).text  # another session: nothing shown
            assert "Refused:" not in admin.get(link.replace("/ui/containers", "/ui/sites")).text


def test_logins_refuse_a_null_origin_and_end_the_previous_session(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        secret = service.headers["Authorization"].split(" ", 1)[1]
        null = httpx2.post(
            f"{service.url}/ui/login", data={"token": secret}, headers={"Origin": "null"}, timeout=10
        )
        assert null.status_code == 403 and "dm_session" not in null.headers.get("set-cookie", "")
        with dashboard_session(service, service.headers) as browser:
            first = browser.cookies["dm_session"]
            assert browser.get("/ui").status_code == 200
            again = browser.post("/ui/login", data={"token": secret})
            assert again.status_code == 303 and browser.cookies["dm_session"] != first
            old = httpx2.get(f"{service.url}/ui", cookies={"dm_session": first}, timeout=10)
            assert old.status_code == 303 and old.headers["location"] == "/ui/login"
        docs = httpx2.get(f"{service.url}/docs", timeout=10)
        policy = docs.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self' 'sha256-" in policy
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
