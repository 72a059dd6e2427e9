"""Safe URL path segments for engine object references."""

from __future__ import annotations

from urllib.parse import quote


def ref(value: str) -> str:
    """Percent-encode a container, image, volume or exec reference for use in a URL path."""
    return quote(value, safe="")
