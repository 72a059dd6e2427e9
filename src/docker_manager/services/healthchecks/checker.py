"""Health checks after a localrun: after the window, is the container running and answering HTTP?

Pending checks are rows in the database, so a restart of the service does not lose them: on start
every pending check is scheduled again (an overdue one runs at once). The verdict goes into the
task folder's build.info.json (`status` successful or failed, `healthcheck`, `healthchecksstatus`,
`isChecking: false`, and on failure the exit code, the OOM flag and the container's last lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager import metrics
from docker_manager.adapters.docker import Docker
from docker_manager.adapters.probe import HttpProbe, NoGoodAnswer
from docker_manager.db.tables import health_checks
from docker_manager.errors import DockerManagerError, NotFound
from docker_manager.runner.files import LogBatch, TaskFiles
from docker_manager.util.clock import as_utc, iso, utcnow

log = logging.getLogger(__name__)

PROBE_WINDOW = 2.0  # seconds of tries, one a second
LAST_LINES = 50


@dataclass(frozen=True)
class PendingCheck:
    id: int
    folder: Path
    container_id: str
    host_port: int | None
    path: str
    due_at: datetime


class HealthChecker:
    def __init__(self, engine: AsyncEngine, docker: Docker, probe: HttpProbe) -> None:
        self._engine = engine
        self._docker = docker
        self._probe_http = probe
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> int:
        """Schedule every check left pending, by this process or an earlier one."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(health_checks))).all()
        for row in rows:
            due = as_utc(row.due_at) or utcnow()
            self._spawn(
                PendingCheck(row.id, Path(row.folder), row.container_id, row.host_port, row.path, due)
            )
        return len(rows)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def schedule(
        self, *, folder: Path, container_id: str, host_port: int | None, path: str, after: int
    ) -> dict[str, Any]:
        """Record a check due in `after` seconds; returns the fields for build.info.json."""
        now = utcnow()
        due = now + timedelta(seconds=after)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                health_checks.insert().values(
                    folder=str(folder),
                    container_id=container_id,
                    host_port=host_port,
                    path=path,
                    due_at=due,
                    created_at=now,
                )
            )
            check_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        self._spawn(PendingCheck(check_id, folder, container_id, host_port, path, due))
        return {
            "healthcheck": False,
            "healthchecksstatus": "pending",
            "isChecking": True,
            "healthcheck_time": after,
            "start_check_time": iso(now),
            "end_check_time": iso(due),
        }

    def _spawn(self, check: PendingCheck) -> None:
        self._tasks[check.id] = asyncio.create_task(self._run(check), name=f"healthcheck-{check.id}")

    async def _run(self, check: PendingCheck) -> None:
        try:
            delay = (check.due_at - utcnow()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            verdict = await self.check(check)
            metrics.HEALTH_CHECKS.labels(outcome=str(verdict.get("status"))).inc()
            files = TaskFiles(check.folder)
            if await asyncio.to_thread(check.folder.is_dir):
                await files.merge_info(verdict)
                line = f"healthcheck {verdict['status']}: {verdict['healthchecksstatus']}"
                await files.append(
                    LogBatch(
                        events=[line],
                        # The container's own output stays in the summary (shown to exec tokens
                        # only), never in the logs a read token sees.
                        jsonl=[
                            {
                                "event": "healthcheck_completed",
                                **{k: v for k, v in verdict.items() if k != "last_lines"},
                            }
                        ],
                        errors=[line] if verdict["status"] == "failed" else [],
                    )
                )
            async with self._engine.begin() as conn:
                await conn.execute(health_checks.delete().where(health_checks.c.id == check.id))
        except asyncio.CancelledError:
            raise  # the service stops; the row stays and the check runs after the restart
        except Exception:
            log.exception("health check %s failed to run", check.id)
        finally:
            self._tasks.pop(check.id, None)

    async def check(self, check: PendingCheck) -> dict[str, Any]:
        """The verdict: running, and (when a port is published) answering HTTP."""
        checked_at = iso(utcnow())
        try:
            info = await self._docker.containers.info(check.container_id)
        except NotFound:
            return {
                "status": "failed",
                "healthcheck": False,
                "healthchecksstatus": "missing",
                "isChecking": False,
                "checked_at": checked_at,
                "reason": "the container no longer exists",
            }
        status = info.status
        verdict: dict[str, Any] = {"isChecking": False, "checked_at": checked_at}
        if not info.running:
            verdict.update(
                status="failed",
                healthcheck=False,
                healthchecksstatus=f"{status}({info.state.get('ExitCode')})",
                exit_code=info.state.get("ExitCode"),
                oom_killed=bool(info.state.get("OOMKilled")),
                restart_count=info.raw.get("RestartCount", 0),
                reason="the container is not running",
                last_lines=await self._last_lines(check.container_id, info.tty),
            )
            return verdict
        if check.host_port is not None:
            answer = await self._probe(check.host_port, check.path)
            verdict["http_status"] = answer
            if answer is None:
                verdict.update(
                    status="failed",
                    healthcheck=False,
                    healthchecksstatus=status,
                    reason=f"nothing answered HTTP on 127.0.0.1:{check.host_port}",
                    last_lines=await self._last_lines(check.container_id, False),
                )
                return verdict
        verdict.update(status="successful", healthcheck=True, healthchecksstatus=status)
        return verdict

    async def _probe(self, port: int, path: str) -> int | None:
        """Any HTTP answer means the server is up; a few tries a second apart."""
        try:
            answer = await self._probe_http.wait(
                f"http://127.0.0.1:{port}{path}", within=PROBE_WINDOW, interval=1.0, accept=lambda _: True
            )
        except NoGoodAnswer:
            return None
        return answer.status_code

    async def _last_lines(self, container_id: str, tty: bool) -> list[str]:
        lines: list[str] = []
        try:
            async with self._docker.containers.logs(container_id, tty=tty, tail=LAST_LINES) as frames:
                async for _, payload in frames:
                    lines.extend(payload.decode("utf-8", "replace").splitlines())
        except DockerManagerError:
            return lines
        return lines[-LAST_LINES:]
