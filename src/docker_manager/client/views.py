"""How a task's progress is shown: a live view on a terminal (client/live.py), plain lines
anywhere else. Plain lines carry no control characters at all (CI logs, pipes)."""

from __future__ import annotations

import re
import sys
from typing import Any, Protocol, TextIO

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
