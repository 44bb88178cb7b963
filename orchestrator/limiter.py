"""A client-side rate limiter that slows down when MGN throttles and recovers afterwards.

Pacing is GCRA (virtual scheduling): each `acquire()` reserves the next free slot, so callers
are served in order and the long-run rate never exceeds `rate_per_s`. On throttling the rate
drops to just under what MGN was actually accepting (successes measured over the last second),
at most once per `cooldown_s`; afterwards it climbs back linearly towards the configured ceiling.
No event loop is captured at construction; clock and sleep are injectable for fake-time tests.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Paces calls to at most `rate_per_s`, adapting down on throttling and back up after."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        min_rate_per_s: float | None = None,
        backoff_factor: float = 0.9,
        recovery_per_s: float = 0.05,
        cooldown_s: float = 1.0,
        window_s: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        self.max_rate_per_s = rate_per_s
        self.rate_per_s = rate_per_s
        self.min_rate_per_s = min_rate_per_s or min(rate_per_s, max(0.1, rate_per_s / 100))
        self.burst = max(1, burst)
        self.backoff_factor = backoff_factor
        self.recovery_per_s = recovery_per_s
        self.cooldown_s = cooldown_s
        self.window_s = window_s
        self.throttle_count = 0
        self.decrease_count = 0
        self._clock = clock
        self._sleep = sleep
        self._next_slot: float | None = None
        self._successes: deque[float] = deque()
        self._first_success: float | None = None
        self._last_decrease: float | None = None
        self._last_recovery: float | None = None
        self._recovery_step = 0.0

    async def acquire(self) -> None:
        """Wait for this caller's slot. Cancelling the wait gives up the slot's turn."""
        now = self._clock()
        self._recover(now)
        interval = 1.0 / self.rate_per_s
        earliest = now - (self.burst - 1) * interval
        slot = earliest if self._next_slot is None else max(self._next_slot, earliest)
        self._next_slot = slot + interval
        if slot > now:
            await self._sleep(slot - now)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        return None

    def on_success(self) -> None:
        """Record a call MGN accepted (not throttled)."""
        now = self._clock()
        if self._first_success is None:
            self._first_success = now
        self._successes.append(now)
        while self._successes and self._successes[0] < now - self.window_s:
            self._successes.popleft()

    def on_throttle(self) -> None:
        """MGN throttled a call: drop just below the accepted rate, once per cooldown."""
        now = self._clock()
        self.throttle_count += 1
        if self._last_decrease is not None and now - self._last_decrease < self.cooldown_s:
            return
        measured = self.accepted_rate_per_s(now)
        base = min(self.rate_per_s, measured) if measured > 0 else self.rate_per_s / 2
        self.rate_per_s = max(self.min_rate_per_s, base * self.backoff_factor)
        self._recovery_step = max(self.rate_per_s * self.recovery_per_s, self.min_rate_per_s / 10)
        self._last_decrease = now
        self._last_recovery = now + self.cooldown_s
        self.decrease_count += 1

    def accepted_rate_per_s(self, now: float | None = None) -> float:
        """Calls accepted per second over the measuring window."""
        now = self._clock() if now is None else now
        while self._successes and self._successes[0] < now - self.window_s:
            self._successes.popleft()
        if self._first_success is None:
            return 0.0
        span = min(self.window_s, max(now - self._first_success, 1e-3))
        return len(self._successes) / span

    def _recover(self, now: float) -> None:
        if self.rate_per_s >= self.max_rate_per_s or self._last_recovery is None:
            return
        elapsed = now - self._last_recovery
        if elapsed <= 0:
            return
        self.rate_per_s = min(self.max_rate_per_s, self.rate_per_s + self._recovery_step * elapsed)
        self._last_recovery = now
