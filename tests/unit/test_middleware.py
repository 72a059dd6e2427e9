"""api/middleware.py's pure parts: the failed-authentication limiter, client keys, peer addresses."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from docker_manager.api.middleware import UNVERIFIED_PEER, FailureLimiter, client_key, peer_of


def test_failures_past_the_limit_make_the_address_wait_the_window() -> None:
    limiter = FailureLimiter(limit=3, window=0.3)
    for _ in range(2):
        limiter.failed("10.0.0.1")
        assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 1  # (whole seconds, at least one)
    assert limiter.retry_after("10.0.0.2") is None  # another address is not concerned
    time.sleep(0.35)
    assert limiter.retry_after("10.0.0.1") is None  # the wait is over


def test_old_failures_leave_the_window() -> None:
    limiter = FailureLimiter(limit=3, window=0.2)
    limiter.failed("a"), limiter.failed("a")
    time.sleep(0.25)
    limiter.failed("a")
    assert limiter.retry_after("a") is None


def test_the_limiter_forgets_the_oldest_addresses_past_its_size() -> None:
    limiter = FailureLimiter(limit=2, window=60, max_clients=10)
    for n in range(50):
        limiter.failed(f"10.0.0.{n}")
    assert len(limiter._failures) <= 10


def test_an_ipv6_address_counts_by_its_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("127.0.0.1") == "127.0.0.1" and client_key("unknown") == "unknown"


def scope(client: str, headers: dict[str, str], *, verified: bool) -> dict[str, Any]:
    app = SimpleNamespace(state=SimpleNamespace(peer_verified=verified))
    return {
        "client": (client, 50000),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "app": app,
    }


@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded", "x-real-ip"])
def test_a_forwarding_header_is_believed_only_when_the_server_said_so(header: str) -> None:
    forged = {header: "10.9.8.7"}
    # `serve` ran uvicorn with forwarding headers off (or from trusted proxies only): the peer.
    assert peer_of(scope("127.0.0.1", forged, verified=True)) == "127.0.0.1"
    # Another server (uvicorn main:app) may have replaced the peer: one unknown client for all.
    assert peer_of(scope("10.9.8.7", forged, verified=False)) == UNVERIFIED_PEER
    assert peer_of(scope("127.0.0.1", {}, verified=False)) == "127.0.0.1"
