"""`POST /tasks/run-stream`: a host command as a task, its output streamed (admin only).

A string `cmd` runs through `/bin/sh -c`, as the original's `shell=True` did (the route is
admin-only: an admin could send `["sh", "-c", ...]` anyway); `DM_RUN_ALLOW_SHELL=false` splits it
into words instead. A list is an argv. It runs in a work root, with a clean environment plus the
caller's variables (never the loader's or PATH), in its own process group, with a timeout. The
stream is the command's lifetime: a client that goes away takes the command with it (no orphans).
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from docker_manager.errors import CommandFailed, InvalidInput
from docker_manager.runner import (
    LOG,
    Status,
    TaskContext,
    TaskKind,
    TaskRecord,
    TaskRunner,
    TaskSpec,
    follow,
    new_task_id,
)
from docker_manager.services.commands.options import CommandOptions
from docker_manager.util.argv import split_words
from docker_manager.util.paths import confine
from docker_manager.util.proc import ProcessRunner

GENERIC_TASK = "generic_task"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables that change how programs are loaded or how shells behave: never from a request.
_FORBIDDEN_ENV = re.compile(
    r"^(LD_.*|DYLD_.*|PATH|BASH_ENV|ENV|IFS|PS4|SHELLOPTS|BASHOPTS|PERL5OPT|PYTHONSTARTUP)$"
)


def command_env(extra: dict[str, str]) -> dict[str, str]:
    bad = sorted(key for key in extra if _FORBIDDEN_ENV.fullmatch(key))
    if bad:
        raise InvalidInput(f"these variables may not be set: {', '.join(bad)}", field="env")
    return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/root", **extra}


def split_argv(cmd: str | list[str], *, shell: bool) -> list[str]:
    """The argv a `cmd` runs as: a list as it is, a string through `sh -c` or split into words."""
    try:
        if isinstance(cmd, str) and shell:
            if not cmd.strip() or "\x00" in cmd:
                raise ValueError("the command is empty or has a NUL byte")
            return ["/bin/sh", "-c", cmd]  # the shell parses it, quotes and all
        return split_words(cmd)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="cmd") from exc


def final_payload(status: Status, result: dict[str, Any] | None) -> dict[str, Any]:
    """The original's completion payload: `status: "completed"` and an integer `exit_code` once the
    process has exited, whatever the code (the task's own status goes beside it)."""
    exit_code = (result or {}).get("exit_code")
    if exit_code is None:
        return {"task_status": status.value}
    return {"status": "completed", "exit_code": int(exit_code), "task_status": status.value}


class CommandService:
    def __init__(self, *, runner: TaskRunner, options: CommandOptions) -> None:
        self._runner = runner
        self._options = options

    def _cwd(self, raw: str | None) -> Path:
        roots = self._options.roots.work_paths
        path = confine(raw or str(roots[0]), roots, field="cwd")
        if not path.is_dir():
            raise InvalidInput("cwd is not a directory", field="cwd")
        return path

    def argv(self, cmd: str | list[str]) -> list[str]:
        return split_argv(cmd, shell=self._options.allow_shell)

    async def start(
        self,
        *,
        cmd: str | list[str],
        cwd: str | None,
        env: dict[str, str],
        task_id: str | None,
        timeout: float | None,
    ) -> TaskRecord:
        argv = self.argv(cmd)
        directory = await asyncio.to_thread(self._cwd, cwd)
        environment = command_env(env)
        limit = min(timeout or self._options.timeout, self._options.timeout)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            return await self._run(ctx, argv, directory, environment, limit)

        task_id = task_id or new_task_id(GENERIC_TASK)
        return await self._runner.submit(
            TaskSpec(
                task_type=GENERIC_TASK,
                work=work,
                task_id=task_id,
                files_dir=self._options.roots.builds_path / task_id,
                kind=TaskKind.COMMAND,
                stream_fields={"cmd": cmd if isinstance(cmd, str) else shlex.join(argv)},
                final_payload=final_payload,
            )
        )

    async def _run(
        self, ctx: TaskContext, argv: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        await ctx.event("run", "starting", argv=argv, cwd=str(cwd))
        process = ProcessRunner(
            max_line=self._options.max_line_bytes, max_output=self._options.max_output_bytes
        )

        async def on_line(stream: str, text: str, cut: bool) -> None:
            item: dict[str, Any] = {"stream": stream, "text": text}
            if cut:
                item["cut"] = True
            await ctx.output([item])

        try:
            result = await process.run(argv, cwd=cwd, env=env, on_line=on_line, timeout=timeout)
        except FileNotFoundError as exc:
            raise CommandFailed(f"{argv[0]}: no such program", exit_code=127) from exc
        except PermissionError as exc:
            raise CommandFailed(f"{argv[0]}: not executable", exit_code=126) from exc
        summary: dict[str, Any] = {
            "exit_code": result.exit_code,
            "signal": result.signal,
            "output_bytes": result.output_bytes,
            "output_truncated": result.output_truncated,
        }
        await ctx.event("run", "exited", **summary)
        if not result.ok:
            reason = (
                f"exit code {result.exit_code}" if result.exit_code is not None else f"signal {result.signal}"
            )
            raise CommandFailed(f"the command failed: {reason}", **summary)
        return summary

    async def stream(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        """The NDJSON view: output lines as they come, then the end. Leaving stops the command."""
        store, bus = self._runner.store, self._runner.bus
        finished = False
        try:
            async for event in follow(store, bus, task_id, stop=self._runner.closing):
                if event is None:
                    continue
                if event.status == LOG:
                    for line in event.data.get("lines", []):
                        yield {"task_id": task_id, "stream": line.get("stream"), "line": line.get("text", "")}
                elif event.data.get("final"):
                    finished = True
                    record = await store.get(task_id, with_events=False)
                    result = record.result or {}
                    yield {
                        "task_id": task_id,
                        "status": record.status.value,
                        "exit_code": result.get("exit_code"),
                        "signal": result.get("signal"),
                        "error": record.error,
                    }
        finally:
            if not finished and self._runner.is_live(task_id):
                # The client went away: the command goes with it (shielded: we may be cancelled).
                await asyncio.shield(self._runner.cancel(task_id))

    async def document(self, task_id: str) -> dict[str, Any]:
        """The original's answer, once the command has ended: `{status: "completed", exit_code:
        "<string>"}` (the exit code as a string, as it was), with the task's own fields beside it.
        Leaving early stops the command, as with the stream."""
        end: dict[str, Any] = {}
        output_lines = 0
        async for item in self.stream(task_id):
            if "line" in item:
                output_lines += 1
            else:
                end = item
        exit_code = end.get("exit_code")
        return {
            "status": "completed" if exit_code is not None else "error",
            "exit_code": str(exit_code) if exit_code is not None else None,
            "task_id": task_id,
            "task_status": end.get("status"),
            "signal": end.get("signal"),
            "error": end.get("error"),
            "output_lines": output_lines,
        }
