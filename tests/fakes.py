"""Fakes the project owns: virtual time for the limiter, the pool and the reconciler."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTime:
    """A clock and a sleep that never wait for real: time jumps to the next sleeper's wake-up
    once every task is blocked. For code under test that does no real I/O."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), fut))
        await fut

    async def _settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def run(self, coro: Coroutine[Any, Any, T], *, limit_s: float = 1e6) -> T:
        """Drive `coro` to completion in virtual time; fails if it would pass `limit_s`."""
        task = asyncio.ensure_future(coro)
        while not task.done():
            await self._settle()
            if task.done():
                break
            while self._sleepers and self._sleepers[0][2].cancelled():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await self._settle()
                if not task.done() and not self._sleepers:
                    task.cancel()
                    raise AssertionError("deadlock: every task is blocked and nothing sleeps")
                continue
            wake, _, fut = heapq.heappop(self._sleepers)
            if wake > limit_s:
                task.cancel()
                raise AssertionError(f"virtual time passed {limit_s}s")
            self.now = max(self.now, wake)
            if not fut.done():
                fut.set_result(None)
        return task.result()
