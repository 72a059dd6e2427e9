"""The one HTTP probe: is something answering on this URL, as required, within a time?

Used before a switch (sites), at the end of the pipeline, and by the health check after a
localrun. Redirects are not followed and no proxy is used: the answer of that address is wanted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx2

BODY_HEAD = 200
FIRST_PAUSE = 0.02  # seconds before the second probe (then doubling)


@dataclass(frozen=True)
class Answer:
    status_code: int
    length: int
    body_head: str


class NoGoodAnswer(Exception):
    """Nothing answered as required before the deadline; `last` says what was seen."""

    def __init__(self, last: str) -> None:
        super().__init__(last)
        self.last = last


def below_500(status: int) -> bool:
    return status < 500


class HttpProbe:
    def __init__(self, *, request_timeout: float = 3.0) -> None:
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(request_timeout), trust_env=False, follow_redirects=False
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def wait(
        self,
        url: str,
        *,
        within: float,
        interval: float = 0.2,
        accept: Callable[[int], bool] = below_500,
    ) -> Answer:
        """GET `url` until an answer's status is accepted, or raise NoGoodAnswer after `within` s.

        The pauses double from FIRST_PAUSE up to `interval`: a server that is still starting is
        seen the moment it listens, one that takes long is not asked more than once an interval."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last = "no answer"
        pause = min(FIRST_PAUSE, interval)
        while True:
            try:
                response = await self._http.get(url)
                if accept(response.status_code):
                    return Answer(response.status_code, len(response.content), response.text[:BODY_HEAD])
                last = f"HTTP {response.status_code}"
            except httpx2.HTTPError as exc:
                last = type(exc).__name__
            if loop.time() >= deadline:
                raise NoGoodAnswer(last)
            await asyncio.sleep(pause)
            pause = min(pause * 2, interval)
