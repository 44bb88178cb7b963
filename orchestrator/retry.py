"""Retry policy for MGN calls: ours, not botocore's, because botocore ignores `Retry-After`.

Retried: throttling, internal errors and other 5xx, dropped connections and timeouts. Waits for
MGN's `Retry-After` when given, otherwise exponential backoff with full jitter. Bounded by
attempts and by a deadline; every other error is raised at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from orchestrator.errors import RetryableError, ThrottledError
from orchestrator.limiter import Clock, RateLimiter, Sleep
from orchestrator.stop import Stopped

__all__ = ["Retrier", "RetryPolicy", "Stopped", "call_with_retries"]

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one logical call."""

    max_attempts: int = 8
    base_delay_s: float = 0.25
    max_delay_s: float = 20.0
    deadline_s: float = 600.0

    def delay_s(self, attempt: int, err: RetryableError | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): MGN's Retry-After
        when `err` carries one, else exponential backoff with full jitter."""
        if err is not None and err.retry_after_s is not None:
            return min(err.retry_after_s, self.max_delay_s)
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0, cap)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    limiter: RateLimiter,
    sleep: Sleep,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    gate: AbstractAsyncContextManager[Any] | None = None,
    backoff: AbstractAsyncContextManager[Any] | None = None,
) -> T:
    """Run `call` under `limiter` until it succeeds, fails for good, or the policy gives up.

    `gate` (a semaphore) is held only around each attempt, not while waiting for the rate slot
    or backing off, so a server waiting out `Retry-After` or its account's quota does not hold
    a concurrency slot. `backoff` is held while waiting between attempts (the pool starts
    another server meanwhile).
    Raises the last RetryableError when attempts or the deadline run out, any other error at
    once, and Stopped when `should_stop()` turns true before an attempt.
    """
    rng = rng or random.Random()
    started: float | None = None
    attempt = 0
    while True:
        if should_stop():
            raise Stopped()
        # The rate slot first, then the gate: a call waiting for its own (account, region)'s
        # slot must not hold a concurrency slot that a call to another account could use.
        await limiter.acquire()
        async with gate or contextlib.nullcontext():
            if should_stop():
                raise Stopped()
            attempt += 1
            started = clock() if started is None else started
            try:
                result = await call()
            except ThrottledError as err:
                limiter.on_throttle()
                last: RetryableError = err
            except RetryableError as err:
                last = err
            else:
                limiter.on_success()
                return result
        delay = policy.delay_s(attempt, last, rng)
        if attempt >= policy.max_attempts or clock() + delay - started > policy.deadline_s:
            # A warning: what this call was for now fails (or stays unsure) on a transient error.
            log.warning(
                "call_retries_exhausted",
                error_code=last.code,
                error=last.message,
                attempts=attempt,
                max_attempts=policy.max_attempts,
            )
            raise last
        # Seen as it happens: throttling, 5xx and connection problems are not silent waits.
        log.info(
            "call_retry",
            error_code=last.code,
            error=last.message,
            attempt=attempt,
            max_attempts=policy.max_attempts,
            delay_s=round(delay, 2),
        )
        async with backoff or contextlib.nullcontext():
            await sleep(delay)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Retrier:
    """One retry setup (policy, limiter, clock, randomness, stop check), built once per run and
    varied by `copy`, e.g. the same policy under another limiter."""

    policy: RetryPolicy
    limiter: RateLimiter
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    should_stop: Callable[[], bool] = _never

    def copy(self, **changes: Any) -> Retrier:
        """This retrier with some fields replaced."""
        return dataclasses.replace(self, **changes)

    async def call(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        gate: AbstractAsyncContextManager[Any] | None = None,
        backoff: AbstractAsyncContextManager[Any] | None = None,
    ) -> T:
        """`call_with_retries` with this retrier's settings; raises what it raises."""
        return await call_with_retries(
            call,
            policy=self.policy,
            limiter=self.limiter,
            sleep=self.sleep,
            clock=self.clock,
            rng=self.rng,
            should_stop=self.should_stop,
            gate=gate,
            backoff=backoff,
        )
