"""When to renew and when to try again: pure rules, so that they can be read (and tested) alone."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from docker_manager.services.certificates.files import CertificateFacts
from docker_manager.services.certificates.store import CertificateRecord

MAX_EARLY = timedelta(days=30)  # never renew earlier than this before the end
WARN_BEFORE = timedelta(days=7)  # the log warns every check from then on


def renew_at(not_before: datetime, not_after: datetime) -> datetime:
    """When a third of the lifetime remains, but at most 30 days before the end (a 90-day
    certificate: after 60 days; a 6-day one: after 4)."""
    lifetime = not_after - not_before
    return max(not_after - lifetime / 3, not_after - MAX_EARLY)


def next_attempt(
    failures: int, now: datetime, *, first: float, longest: float, retry_after: float | None = None
) -> datetime:
    """After the `failures`-th failure in a row: `first` seconds doubling each time, capped at
    `longest`, with up to a quarter more at random (renewals of many domains spread out), and
    never sooner than the CA's Retry-After."""
    spread = 1 + random.random() / 4  # noqa: S311 (spreading, not secrecy)
    wait = min(longest, first * 2 ** max(0, failures - 1) * spread)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return now + timedelta(seconds=wait)


def is_due(record: CertificateRecord, now: datetime) -> bool:
    """Whether the renewal loop should order for this domain now (its site still exists)."""
    if record.source != "acme" or record.permanent:
        return False
    if record.status in ("error", "pending"):
        return record.next_attempt_at is None or record.next_attempt_at <= now
    if record.renew_at is not None and record.renew_at <= now:
        return record.next_attempt_at is None or record.next_attempt_at <= now
    return False


def with_facts(record: CertificateRecord, facts: CertificateFacts) -> CertificateRecord:
    """The record of the certificate `facts` describe, served now: valid, its dates and names,
    and for an ACME one when to renew it."""
    return record.with_(
        status="valid",
        not_before=facts.not_before,
        not_after=facts.not_after,
        serial=facts.serial,
        issuer=facts.issuer,
        sans=facts.sans,
        renew_at=renew_at(facts.not_before, facts.not_after) if record.source == "acme" else None,
    )


def with_suggestion(record: CertificateRecord, suggested: datetime | None) -> CertificateRecord:
    """The record renewed at the CA's suggested moment (ARI) when that comes before its own
    `renew_at`; the same record otherwise (a later suggestion never delays the lifetime rule)."""
    if suggested is None or record.renew_at is None or suggested >= record.renew_at:
        return record
    return record.with_(renew_at=suggested)
