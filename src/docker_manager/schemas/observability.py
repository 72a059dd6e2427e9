"""Answers of `/audit`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditRecord(BaseModel):
    ts: datetime
    request_id: str
    token_id: str | None
    token_name: str | None
    scopes: str | None
    client: str | None
    method: str
    route: str = Field(description="The route template, e.g. /apps/{app_id}/rollback.")
    app_id: str | None
    target: dict[str, Any] = Field(description="What the request named: app, container, image, task, domain.")
    status: int
    outcome: str = Field(description="ok, denied (401/403/429), rejected (other 4xx) or failed (5xx).")
    error_code: str | None
    duration_ms: float


class AuditPage(BaseModel):
    entries: list[AuditRecord]
    next_cursor: str | None
