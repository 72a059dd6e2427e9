"""Labels on every Docker object the service creates: for people and `docker ps` filters.

Ownership is not decided by them (an image can carry any label): see `ownership.py`.
"""

from __future__ import annotations

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
