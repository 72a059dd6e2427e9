"""Time as this service records it: UTC, always with its zone."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored timestamp with its zone (SQLite hands them back without one; all stored are UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def iso(moment: datetime, *, timespec: str = "seconds") -> str:
    """`2026-12-02T10:00:00Z`: ISO-8601, UTC, with a Z."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def timestamp() -> str:
    """Now, to the millisecond, for log lines and summaries."""
    return iso(utcnow(), timespec="milliseconds")
