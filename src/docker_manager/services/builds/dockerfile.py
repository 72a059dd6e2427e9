"""Dockerfile text and names: parsed into instructions, labelled, and the names a build gives."""

from __future__ import annotations

import re
from typing import Any

from docker_manager.schemas.common import IMAGE_NAME_RE


def parse_dockerfile(text: str) -> list[dict[str, Any]]:
    """Instructions of a Dockerfile, continuation lines joined: [{line, op, instruction, args}]."""
    escape = "\\"
    directive = re.match(r"^#\s*escape\s*=\s*(\S)", text)
    if directive:
        escape = directive.group(1)
    ops: list[dict[str, Any]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith(escape):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        instruction = " ".join(part for part in pending if part)
        pending = []
        op, _, args = instruction.partition(" ")
        ops.append({"line": start, "op": op.upper(), "instruction": instruction, "args": args.strip()})
    if pending:
        instruction = " ".join(part for part in pending if part)
        op, _, args = instruction.partition(" ")
        ops.append({"line": start, "op": op.upper(), "instruction": instruction, "args": args.strip()})
    return ops


def with_labels(dockerfile: str, labels: dict[str, str]) -> str:
    """The Dockerfile with one LABEL instruction appended (it applies to the final stage).

    The engine's `labels` build parameter adds one build step per label (each a container commit);
    one instruction for all of them costs a single step. Values are validated names, quoted anyway.
    """
    pairs = " ".join(f'"{key}"="{value}"' for key, value in sorted(labels.items()))
    return dockerfile.rstrip("\n") + f"\n\nLABEL {pairs}\n"


def image_name_for(name: str) -> str:
    """An app or task id as an image name: lower-cased (`Web` -> `web`), and where its `.`/`_`/`-`
    would not make a valid name, those runs become one dash."""
    lowered = name.lower()
    if IMAGE_NAME_RE.fullmatch(lowered):
        return lowered
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-") or "app"


def artefact_name(tag: str) -> str:
    """`{tag with : and / replaced by _}.tar.lz4`, as the original named it."""
    return tag.replace("/", "_").replace(":", "_") + ".tar.lz4"
