"""How a task's progress is shown: a live view on a terminal, plain lines anywhere else.

The live view keeps one block up to date in place: the stage with a spinner and the elapsed time,
a bar for build steps (step i of N), a bar with bytes/s for transfers, and the last output lines.
Plain lines carry no control characters at all (CI logs, pipes).
"""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from typing import Any, Protocol, TextIO

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

# CSI sequences whole, then any other control character (C0 but tab and newline, DEL, C1): what
# is left cannot move the cursor, retitle the window, set the clipboard or fake a hyperlink.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TAIL_LINES = 8


def clean(text: str) -> str:
    """Server-given text made safe for a terminal (a build's output, an error detail may carry any)."""
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """`clean`, on one line (a table cell, a field): newlines cannot fake further lines."""
    return clean(text).replace("\n", " ").replace("\r", " ")


class TaskView(Protocol):
    def event(self, event: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class QuietView:
    """--json: nothing on the way, the result at the end."""

    def event(self, event: dict[str, Any]) -> None:
        return None

    def note(self, text: str) -> None:
        return None

    def close(self) -> None:
        return None


class PlainView:
    """One line per step and per output line; transfers at most every 25 %."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._reported: dict[str, int] = {}

    def _line(self, text: str) -> None:
        self._out.write(clean(text) + "\n")
        self._out.flush()

    def event(self, event: dict[str, Any]) -> None:
        status, stage = event.get("status"), event.get("stage") or "task"
        if status == "log":
            for line in event.get("lines") or []:
                self._line(f"  | {one_line(str(line.get('text', '')))}")
            return
        if status == "progress":
            total, done = int(event.get("bytes_total") or 0), int(event.get("bytes_done") or 0)
            quarter = done * 4 // total if total else 0
            name = str(event.get("file", ""))
            if quarter <= self._reported.get(name, -1):
                return
            self._reported[name] = quarter
        message = event.get("message") or event.get("error") or ""
        self._line(f"[{stage}] {status}" + (f": {message}" if message else ""))

    def note(self, text: str) -> None:
        self._line(f"[client] {text}")

    def close(self) -> None:
        return None


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


def view_for(title: str, *, as_json: bool) -> TaskView:
    if as_json:
        return QuietView()
    if sys.stdout.isatty():
        return LiveView(title)
    return PlainView()
