"""What comes out of containers: logs, exec output, stats, and what non-exec tokens may not see.

Every read is capped (`DM_EXEC_MAX_OUTPUT_BYTES`); an exec is also capped in time, and a process
past its limit is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from docker_manager.adapters.docker import ContainerInfo, Docker, StreamId
from docker_manager.schemas.containers import ExecResult, LogLine, LogsResult, StatsResult

StrList = list[str]


@dataclass
class _Capture:
    """Output of one stream, capped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> bool:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            self.truncated = True
            return False
        self.data += chunk
        return True

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


async def collect_logs(
    docker: Docker, container_id: str, *, tty: bool, tail: int | None, timestamps: bool, limit: int
) -> LogsResult:
    """A container's log, up to `limit` bytes: stdout and stderr told apart line by line."""
    merged = _Capture(limit)
    partial: dict[StreamId, str] = {StreamId.STDOUT: "", StreamId.STDERR: ""}
    lines: list[LogLine] = []
    async with docker.containers.logs(container_id, tty=tty, tail=tail, timestamps=timestamps) as frames:
        async for stream_id, payload in frames:
            if not merged.add(payload):
                break
            text = partial[stream_id] + payload.decode("utf-8", "replace")
            *complete, partial[stream_id] = text.split("\n")
            name = "stderr" if stream_id == StreamId.STDERR else "stdout"
            lines.extend(LogLine(stream=name, text=line) for line in complete)
    for stream_id, rest in partial.items():
        if rest:
            lines.append(LogLine(stream="stderr" if stream_id == StreamId.STDERR else "stdout", text=rest))
    return LogsResult(id=container_id, name="", logs=merged.text(), lines=lines, truncated=merged.truncated)


async def run_exec(
    docker: Docker, container_id: str, cmd: StrList, *, workdir: str | None, timeout: float, limit: int
) -> ExecResult:
    """Run `cmd` (an argv list, no shell) in a running container; output and time are capped."""
    exec_id = await docker.execs.create(container_id, cmd, workdir=workdir)
    out, err = _Capture(limit), _Capture(limit)
    both = _Capture(2 * limit)  # the original's merged `output`
    timed_out = False
    # The limit covers the run, not the start: a start cut short could leave a process that
    # began after all, which nobody would then kill.
    async with docker.execs.start(exec_id) as frames:
        try:
            async with asyncio.timeout(timeout):
                async for stream_id, payload in frames:
                    target = err if stream_id == StreamId.STDERR else out
                    both.add(payload)
                    if not target.add(payload):
                        break  # output flood: stop reading and end the process below
        except TimeoutError:
            timed_out = True
    exit_code = await _finish_exec(docker, exec_id, kill=timed_out or out.truncated or err.truncated)
    return ExecResult(
        exit_code=exit_code,
        output=both.text(),
        stdout=out.text(),
        stderr=err.text(),
        timed_out=timed_out,
        truncated=out.truncated or err.truncated,
    )


async def _finish_exec(docker: Docker, exec_id: str, *, kill: bool) -> int | None:
    info = await docker.execs.inspect(exec_id)
    if kill and info.get("Running") and info.get("Pid"):
        # The engine has no "kill exec" call; its Pid is a host pid when the engine is local.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(info["Pid"]), signal.SIGKILL)
    for _ in range(50):
        if not info.get("Running"):
            code = info.get("ExitCode")
            return int(code) if code is not None else None
        await asyncio.sleep(0.02)
        info = await docker.execs.inspect(exec_id)
    return None


HIDDEN = "<hidden: needs exec>"


def redact_for_read(data: dict[str, Any]) -> None:
    """What may hold a secret, hidden: env values, the command and its arguments (`--password=`),
    the healthcheck's command, the log driver's options (a `splunk-token`)."""
    config = data.get("Config") or {}
    config["Env"] = [item.split("=", 1)[0] + "=<redacted>" for item in config.get("Env") or []]
    for key in ("Cmd", "Entrypoint"):
        if config.get(key):
            config[key] = [HIDDEN]
    if (config.get("Healthcheck") or {}).get("Test"):
        config["Healthcheck"]["Test"] = [HIDDEN]
    if data.get("Args"):
        data["Args"] = [HIDDEN]
    log_config = (data.get("HostConfig") or {}).get("LogConfig") or {}
    if log_config.get("Config"):
        log_config["Config"] = dict.fromkeys(log_config["Config"], "<redacted>")


def stats_result(info: ContainerInfo, raw: dict[str, Any]) -> StatsResult:
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = (cpu_delta / system_delta) * online * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    memory = raw.get("memory_stats") or {}
    # Page cache is reclaimable; `docker stats` leaves it out too.
    cache = (memory.get("stats") or {}).get("inactive_file", 0)
    usage = max(int(memory.get("usage", 0)) - int(cache), 0)
    limit = int(memory.get("limit", 0))
    networks = raw.get("networks") or {}
    return StatsResult(
        id=info.id,
        name=info.name,
        cpu_percent=round(cpu_percent, 2),
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=round(usage / limit * 100.0, 2) if limit else 0.0,
        pids=(raw.get("pids_stats") or {}).get("current"),
        network_rx=sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        network_tx=sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
        raw=raw,
    )
