"""The engine's build output, as lines: steps followed, the image id caught, a tail kept."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any

LOG_TAIL = 20
MAX_STEP_IMAGES = 256
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (\S+)\s*(.*)$")
_STEP_IMAGE_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")  # the image a step ended on


@dataclass(frozen=True)
class StepImage:
    """An image a step ended on, as the output names it (12 hex digits), and whether the step ran
    here (not FROM, not `Using cache`). A RUN step can print such lines too: see claims.py."""

    short_id: str
    ran: bool


class BuildOutput:
    """Turns the engine's build records into output lines, tracking steps and the image id."""

    def __init__(self) -> None:
        self.image_id: str | None = None
        self.step: dict[str, Any] = {}
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.step_images: list[StepImage] = []
        self._step_cached = False

    @property
    def last_step_ran(self) -> bool:
        """Whether the final step was run by this build (so its image was committed by it)."""
        return bool(self.step) and self.step.get("instruction") != "FROM" and not self._step_cached

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
            if step_image and len(self.step_images) < MAX_STEP_IMAGES:
                self.step_images.append(StepImage(step_image.group(1), ran=self.last_step_ran))
            if line == " ---> Using cache":
                self._step_cached = True
            match = _STEP_RE.match(line)
            if match:
                self._step_cached = False
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
