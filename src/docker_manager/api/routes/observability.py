"""`/metrics` (Prometheus) and `/audit` (who changed what)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from docker_manager import metrics
from docker_manager.api.deps import AdminAccess, AuditDep, MetricsAccess, ObserversDep
from docker_manager.schemas.observability import AuditPage, AuditRecord

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics(observers: ObserversDep, _: MetricsAccess) -> Response:
    """Prometheus text format; a token with the `metrics` (or `read`) scope."""
    # Scrapers in a loop share one rendering a second (it costs milliseconds of CPU).
    body = await observers.exposition.get("all", lambda: asyncio.to_thread(generate_latest, metrics.REGISTRY))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/audit", response_model=AuditPage)
async def audit_entries(
    audit: AuditDep,
    _: AdminAccess,
    since: datetime | None = None,
    until: datetime | None = None,
    token: Annotated[str | None, Query(max_length=100, description="A token's id or name.")] = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(pattern=r"^(ok|denied|rejected|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    """Newest first: every state-changing request and every refused authentication."""
    entries, next_cursor = await audit.page(
        since=since, until=until, token=token, app_id=app_id, outcome=outcome, limit=limit, cursor=cursor
    )
    return AuditPage(entries=[AuditRecord(**e.as_dict()) for e in entries], next_cursor=next_cursor)
