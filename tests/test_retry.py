"""Our retry loop: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrator.errors import (
    ConflictError,
    RequestRejectedError,
    RetryableError,
    ThrottledError,
)
from orchestrator.limiter import RateLimiter
from orchestrator.retry import RetryPolicy, Stopped, call_with_retries
from tests.fakes import VirtualTime


class Script:
    """A call that raises the scripted errors in turn, then returns 'ok'; logs call times."""

    def __init__(self, vt: VirtualTime, *errors: Exception) -> None:
        self.vt = vt
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(self.vt.now)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _run(vt: VirtualTime, call: Script, policy: RetryPolicy | None = None, **kw: object) -> object:
    limiter = RateLimiter(1000, clock=vt.clock, sleep=vt.sleep)
    return vt.run(
        call_with_retries(
            call,
            policy=policy or RetryPolicy(),
            limiter=limiter,
            sleep=vt.sleep,
            clock=vt.clock,
            rng=random.Random(1),
            **kw,  # type: ignore[arg-type]
        )
    )


async def test_waits_exactly_retry_after_when_mgn_gives_it() -> None:
    """A 429 with Retry-After 3 is retried 3 s later, not on botocore's schedule."""
    vt = VirtualTime()
    call = Script(vt, ThrottledError("ThrottlingException", "slow down", 429, retry_after_s=3))
    assert await _run(vt, call) == "ok"
    assert len(call.times) == 2
    assert abs(call.times[1] - call.times[0] - 3.0) < 0.01


async def test_backoff_with_full_jitter_stays_under_the_exponential_cap() -> None:
    """Without Retry-After, the n-th wait is uniform in [0, base * 2^(n-1)]."""
    vt = VirtualTime()
    errors = [RetryableError("InternalServerException", "boom", 500) for _ in range(5)]
    call = Script(vt, *errors)
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, max_delay_s=100)
    assert await _run(vt, call, policy) == "ok"
    waits = [b - a for a, b in zip(call.times, call.times[1:], strict=False)]
    assert len(waits) == 5
    for n, wait in enumerate(waits, start=1):
        assert 0 <= wait <= 2 ** (n - 1) + 0.01


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    """Five 500s with max_attempts 3 raise the third error after three calls."""
    vt = VirtualTime()
    errors = [RetryableError("InternalServerException", f"boom {i}", 500) for i in range(5)]
    call = Script(vt, *errors)
    with pytest.raises(RetryableError, match="boom 2"):
        await _run(vt, call, RetryPolicy(max_attempts=3))
    assert len(call.times) == 3


async def test_gives_up_when_the_deadline_would_pass() -> None:
    """A Retry-After that would carry past the deadline ends the retries."""
    vt = VirtualTime()
    call = Script(vt, *[ThrottledError("ThrottlingException", "x", 429, 8) for _ in range(9)])
    with pytest.raises(ThrottledError):
        await _run(vt, call, RetryPolicy(max_attempts=50, deadline_s=20))
    assert len(call.times) == 3  # t=0, 8, 16; the next would be at 24 > 20


@pytest.mark.parametrize(
    "error",
    [
        ConflictError("ConflictException", "wrong state", 409),
        RequestRejectedError("ValidationException", "bad", 400),
    ],
)
async def test_never_retries_errors_that_cannot_improve(error: Exception) -> None:
    """Conflict and validation errors are raised after exactly one call."""
    vt = VirtualTime()
    call = Script(vt, error)
    with pytest.raises(type(error)):
        await _run(vt, call)
    assert len(call.times) == 1


async def test_stop_prevents_any_new_attempt() -> None:
    """Once should_stop() is true, no further call is made and Stopped is raised."""
    vt = VirtualTime()
    call = Script(vt, RetryableError("InternalServerException", "boom", 500))
    stop = {"now": False}

    async def flip_after_first() -> str:
        try:
            return await call()
        finally:
            stop["now"] = True

    limiter = RateLimiter(1000, clock=vt.clock, sleep=vt.sleep)
    with pytest.raises(Stopped):
        await vt.run(
            call_with_retries(
                flip_after_first,
                policy=RetryPolicy(),
                limiter=limiter,
                sleep=vt.sleep,
                clock=vt.clock,
                should_stop=lambda: stop["now"],
            )
        )
    assert len(call.times) == 1


async def test_throttling_slows_the_shared_limiter() -> None:
    """A throttled attempt lowers the limiter's rate; a success is counted as accepted."""
    vt = VirtualTime()
    limiter = RateLimiter(100, clock=vt.clock, sleep=vt.sleep)
    call = Script(vt, ThrottledError("ThrottlingException", "x", 429, 1))
    await vt.run(
        call_with_retries(
            call, policy=RetryPolicy(), limiter=limiter, sleep=vt.sleep, clock=vt.clock
        )
    )
    assert limiter.rate_per_s < 100
    assert limiter.throttle_count == 1


async def test_a_call_waiting_for_its_accounts_rate_slot_holds_no_concurrency_slot() -> None:
    """Two accounts share one gate of 2: the slow account's queue (1 call/s) must not keep the
    fast account (100 calls/s) waiting behind it for gate slots."""
    vt = VirtualTime()
    gate = asyncio.Semaphore(2)
    slow = RateLimiter(1, clock=vt.clock, sleep=vt.sleep)
    fast = RateLimiter(100, clock=vt.clock, sleep=vt.sleep)
    done: dict[str, list[float]] = {"slow": [], "fast": []}

    def one(name: str, limiter: RateLimiter) -> object:
        async def call() -> str:
            await vt.sleep(0.01)  # 10 ms on the wire
            done[name].append(vt.now)
            return "ok"

        return call_with_retries(
            call, policy=RetryPolicy(), limiter=limiter, sleep=vt.sleep, clock=vt.clock, gate=gate
        )

    async def both() -> None:
        slow_calls = [one("slow", slow) for _ in range(10)]
        fast_calls = [one("fast", fast) for _ in range(10)]
        await asyncio.gather(*slow_calls, *fast_calls)  # type: ignore[arg-type]

    await vt.run(both())
    assert len(done["fast"]) == 10 and len(done["slow"]) == 10
    # The fast account is done within its own pace (10 calls at 100/s + latency), not ~9 s later.
    assert max(done["fast"]) < 0.5, done["fast"]
    assert max(done["slow"]) >= 9.0
