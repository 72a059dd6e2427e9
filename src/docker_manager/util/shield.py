"""Work that must not stop half-way when its caller is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_to_the_end(work: Coroutine[Any, Any, T]) -> tuple[T, bool]:
    """Run `work` to its end whatever cancels the caller meanwhile: (its result, whether a cancel
    came and was refused). An error of `work` itself is raised as usual."""
    task = asyncio.ensure_future(work)
    refused = False
    while True:
        try:
            return await asyncio.shield(task), refused
        except asyncio.CancelledError:
            if task.done():
                raise
            refused = True
