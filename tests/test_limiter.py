"""The adaptive rate limiter, on virtual time."""

from __future__ import annotations

import asyncio
import itertools

from orchestrator.limiter import RateLimiter
from tests.fakes import VirtualTime


async def _acquire_n(limiter: RateLimiter, n: int, vt: VirtualTime) -> list[float]:
    times = []
    for _ in range(n):
        await limiter.acquire()
        times.append(vt.now)
    return times


async def test_paces_calls_at_the_configured_rate() -> None:
    """100 acquires at 10/s take 9.9 s of virtual time, evenly spaced."""
    vt = VirtualTime()
    limiter = RateLimiter(10, clock=vt.clock, sleep=vt.sleep)
    times = await vt.run(_acquire_n(limiter, 100, vt))
    assert times[0] == 0.0
    assert abs(times[-1] - 9.9) < 1e-6
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {0.1}


async def test_burst_lets_that_many_through_at_once_after_idle() -> None:
    """With burst 5, five calls pass at t=0 and the sixth waits one interval."""
    vt = VirtualTime()
    limiter = RateLimiter(10, burst=5, clock=vt.clock, sleep=vt.sleep)
    times = await vt.run(_acquire_n(limiter, 6, vt))
    assert times[:5] == [0.0] * 5
    assert abs(times[5] - 0.1) < 1e-9


async def test_concurrent_callers_share_the_rate() -> None:
    """Ten tasks acquiring 10 slots each at 20/s finish after ~5 s, not 0.5 s."""
    vt = VirtualTime()
    limiter = RateLimiter(20, clock=vt.clock, sleep=vt.sleep)

    async def many() -> list[list[float]]:
        return await asyncio.gather(*(_acquire_n(limiter, 10, vt) for _ in range(10)))

    results = await vt.run(many())
    last = max(t for times in results for t in times)
    assert abs(last - 99 / 20) < 1e-6


async def test_throttle_drops_rate_to_just_under_accepted_rate() -> None:
    """After a second of 50 accepted calls/s, a throttle sets the rate to 0.9 x 50."""
    vt = VirtualTime()
    limiter = RateLimiter(200, clock=vt.clock, sleep=vt.sleep)
    for i in range(50):
        vt.now = i * 0.02
        limiter.on_success()
    vt.now = 1.0
    limiter.on_throttle()
    assert abs(limiter.rate_per_s - 45.0) < 1.0
    assert limiter.decrease_count == 1


async def test_one_decrease_per_cooldown() -> None:
    """A burst of throttles inside one cooldown lowers the rate once, not once per throttle."""
    vt = VirtualTime()
    limiter = RateLimiter(100, clock=vt.clock, sleep=vt.sleep)
    for _ in range(10):
        limiter.on_throttle()
    assert limiter.decrease_count == 1
    assert limiter.throttle_count == 10
    assert limiter.rate_per_s == 45.0  # nothing accepted yet: half, times 0.9


async def test_rate_recovers_towards_the_ceiling_after_cooldown() -> None:
    """After a decrease the rate climbs back, capped at the configured rate."""
    vt = VirtualTime()
    limiter = RateLimiter(100, clock=vt.clock, sleep=vt.sleep)
    limiter.on_throttle()
    low = limiter.rate_per_s
    vt.now = 1.0  # still in cooldown: no recovery yet
    await vt.run(limiter.acquire())
    assert limiter.rate_per_s == low
    vt.now = 11.0
    await vt.run(limiter.acquire())
    assert low < limiter.rate_per_s <= 100
    vt.now = 1000.0
    await vt.run(limiter.acquire())
    assert limiter.rate_per_s == 100


async def test_rate_never_falls_below_the_floor() -> None:
    """Repeated throttling with nothing accepted stops at min_rate_per_s."""
    vt = VirtualTime()
    limiter = RateLimiter(10, min_rate_per_s=2, clock=vt.clock, sleep=vt.sleep)
    for i in range(20):
        vt.now = i * 2.0
        limiter.on_throttle()
    assert limiter.rate_per_s == 2
