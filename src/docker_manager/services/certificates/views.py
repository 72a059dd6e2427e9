"""What the API, the CLI and the dashboard show of a certificate record."""

from __future__ import annotations

from datetime import datetime

from docker_manager.schemas.certificates import CertificateView
from docker_manager.services.certificates.store import CertificateRecord


def view_of(record: CertificateRecord, now: datetime, served: bool) -> CertificateView:
    days = (record.not_after - now).total_seconds() / 86400 if record.not_after else None
    error = (
        {"type": record.last_error_type or "error", "detail": record.last_error or ""}
        if record.last_error
        else None
    )
    return CertificateView(
        domain=record.domain,
        source=record.source,
        status=record.shown_status(now),
        not_before=record.not_before,
        not_after=record.not_after,
        days_left=round(days, 2) if days is not None else None,
        serial=record.serial,
        issuer=record.issuer,
        sans=record.sans or [],
        renew_at=record.renew_at if record.source == "acme" else None,
        last_error=error,
        permanent_error=record.permanent,
        next_attempt_at=record.next_attempt_at,
        task_id=record.task_id,
        served_by_site=served,
    )
