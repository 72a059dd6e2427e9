"""docs/configuration.md, written from the settings' own descriptions (`python -m
docker_manager.config_docs > docs/configuration.md`; a test fails when the page and the fields
differ)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from docker_manager.config import Settings

HEAD = """# Configuration

Settings come from environment variables (prefix `DM_`), then from `config.json` (at `$DM_CONFIG`,
else in the working directory; keys are the names below without the prefix, lower case), then the
defaults. The environment wins. Lists and objects are JSON in the environment:
`DM_CONTEXT_ROOTS='["/srv/apps"]'`. Each domain is given only its own settings (as a small options
object, `services/<domain>/options.py`).

This page is generated from `src/docker_manager/config/` (`python -m docker_manager.config_docs`).

| setting | default | meaning |
|---|---|---|
"""

TAIL = """
Also read: `DM_CONFIG` (where `config.json` is, default `./config.json`); `DOCKERHUB_USERNAME` and
`DOCKERHUB_PASSWORD` (registry credentials when a pipeline request brings none, as a pair, for the
registries in `DM_REGISTRY_CREDENTIALS_FOR` only); `log_stream_endpoint` and `auth_header` are the
original's `config.json` keys for `DM_LOG_STREAM_ENDPOINT` and `DM_AUTH_HEADER`.
"""


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value, default=str, separators=(',', ':'))}`"
    if isinstance(value, (Path, str)) or hasattr(value, "compressed"):
        return f"`{value}`"
    return f"`{value}`"


def page() -> str:
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `DM_{name.upper()}` | {_shown(default)} | {description} |")
    return HEAD + "\n".join(rows) + "\n" + TAIL


if __name__ == "__main__":
    print(page(), end="")  # noqa: T201
