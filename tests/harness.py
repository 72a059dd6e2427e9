"""The test harness: the service as its users run it (a process, or the app in-process), the daemons
it talks to (nginx, sshd, a registry, a log receiver) on loopback ports, and the names and helpers
every tier shares. `bench/` starts the service through it too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from docker_manager.app import create_app
from docker_manager.config import Settings
from docker_manager.runtime import Runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A small real filesystem at `mount` (a tmpfs of `size`, e.g. "1m"), to fill up on purpose."""

    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@dataclass
class Sshd:
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    other_key_file: Path  # a valid key that the server does not accept


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextmanager
def sshd(workdir: Path) -> Iterator[Sshd]:
    """A private sshd on a loopback port: key login for the current user, SFTP subsystem."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key", "other_key"):
        _keygen(workdir / name)
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}\nPidFile {workdir / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    host_key = (workdir / "host_key.pub").read_text().split()
    (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield Sshd(
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            key_file=workdir / "client_key",
            known_hosts=workdir / "known_hosts",
            other_key_file=workdir / "other_key",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class NginxServer:
    prefix: Path
    conf: Path
    sites: Path
    port: int
    pid_file: Path
    error_log: Path

    def settings(self) -> dict[str, object]:
        return {
            "nginx_binary": shutil.which("nginx") or "/usr/sbin/nginx",
            "nginx_conf": self.conf,
            "nginx_prefix": self.prefix,
            "nginx_pid_file": self.pid_file,
            "nginx_error_log": self.error_log,
            "nginx_conf_dirs": [self.sites],
            "nginx_listen": f"127.0.0.1:{self.port}",
        }

    def master_pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def env(self) -> dict[str, str]:
        """The settings as a server process's DM_* variables."""
        return {
            f"DM_{key.upper()}": json.dumps([str(v) for v in value])
            if isinstance(value, list)
            else str(value)
            for key, value in self.settings().items()
        }


