"""Labels on every Docker object the service creates, and the ownership test built on them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MANAGED = "docker-manager.managed"
APP_ID = "docker-manager.app_id"
TASK_ID = "docker-manager.task_id"

MANAGED_FILTER = {"label": [f"{MANAGED}=true"]}


def managed_labels(*, app_id: str | None = None, task_id: str | None = None) -> dict[str, str]:
    labels = {MANAGED: "true"}
    if app_id:
        labels[APP_ID] = app_id
    if task_id:
        labels[TASK_ID] = task_id
    return labels


def is_managed(labels: Mapping[str, Any] | None) -> bool:
    return bool(labels) and (labels or {}).get(MANAGED) == "true"
