"""The engine's build output, as lines: steps followed, the image id caught, a tail kept."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

LOG_TAIL = 20
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (\S+)\s*(.*)$")
_STEP_IMAGE_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")  # the image a step ended on


class BuildOutput:
    """Turns the engine's build records into output lines, tracking steps and the image id."""

    def __init__(self) -> None:
        self.image_id: str | None = None
        self.step: dict[str, Any] = {}
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.step_images: list[str] = []

    def feed(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        aux = record.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
            return []
        if "stream" in record:
            text = str(record["stream"])
            stream = "build"
        elif "status" in record:
            text = " ".join(str(p) for p in (record.get("status"), record.get("progress")) if p) + "\n"
            stream = "status"
        else:
            return []
        items = []
        for line in text.splitlines():
            step_image = _STEP_IMAGE_RE.match(line)
            if step_image:
                self.step_images.append(step_image.group(1))
            match = _STEP_RE.match(line)
            if match:
                self.step = {
                    "step_index": int(match.group(1)),
                    "step_total": int(match.group(2)),
                    "instruction": match.group(3).upper(),
                }
            if line.strip():
                self.tail.append(line)
            # `chunk` is the engine's record as the original posted it to the log stream: one per
            # line here, so that receivers joining `chunk.stream` get the output exactly once.
            chunk = {"stream": line + "\n"} if stream == "build" else record
            items.append({"stream": stream, "text": line, **self.step, "chunk": chunk})
        return items
