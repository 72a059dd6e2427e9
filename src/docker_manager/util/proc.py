"""Running a host process: argv only, own process group, both pipes drained, lines capped.

Both pipes are read at the same time (a process writing more than a pipe holds can never block
on the side nobody reads: the original deadlocked past 64 KiB). Lines longer than the cap are cut
into pieces; past the total cap, output is still drained but no longer kept. Stopping means the
whole process group: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 64 * 1024

LineSink = Callable[[str, str, bool], Awaitable[None]]


@dataclass
class Exit:
    """How a process ended: its exit code, or the signal that killed it."""

    exit_code: int | None
    signal: str | None
    output_bytes: int
    output_truncated: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class ProcessRunner:
    """One process and its group."""

    def __init__(self, *, max_line: int = 64 * 1024, max_output: int = 64 << 20, grace: float = 5.0) -> None:
        self._max_line = max_line
        self._max_output = max_output
        self._grace = grace
        self._total = 0
        self._truncated = False
        self.process: asyncio.subprocess.Process | None = None

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str],
        on_line: LineSink,
        timeout: float | None = None,
    ) -> Exit:
        """Run to the end (or the timeout), handing each output line to `on_line(stream, text, cut)`.

        Cancelling the caller kills the process group before the cancellation goes on.
        """
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: it and its children die together
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        readers = [
            asyncio.create_task(self._pump(self.process.stdout, "stdout", on_line)),
            asyncio.create_task(self._pump(self.process.stderr, "stderr", on_line)),
        ]
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*readers)
                    await self.process.wait()
            except TimeoutError:
                timed_out = True
                await self.stop()
                for reader in readers:
                    reader.cancel()
        except BaseException:
            await self.stop()
            for reader in readers:
                reader.cancel()
            raise
        code = self.process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return Exit(None, name if not timed_out else f"{name} (timeout)", self._total, self._truncated)
        return Exit(code, "timeout" if timed_out else None, self._total, self._truncated)

    async def _pump(self, pipe: asyncio.StreamReader, stream: str, on_line: LineSink) -> None:
        pending = bytearray()
        while chunk := await pipe.read(READ_SIZE):
            self._total += len(chunk)
            if self._total > self._max_output:
                self._truncated = True
                continue  # keep draining so the process never blocks on a full pipe
            pending += chunk
            while True:
                newline = pending.find(b"\n")
                if newline < 0:
                    break
                await on_line(stream, _text(pending[:newline]), False)
                del pending[: newline + 1]
            while len(pending) > self._max_line:
                await on_line(stream, _text(pending[: self._max_line]), True)
                del pending[: self._max_line]
        if pending:
            await on_line(stream, _text(pending), False)

    async def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace period; then reap."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), self._grace)
        # Children that ignored SIGTERM (or outlived the leader) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await process.wait()


def _text(data: bytes | bytearray) -> str:
    return bytes(data).rstrip(b"\r").decode("utf-8", "replace")
