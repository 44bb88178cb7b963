"""The reconciler: polls MGN until every accepted finalize shows CUTOVER + DISCONNECTED.

A small state machine per server: pending (finalize accepted, not yet converged) -> converged, or
-> timed_out once its deadline passes. Polls run every `poll_interval_s`, drift-corrected, with
one DescribeSourceServers per 200 pending servers (a quarter interval for the last 200 once the
pool is done). It never sends FinalizeCutover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from orchestrator.errors import AccountError, MgnError
from orchestrator.limiter import Clock, Sleep
from orchestrator.mgn import MAX_IDS_PER_DESCRIBE, chunks
from orchestrator.preflight import ServerView, parse_server

log = structlog.get_logger(__name__)

TAIL_SPEEDUP = 4

Describe = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]


@dataclass
class ReconcileStats:
    """Counters for benchmarks and the report."""

    cycles: int = 0
    describe_calls: int = 0
    expected_calls: int = 0
    failed_polls: int = 0
    last_views: dict[str, ServerView] = field(default_factory=dict)


class Reconciler:
    """Tracks pending servers and polls them; callbacks report convergence and time-outs."""

    def __init__(
        self,
        describe: Describe,
        *,
        poll_interval_s: float,
        timeout_s: float,
        on_converged: Callable[[ServerView], None],
        on_timed_out: Callable[[str, ServerView | None], None],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._describe = describe
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._on_converged = on_converged
        self._on_timed_out = on_timed_out
        self._clock = clock
        self._sleep = sleep
        self._deadlines: dict[str, float] = {}
        self._closed = False
        self._wake: asyncio.Event | None = None
        self.stats = ReconcileStats()

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._deadlines)

    def add(self, server_id: str) -> None:
        """Start watching a server whose finalize MGN accepted."""
        self._deadlines.setdefault(server_id, self._clock() + self.timeout_s)

    def close(self) -> None:
        """No more servers will be added: finish once the pending ones are settled."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll until closed and nothing is pending, or `should_stop()`.

        Raises AccountError (account-wide); other read failures are logged and retried next cycle.
        """
        self._wake = asyncio.Event()
        next_tick = self._clock()
        while not should_stop():
            if self._closed and not self._deadlines:
                return
            if self._deadlines:
                await self.poll_once()
            next_tick += self._interval_s()
            now = self._clock()
            if next_tick < now:  # fell behind (slow reads): skip missed ticks, keep the phase
                next_tick = now
            await self._wait(next_tick - now)

    def _interval_s(self) -> float:
        """The poll interval; quartered for the last few servers once the pool is done.

        Then one small call per cycle is all a poll costs, and the wave's end is not held back
        by up to a whole interval after the last server's change becomes visible.
        """
        if self._closed and len(self._deadlines) <= MAX_IDS_PER_DESCRIBE:
            return self.poll_interval_s / TAIL_SPEEDUP
        return self.poll_interval_s

    async def _wait(self, delay_s: float) -> None:
        assert self._wake is not None
        if self._closed and not self._deadlines:
            return
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._sleep(delay_s))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def poll_once(self) -> None:
        """One cycle: describe every pending server, settle the converged and the late."""
        pending = sorted(self._deadlines)
        self.stats.cycles += 1
        self.stats.expected_calls += -(-len(pending) // MAX_IDS_PER_DESCRIBE)
        for batch in chunks(pending, MAX_IDS_PER_DESCRIBE):
            try:
                items = await self._describe(batch)
            except AccountError:
                raise
            except MgnError as err:
                self.stats.failed_polls += 1
                log.warning("reconcile_poll_failed", error_code=err.code, error=err.message)
                continue
            finally:
                self.stats.describe_calls += 1
            for item in items:
                view = parse_server(item)
                if view is None or view.source_server_id not in self._deadlines:
                    continue
                self.stats.last_views[view.source_server_id] = view
                if view.converged:
                    del self._deadlines[view.source_server_id]
                    self._on_converged(view)
        now = self._clock()
        for server_id, deadline in list(self._deadlines.items()):
            if now >= deadline:
                del self._deadlines[server_id]
                self._on_timed_out(server_id, self.stats.last_views.get(server_id))

    def expire_all(self) -> list[str]:
        """Give up on every pending server now (the run is stopping); returns their IDs."""
        ids = sorted(self._deadlines)
        self._deadlines.clear()
        return ids
