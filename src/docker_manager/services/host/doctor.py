"""What this host needs, checked: `GET /system/doctor` and `docker-manager doctor`, and at every
start (one log line per problem, with what to do).

Each check answers ok or not, what it saw, and for a problem the fix an operator can run. A check
whose feature is off (certificates without DM_NGINX_CERT_DIR) is left out rather than passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import psutil

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.nginx import Nginx
from docker_manager.adapters.site_header import scan_sites
from docker_manager.db import Database
from docker_manager.errors import DockerManagerError
from docker_manager.runner.store import TaskStore
from docker_manager.schemas.host import DoctorCheck, DoctorReport
from docker_manager.services.certificates import CertificateService
from docker_manager.services.host.disk import DiskService
from docker_manager.services.host.options import DoctorOptions
from docker_manager.services.sites.switch import TrafficSwitch
from docker_manager.util.cache import SingleFlightCache
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)

REPORT_TTL = 15.0  # seconds
CLOCK_SKEW = timedelta(minutes=2)  # the newest task may be this far in the future (another host)
CERTIFICATE_WARNING_DAYS = 7


class Doctor:
    def __init__(
        self,
        *,
        docker: Docker,
        nginx: Nginx,
        db: Database,
        disk: DiskService,
        tasks: TaskStore,
        certificates: CertificateService,
        switch: TrafficSwitch,
        options: DoctorOptions,
    ) -> None:
        self._docker = docker
        self._nginx = nginx
        self._db = db
        self._disk = disk
        self._tasks = tasks
        self._certificates = certificates
        self._switch = switch
        self._options = options
        self._task: asyncio.Task[None] | None = None
        # Each run spawns `nginx -t` and walks /proc: a reader gets a report at most this old, and
        # one run at a time whoever asks meanwhile; an admin asks for a fresh one.
        self._flight: SingleFlightCache[DoctorReport] = SingleFlightCache(ttl=REPORT_TTL)

    async def run(self, *, fresh: bool = False) -> DoctorReport:
        if fresh:
            self._flight.clear()
        return await self._flight.get("report", self._run)

    async def _run(self) -> DoctorReport:
        checks: list[DoctorCheck] = []
        steps: list[Callable[[], Awaitable[list[DoctorCheck]]]] = [
            self._engine,
            self._nginx_state,
            self._sites,
            self._roots,
            self._disk_space,
            self._modes,
            self._database,
            self._clock,
            self._ports,
            self._switches,
            self._certificate_ends,
            self._swarm_nodes,
        ]
        for step in steps:
            try:
                checks += await step()
            except Exception as exc:  # a check that breaks is a finding, never the report's end
                name = step.__name__.strip("_")
                log.exception("doctor: the %s check failed", name)
                checks.append(_bad(name, f"the check itself failed: {exc}", "see the service's log"))
        return DoctorReport(ok=all(check.ok for check in checks), checks=checks)

    def start(self) -> None:
        """At start, in the background: one warning per problem, with its fix."""
        self._task = asyncio.create_task(self._log_problems(), name="doctor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _log_problems(self) -> None:
        report = await self.run()
        for check in report.checks:
            if not check.ok:
                log.warning("doctor: %s: %s; fix: %s", check.name, check.detail, check.fix)

    # --- the checks ------------------------------------------------------------------------------
    async def _engine(self) -> list[DoctorCheck]:
        try:
            await self._docker.system.info()
        except DockerManagerError as exc:
            return [_bad("engine", exc.detail, "start the Docker engine: systemctl start docker")]
        version = self._docker.transport.engine_version.get("Version", "unknown")
        return [_ok("engine", f"Docker {version} answers")]

    async def _nginx_state(self) -> list[DoctorCheck]:
        try:
            await self._nginx.check_running()
        except DockerManagerError as exc:
            fix = "start nginx: systemctl start nginx (scripts/serve.sh does it)"
            return [_bad("nginx", exc.detail, fix)]
        async with self._nginx.lock:  # (not in the middle of a site change)
            refused = await self._nginx.test_configuration()
        if refused:
            return [
                _bad("nginx", f"nginx -t refuses the configuration: {refused}", "fix the file nginx -t names")
            ]
        version = ".".join(str(part) for part in self._nginx.version or ())
        return [_ok("nginx", f"nginx {version} runs; nginx -t passes with every site file")]

    async def _sites(self) -> list[DoctorCheck]:
        folders = list(self._options.site_dirs)
        sites, unreadable = await asyncio.to_thread(scan_sites, folders)
        if unreadable:
            named = ", ".join(str(path) for path in unreadable[:5])
            detail = f"{len(unreadable)} site file(s) of this service no longer say what they serve: {named}"
            fix = "re-create the site (POST /nginx/site/create) or remove the file and reload nginx"
            return [_bad("sites", detail, fix)]
        return [_ok("sites", f"{len(sites)} managed site file(s), each header readable")]

    async def _roots(self) -> list[DoctorCheck]:
        unwritable = [
            str(root) for root in self._options.roots if not await asyncio.to_thread(_writable, root)
        ]
        if unwritable:
            fix = "mount or create them read-write for the service (root)"
            return [_bad("folders", f"not writable: {', '.join(unwritable)}", fix)]
        return [_ok("folders", f"{len(self._options.roots)} folders writable")]

    async def _disk_space(self) -> list[DoctorCheck]:
        report = await self._disk.filesystems()
        found = []
        for fs in report:
            name = f"disk {fs.name}"
            free = f"{fs.free_bytes >> 20} MiB free of {fs.total_bytes >> 20} MiB at {fs.path}"
            if fs.free_bytes < fs.min_free_bytes:
                needs = fs.min_free_bytes >> 20
                fix = f"free space there (POST /system/gc, docker system prune); needs {needs} MiB"
                found.append(_bad(name, free, fix))
            else:
                found.append(_ok(name, free))
        return found

    async def _modes(self) -> list[DoctorCheck]:
        found = []
        data = self._options.data_dir
        mode = await asyncio.to_thread(_mode, data)
        if mode is not None and mode & 0o077:
            found.append(
                _bad("data folder", f"{data} is mode {mode:o}: others can read it", f"chmod 700 {data}")
            )
        else:
            found.append(_ok("data folder", f"{data} is private"))
        token = self._options.admin_token_file
        mode = await asyncio.to_thread(_mode, token)
        if mode is not None and mode & 0o077:
            found.append(_bad("admin token file", f"{token} is mode {mode:o}", f"chmod 600 {token}"))
        elif mode is not None:
            found.append(_ok("admin token file", f"{token} is mode {mode:o}"))
        return found

    async def _database(self) -> list[DoctorCheck]:
        try:
            current, head = await self._db.revisions()
        except DockerManagerError as exc:
            return [_bad("database", exc.detail, "check DM_DATABASE_URL and that the database runs")]
        if current != head:
            fix = "restart the service: it migrates the schema at start"
            return [_bad("database", f"schema at {current}, this version needs {head}", fix)]
        return [_ok("database", f"reachable, schema at {head}")]

    async def _clock(self) -> list[DoctorCheck]:
        now = utcnow()
        newest, _ = await self._tasks.page(limit=1)
        fix = "set the clock right: timedatectl set-ntp true"
        if now.year < 2025:
            return [_bad("clock", f"the clock says {now.isoformat()}", fix)]
        if newest and newest[0].created_at > now + CLOCK_SKEW:
            ahead = newest[0].created_at - now
            return [_bad("clock", f"the newest task was made {ahead} after now: the clock went back", fix)]
        return [_ok("clock", f"{now.isoformat(timespec='seconds')}")]

    async def _ports(self) -> list[DoctorCheck]:
        owners = await asyncio.to_thread(_listeners, set(self._options.listen_ports))
        found = []
        for port in self._options.listen_ports:
            names = owners.get(port, set())
            if not names:
                found.append(
                    _bad(
                        f"port {port}",
                        "nothing listens on it",
                        "start nginx, or set DM_NGINX_LISTEN to its port",
                    )
                )
            elif names != {"nginx"}:
                fix = "stop what holds it, or set DM_NGINX_LISTEN to nginx's port"
                found.append(_bad(f"port {port}", f"held by {', '.join(sorted(names))}, not nginx", fix))
            else:
                found.append(_ok(f"port {port}", "nginx listens"))
        return found

    async def _switches(self) -> list[DoctorCheck]:
        mode = self._switch.mode
        if mode.startswith("reload") and "=auto" in mode:
            fix = "install iptables and run the service as root (or set DM_SWITCH_MODE=reload)"
            detail = "iptables cannot be used: each switch reloads nginx instead of moving a kernel rule"
            return [_bad("switches", detail, fix)]
        return [_ok("switches", mode)]

    async def _swarm_nodes(self) -> list[DoctorCheck]:
        """On a swarm manager: every node ready (left out outside a swarm, and on a worker)."""
        try:
            swarm = (await self._docker.system.info()).get("Swarm") or {}
            if not swarm.get("ControlAvailable"):
                return []
            nodes = await self._docker.nodes.list()
        except DockerManagerError:
            return []  # (the engine check says it)
        found = []
        for node in nodes:
            hostname = (node.get("Description") or {}).get("Hostname") or node.get("ID")
            state = (node.get("Status") or {}).get("State")
            if state == "ready":
                found.append(_ok(f"swarm node {hostname}", "ready"))
            else:
                fix = f"start its engine, or drain and remove it (DELETE /swarm/nodes/{node.get('ID')})"
                found.append(_bad(f"swarm node {hostname}", f"{state}: its replicas run elsewhere", fix))
        return found

    async def _certificate_ends(self) -> list[DoctorCheck]:
        found = []
        for view in await self._certificates.list_all():
            if not view.served_by_site:
                continue
            name = f"certificate {view.domain}"
            if view.status in ("error", "expired"):
                detail = view.last_error["detail"] if view.last_error else view.status
                found.append(
                    _bad(name, f"{view.status}: {detail}", f"docker-manager certs issue {view.domain}")
                )
            elif view.days_left is not None and view.days_left < CERTIFICATE_WARNING_DAYS:
                fix = f"docker-manager certs issue {view.domain} --force (or upload a new one)"
                found.append(_bad(name, f"ends in {view.days_left:.1f} days", fix))
            else:
                left = f", {view.days_left:.0f} days left" if view.days_left is not None else ""
                found.append(_ok(name, f"{view.status}{left}"))
        return found


def _ok(name: str, detail: str) -> DoctorCheck:
    return DoctorCheck(name=name, ok=True, detail=detail)


def _bad(name: str, detail: str, fix: str) -> DoctorCheck:
    return DoctorCheck(name=name, ok=False, detail=detail, fix=fix)


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _mode(path: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return None


def _listeners(ports: set[int]) -> dict[int, set[str]]:
    """The names of the processes listening on each of `ports` (TCP). Blocking."""
    found: dict[int, set[str]] = {}
    for connection in psutil.net_connections(kind="tcp"):
        port = getattr(connection.laddr, "port", None)
        if connection.status != psutil.CONN_LISTEN or port not in ports:
            continue
        try:
            name = psutil.Process(connection.pid).name() if connection.pid else "unknown"
        except psutil.Error:
            name = "unknown"
        found.setdefault(port, set()).add(name)
    return found