@contextmanager
def nginx(workdir: Path) -> Iterator[NginxServer]:
    """A private nginx on a loopback port; sites are included from `{prefix}/sites/*.conf`."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    for sub in ("logs", "sites", "tmp"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = workdir / "tmp"
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"worker_processes 1;\npid {workdir}/logs/nginx.pid;\nerror_log {workdir}/logs/error.log notice;\n"
        "events { worker_connections 512; }\n"
        "http {\n    access_log off;\n"
        f"    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    server {{ listen 127.0.0.1:{port} default_server; return 404; }}\n"
        f"    include {workdir}/sites/*.conf;\n}}\n"
    )
    server = NginxServer(
        prefix=workdir,
        conf=conf,
        sites=workdir / "sites",
        port=port,
        pid_file=workdir / "logs" / "nginx.pid",
        error_log=workdir / "logs" / "error.log",
    )
    subprocess.run([binary, "-p", str(workdir), "-c", str(conf)], check=True)
    deadline = time.monotonic() + 10
    while not server.pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield server
    finally:
        subprocess.run([binary, "-p", str(workdir), "-c", str(conf), "-s", "quit"], check=False)
        deadline = time.monotonic() + 10
        while server.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class Registry:
    address: str  # host:port, as image names use it
    username: str
    password: str


@contextmanager
def registry(workdir: Path, *, username: str = "ci", password: str = "ci-pass-123") -> Iterator[Registry]:
    """A private Docker registry (Debian's docker-registry) with htpasswd auth, on loopback."""
    workdir.mkdir(parents=True, exist_ok=True)
    hashed = subprocess.run(
        ["htpasswd", "-Bbn", username, password], capture_output=True, text=True, check=True
    ).stdout
    (workdir / "htpasswd").write_text(hashed)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test-registry\n"
        f"    path: {workdir / 'htpasswd'}\n"
    )
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield Registry(address=f"127.0.0.1:{port}", username=username, password=password)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Pebble:
    """Debian's pebble (a real ACME CA for tests) and pebble-challtestsrv (its DNS: every name is
    127.0.0.1), validating HTTP-01 on `http_port` (the test nginx's port-80 listener)."""

    directory: str  # the ACME directory URL
    ca_bundle: Path  # trust for pebble's own HTTPS listener
    management: str  # https://127.0.0.1:PORT: /roots/0, /intermediates/0
    dns_management: str  # http://127.0.0.1:PORT: challtestsrv's /add-a, /clear-a
    workdir: Path
    process: subprocess.Popen[bytes]
    argv: list[str]
    port: int

    def chain_roots(self) -> Path:
        """Pebble's root and intermediate of this run, in one file (they change at every start)."""
        pem = ""
        for kind in ("roots", "intermediates"):
            trust = ssl.create_default_context(cafile=str(self.ca_bundle))
            pem += httpx2.get(f"{self.management}/{kind}/0", verify=trust, timeout=10).text
        target = self.workdir / "pebble-roots.pem"
        target.write_text(pem)
        return target

    def resolve(self, host: str, address: str) -> None:
        """Make challtestsrv answer `address` for `host` (a domain that does not point here)."""
        httpx2.post(f"{self.dns_management}/add-a", json={"host": host, "addresses": [address]}, timeout=10)

    def stop(self) -> None:
        """The CA goes away (its accounts, orders and roots with it: pebble keeps them in memory)."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def start(self, *, nonce_reject_percent: int = 0) -> None:
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject_percent)}
        with (self.workdir / "pebble.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for_port(self.port, self.process)

    def orders(self) -> int:
        """How many orders pebble has been asked for (in its log, every run)."""
        return (self.workdir / "pebble.log").read_text(errors="replace").count("POST /order-plz")


@contextmanager
def pebble(
    workdir: Path, *, http_port: int, validity_seconds: int | None = None, blocked: tuple[str, ...] = ()
) -> Iterator[Pebble]:
    """Pebble on loopback with its own listener certificate (made here with openssl)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "listener.pem", workdir / "listener.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port, management, dns, dns_management = free_port(), free_port(), free_port(), free_port()
    config: dict[str, Any] = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "domainBlocklist": list(blocked),
    }
    if validity_seconds is not None:
        config["certificateValidityPeriod"] = validity_seconds
    (workdir / "pebble.json").write_text(json.dumps({"pebble": config}))
    dns_server = subprocess.Popen(
        ["pebble-challtestsrv", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{dns}", "-http01", "",
         "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_management}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ca = Pebble(
        directory=f"https://127.0.0.1:{port}/dir",
        ca_bundle=cert,
        management=f"https://127.0.0.1:{management}",
        dns_management=f"http://127.0.0.1:{dns_management}",
        workdir=workdir,
        process=dns_server,  # (replaced by pebble's own below)
        argv=["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
        port=port,
    )
    try:
        wait_for_port(dns_management, dns_server)
        ca.start()
        yield ca
    finally:
        for running in (ca.process, dns_server):
            if running.poll() is None:
                running.terminate()
                running.wait(timeout=10)


@dataclass
class ServiceProcess:
    url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return self.headers["Authorization"].split(" ", 1)[1]

    def rss_kib(self) -> int:
        """Its resident memory now (/proc), in KiB."""
        return self._status_kib("VmRSS:")

    def peak_rss_kib(self) -> int:
        return self._status_kib("VmHWM:")

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
        return 0


# Site fronts (netfilter.py) of this test session: its own third octet, so that two sessions on
# one host never share a kernel rule, nor remove each other's at their end. In-process services
# share TEST_FRONTS (one at a time); each server process gets a /24 of its own.
SESSION_OCTET = os.getpid() % 250 + 1
TEST_FRONTS = f"127.78.{SESSION_OCTET}.0/24"
_FRONT_NETWORKS = itertools.cycle(range(80, 120))  # 127.N.{SESSION_OCTET}.0/24, one per server process
_SESSION_FRONT = re.compile(rf"127\.(?:78|8\d|9\d|1[01]\d)\.{SESSION_OCTET}\.\d+(?:/\d+)?")


def front_network() -> str:
    """A front network of its own for one more server process of this test session."""
    return f"127.{next(_FRONT_NETWORKS)}.{SESSION_OCTET}.0/24"


def is_session_front(address: str) -> bool:
    """Whether a front address or network belongs to this test session."""
    return _SESSION_FRONT.fullmatch(address) is not None


@contextmanager
def service_process(
    data_dir: Path,
    stderr: Path | None = None,
    *,
    open_files: int | None = None,
    port: int | None = None,
    token: str | None = None,
    **env: str,
) -> Iterator[ServiceProcess]:
    """The service as its users run it: `python -m docker_manager serve`, on a loopback port.
    `open_files`: the soft RLIMIT_NOFILE it starts with (Debian's default is 1,024)."""
    import resource
    import sys

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            )

    port = port or free_port()
    token = token or "dm_process_" + os.urandom(8).hex()
    process = subprocess.Popen(
        [sys.executable, "-m", "docker_manager", "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DM_")},
            "DM_DATA_DIR": str(data_dir),
            "DM_PORT": str(port),
            "DM_ADMIN_TOKEN": token,
            "DM_CONFIG": "/nonexistent/config.json",
            # Each process its own front addresses: two live services never share a site's rule.
            "DM_SWITCH_FRONT_NETWORK": front_network(),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("ab") if stderr is not None else subprocess.DEVNULL,
        preexec_fn=limit,
    )
    try:
        wait_for_port(port, process, timeout=30)
        yield ServiceProcess(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def service_with_nginx(root: Path, **env: str) -> Iterator[tuple[ServiceProcess, NginxServer, Path]]:
    """A server process with its own nginx and a build-context root (switches without a drain)."""
    contexts = root / "contexts"
    contexts.mkdir()
    with (
        nginx(root / "nginx") as web,
        service_process(
            root / "data",
            stderr=root / "server.log",
            DM_CONTEXT_ROOTS=json.dumps([str(contexts)]),
            DM_SWITCH_DRAIN_SECONDS="0",
            DM_SWITCH_STOP_TIMEOUT="1",
            **{**web.env(), **env},
        ) as process,
    ):
        yield process, web, contexts


class LogReceiver:
    """A log receiver as the original's users wrote them: records every POST body, answers 204.

    It speaks HTTP/1.1 with keep-alive, so the sender can reuse its connection.
    """

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_task(self, task_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if isinstance(b, dict) and b.get("task_id") == task_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def wait_final(
    client: httpx2.AsyncClient, headers: dict[str, str], task_id: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll `/tasks/status/{task_id}` until the task is in a final state; its status document."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await client.get(f"/tasks/status/{task_id}", headers=headers)).json()
        if body["status"] not in ("queued", "running"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is still {body['status']} after {timeout:.0f} s")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def started_app(
    settings: Settings, *, timeout: float = 120
) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    """The app with these settings, its lifespan started, and a client speaking to it in-process.

    The one way tests start an app (httpx's ASGITransport buffers whole responses: live streams
    and disconnects need the real server of the `live` fixture instead).
    """
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", timeout=timeout
        ) as client:
            yield app, client


@asynccontextmanager
async def app_client(
    settings: Settings, *, timeout: float = 120
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient]]:
    """A separate app with its own settings, started and stopped around the block."""
    async with started_app(settings, timeout=timeout) as (app, client):
        yield app.state.runtime, client


RUN_ID = secrets.token_hex(3)


SESSION_STARTED = datetime.now(UTC)


PREFIX = f"dmt{RUN_ID}"


BASE_IMAGE = "dm-test-bb:latest"


def docker_cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI: an oracle independent of the code under test."""
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
