"""Host facts and a background process sampler, so `/system/top` answers from memory.

psutil's per-process CPU figure is a difference between two readings, so a one-off call either
blocks (the original sampled each process for 0.1 s: 8.7 s for 93 processes) or reads 0. The
sampler keeps the Process objects between ticks and reads everyone once per interval, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from docker_manager.adapters.docker import Docker
from docker_manager.errors import DockerManagerError
from docker_manager.schemas.host import ProcessInfo, SystemInfo, SystemUsage, TopResult
from docker_manager.services.host.options import HostOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Sample:
    pid: int
    name: str
    username: str | None
    cpu_percent: float
    memory_percent: float
    rss: int
    cmdline: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HostPoint:
    """The host at one moment, for the dashboard's charts."""

    ts: float
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    net_sent_per_s: float
    net_recv_per_s: float


HISTORY_SECONDS = 600  # the charts' ten minutes


class HostSampler:
    """Samples processes and the host (CPU, memory, disk, network) every `interval` seconds in a
    worker thread; keeps the host's last ten minutes for the dashboard."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._processes: list[_Sample] = []
        self._cpu_percent = 0.0
        self.sampled_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.history: deque[HostPoint] = deque(maxlen=max(int(HISTORY_SECONDS / interval), 10))
        self._net: tuple[float, int, int] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._sample)  # prime: the first CPU reading is always 0
        self._task = asyncio.create_task(self._loop(), name="host-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self._sample)
            except Exception:  # a sampler hiccup must not end sampling
                log.exception("process sampling failed")

    def _sample(self) -> None:
        samples = []
        attrs = ["pid", "name", "username", "cpu_percent", "memory_percent", "memory_info", "cmdline"]
        for proc in psutil.process_iter(attrs):
            info = proc.info
            memory = info.get("memory_info")
            samples.append(
                _Sample(
                    pid=info["pid"],
                    name=info.get("name") or "",
                    username=info.get("username"),
                    cpu_percent=float(info.get("cpu_percent") or 0.0),
                    memory_percent=float(info.get("memory_percent") or 0.0),
                    rss=int(memory.rss) if memory else 0,
                    cmdline=_capped(info.get("cmdline") or []),
                )
            )
        self._cpu_percent = psutil.cpu_percent(None)
        self._processes = samples
        self.sampled_at = time.time()
        self._sample_host(self.sampled_at)

    def _sample_host(self, now: float) -> None:
        net = psutil.net_io_counters()
        sent = recv = 0.0
        if self._net is not None and now > self._net[0]:
            elapsed = now - self._net[0]
            sent, recv = (net.bytes_sent - self._net[1]) / elapsed, (net.bytes_recv - self._net[2]) / elapsed
        self._net = (now, net.bytes_sent, net.bytes_recv)
        self.history.append(
            HostPoint(
                ts=now,
                cpu_percent=self._cpu_percent,
                memory_percent=psutil.virtual_memory().percent,
                disk_percent=psutil.disk_usage("/").percent,
                net_sent_per_s=max(sent, 0.0),
                net_recv_per_s=max(recv, 0.0),
            )
        )

    @property
    def cpu_percent(self) -> float:
        return self._cpu_percent

    def top(self, *, sort: str, limit: int, with_cmdline: bool) -> TopResult:
        sort = "cpu" if sort == "cpu" else "memory"  # the original's rule: anything else is memory

        def key(p: _Sample) -> float:
            return p.cpu_percent if sort == "cpu" else p.memory_percent

        chosen = sorted(self._processes, key=key, reverse=True)[:limit]
        return TopResult(
            sort=sort,
            limit=limit,
            sampled_at=self.sampled_at,
            processes=[
                ProcessInfo(
                    pid=p.pid,
                    name=p.name,
                    username=p.username,
                    cpu_percent=round(p.cpu_percent, 1),
                    memory_percent=round(p.memory_percent, 2),
                    rss=p.rss,
                    cmdline=list(p.cmdline) if with_cmdline else [],
                )
                for p in chosen
            ],
        )


def _capped(cmdline: list[str]) -> tuple[str, ...]:
    """A command line kept to about 4 KiB (the sampler holds one per process)."""
    kept, size = [], 0
    for arg in cmdline:
        if size + len(arg) > 4096:
            kept.append(arg[: max(4096 - size, 0)])
            break
        kept.append(arg)
        size += len(arg)
    return tuple(kept)


def _disk(path: Path) -> dict[str, Any] | None:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError:
        return None
    return {
        "path": str(path),
        "total": usage.total,
        "used": usage.used,
        "free": usage.free,
        "percent": usage.percent,
    }


def _host_info() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    boot = psutil.boot_time()
    try:
        one, five, fifteen = os.getloadavg()
        loadavg: dict[str, float] | None = {"1m": one, "5m": five, "15m": fifteen}
    except OSError:
        loadavg = None
    return {
        # The original's fields, as its dashboards read them.
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "uptime_seconds": round(time.time() - boot, 1),
        "cpu": {"logical": psutil.cpu_count(logical=True), "physical": psutil.cpu_count(logical=False)},
        "memory": {"total": memory.total, "available": memory.available},
        "loadavg": loadavg,
        # This service's additions.
        "os": platform.platform(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_total": memory.total,
        "boot_time": boot,
    }


class HostService:
    def __init__(self, *, docker: Docker, sampler: HostSampler, options: HostOptions) -> None:
        self._docker = docker
        self._sampler = sampler
        self._options = options

    async def info(self) -> SystemInfo:
        result = await asyncio.to_thread(_host_info)
        result["docker"] = await self._docker_facts()
        return SystemInfo.model_validate(result)

    async def _docker_facts(self) -> dict[str, Any]:
        try:
            info = await self._docker.system.info()
            version = self._docker.transport.engine_version
        except DockerManagerError as exc:
            return {"reachable": False, "error": exc.detail}
        return {
            "reachable": True,
            "version": version.get("Version"),
            "api_version": await self._docker.transport.api_version(),
            "containers": info.get("Containers"),
            "containers_running": info.get("ContainersRunning"),
            "images": info.get("Images"),
            "storage_driver": info.get("Driver"),
            "root_dir": info.get("DockerRootDir"),
        }

    async def usage(self) -> SystemUsage:
        return SystemUsage.model_validate(await asyncio.to_thread(self._usage))

    def _usage(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        net = psutil.net_io_counters()
        root = _disk(Path("/"))
        disks = [d for d in (root, _disk(self._options.roots.data_dir)) if d]
        return {
            # The original's fields, as its dashboards read them.
            "cpu_percent": self._sampler.cpu_percent,
            "memory": {
                "total": memory.total,
                "used": memory.used,
                "available": memory.available,
                "percent": memory.percent,
            },
            "swap": {"total": swap.total, "used": swap.used, "free": swap.free, "percent": swap.percent},
            "disk_root": {k: v for k, v in (root or {}).items() if k != "path"} or None,
            "net_io": (
                {
                    "bytes_sent": net.bytes_sent,
                    "bytes_recv": net.bytes_recv,
                    "packets_sent": net.packets_sent,
                    "packets_recv": net.packets_recv,
                }
                if net
                else None
            ),
            # This service's additions.
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "disk": disks,
            "network": {"bytes_sent": net.bytes_sent, "bytes_recv": net.bytes_recv} if net else None,
            "sampled_at": self._sampler.sampled_at,
        }

    def top(self, *, sort: str, limit: int, with_cmdline: bool) -> TopResult:
        return self._sampler.top(sort=sort, limit=limit, with_cmdline=with_cmdline)

    async def health(self) -> dict[str, Any]:
        try:
            await self._docker.system.ping()
            version = self._docker.transport.engine_version
        except DockerManagerError:
            return {"status": "degraded", "docker": {"reachable": False}}
        return {
            "status": "ok",
            "docker": {"reachable": True, "version": version.get("Version")},
        }
