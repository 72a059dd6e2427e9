"""The live view of a task on a terminal: one block kept up to date in place, with the stage,
a spinner and the elapsed time, a bar for build steps (step i of N), a bar with bytes/s for
transfers, and the last output lines."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.spinner import Spinner
from rich.text import Text

from docker_manager.client.views import TAIL_LINES, one_line


class LiveView:
    """A block redrawn in place while the task runs (a terminal only)."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self._console = console or Console()
        self._title = title
        self._stage = "queued"
        self._started = time.monotonic()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._spinner = Spinner("dots")
        self._steps = Progress(TextColumn("steps"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
        self._step_bar: Any = None
        self._transfer = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        self._transfers: dict[str, Any] = {}
        # Redrawn 8 times a second from _render (the spinner and the elapsed time move on their own).
        self._live = Live(
            console=self._console, refresh_per_second=8, transient=True, get_renderable=self._render
        )
        self._live.start()

    def _render(self) -> Group:
        elapsed = time.monotonic() - self._started
        self._spinner.text = Text.assemble(
            (self._title, "bold"), f"  {self._stage}  ", (f"{elapsed:5.1f}s", "dim")
        )
        parts: list[Any] = [self._spinner]
        if self._step_bar is not None:
            parts.append(self._steps)
        if self._transfers:
            parts.append(self._transfer)
        parts += [Text(f"  {line}", style="dim", overflow="ellipsis", no_wrap=True) for line in self._tail]
        return Group(*parts)

    def event(self, event: dict[str, Any]) -> None:
        status = event.get("status")
        if event.get("stage"):
            self._stage = (
                f"{event['stage']} ({status})" if status not in ("log", "progress") else event["stage"]
            )
        if status == "log":
            for line in event.get("lines") or []:
                self._tail.append(one_line(str(line.get("text", ""))))
                if line.get("step_total"):
                    if self._step_bar is None:
                        self._step_bar = self._steps.add_task("steps", total=int(line["step_total"]))
                    self._steps.update(self._step_bar, completed=int(line.get("step_index") or 0))
        elif status == "progress" and event.get("bytes_total"):
            name = one_line(str(event.get("file", "transfer")))
            if name not in self._transfers:
                self._transfers[name] = self._transfer.add_task(name, total=int(event["bytes_total"]))
            self._transfer.update(self._transfers[name], completed=int(event.get("bytes_done") or 0))
        elif event.get("message"):
            self._tail.append(one_line(str(event["message"])))
        self._live.refresh()

    def note(self, text: str) -> None:
        self._stage = one_line(text)
        self._live.refresh()

    def close(self) -> None:
        self._live.stop()
