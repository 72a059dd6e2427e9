"""SingleFlightCache: one load for concurrent callers, expiry, failures not cached."""

from __future__ import annotations

import asyncio

import pytest

from docker_manager.util.cache import SingleFlightCache


async def test_concurrent_callers_share_one_load_and_values_expire() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=0.2)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    assert await asyncio.gather(*(cache.get("k", load) for _ in range(10))) == [1] * 10
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.25)
    assert await cache.get("k", load) == 2
    cache.clear()
    assert await cache.get("k", load) == 3


async def test_failures_are_not_remembered() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=10)

    async def boom() -> int:
        raise RuntimeError("engine down")

    async def fine() -> int:
        return 7

    with pytest.raises(RuntimeError):
        await cache.get("k", boom)
    assert await cache.get("k", fine) == 7
