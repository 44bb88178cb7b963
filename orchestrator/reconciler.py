"""The reconciler: polls MGN until every server waiting on a finalize shows CUTOVER + DISCONNECTED.

A small state machine per server: pending -> converged (MGN shows it), or -> expired once its
deadline passes; what each means is the ledger's business (`on_seen`, `on_expired`). Polls run
every `poll_interval_s`, drift-corrected, with one DescribeSourceServers per 200 pending servers
(an eighth of it once nothing more will be added and no part has more than 200 left). It
never sends anything mutating. It ends when closed with nothing pending, or at once when the
run halts; a closed cutover window does not stop it (it polls until its own deadlines). Servers
are polled per stop that governs them (`stop_of`: their (account, region)'s part of the run's
stop), the parts at once: an account error stops that part, whose servers are no longer polled
(the ledger says why at the end), and the others go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from orchestrator.errors import AccountError, MgnError
from orchestrator.limiter import Clock, Sleep
from orchestrator.mgn import MAX_IDS_PER_DESCRIBE, chunks
from orchestrator.stop import Stop, Stopped, StopReason, first_of
from orchestrator.views import ServerView

log = structlog.get_logger(__name__)

TAIL_SPEEDUP = 8

Describe = Callable[[Sequence[str]], Awaitable[list[ServerView]]]


@dataclass
class ReconcileStats:
    """Counters for benchmarks and the report."""

    cycles: int = 0
    describe_calls: int = 0
    failed_polls: int = 0


class Reconciler:
    """Tracks pending servers and polls them; callbacks report what MGN showed and time-outs."""

    def __init__(
        self,
        describe: Describe,
        *,
        poll_interval_s: float,
        timeout_s: float,
        on_seen: Callable[[ServerView], None],
        on_expired: Callable[[str], None],
        stop: Stop | None = None,
        stop_of: Callable[[str], Stop] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`stop_of`: the stop that governs a server (`stop` itself by default)."""
        self._describe = describe
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._on_seen = on_seen
        self._on_expired = on_expired
        self._stop = stop or Stop()
        self._stop_of = stop_of or (lambda _server_id: self._stop)
        self._clock = clock
        self._sleep = sleep
        self._deadlines: dict[str, float] = {}
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._largest_part = 0  # pending servers of the part with most, after the last poll
        self.stats = ReconcileStats()

    def deadline(self) -> float | None:
        """When (on this reconciler's clock) the last pending server's wait ends; None if none."""
        return max(self._deadlines.values(), default=None)

    def add(self, server_id: str) -> None:
        """Start watching a server (once; its deadline runs from the first add)."""
        self._deadlines.setdefault(server_id, self._clock() + self.timeout_s)

    def close(self) -> None:
        """No more servers will be added: finish once the pending ones are settled."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Poll until closed and nothing is pending, or the run halts.

        An account-wide error stops the servers' part of the run, or the run (AccountError is
        not raised: the stop carries it); other read failures are logged and retried next cycle.
        """
        self._wake = asyncio.Event()
        next_tick = self._clock()
        while not self._stop.halted:
            if self._closed and not self._deadlines:
                return
            if self._deadlines:
                try:
                    await self.poll_once()
                except Stopped:
                    return
            next_tick += self._interval_s()
            now = self._clock()
            if next_tick < now:  # fell behind (slow reads): skip missed ticks, keep the phase
                next_tick = now
            await self._wait(next_tick - now)

    def _interval_s(self) -> float:
        """The poll interval; an eighth of it for the last few servers once nothing more comes.

        Then one small call per part (account and region) per cycle is all a poll costs, and
        the wave's end is not held back by up to a whole interval after the last server's
        change becomes visible.
        """
        if self._closed and self._largest_part <= MAX_IDS_PER_DESCRIBE:
            return self.poll_interval_s / TAIL_SPEEDUP
        return self.poll_interval_s

    async def _wait(self, delay_s: float) -> None:
        assert self._wake is not None
        if self._closed and not self._deadlines:
            return
        self._wake.clear()
        await first_of(self._sleep(delay_s), self._wake.wait(), self._stop.wait_halted())

    async def poll_once(self) -> None:
        """One cycle: describe every pending server, report what MGN shows, expire the late.

        Servers whose stop has halted are no longer watched; an account error stops the
        polled servers' part (or the run). Raises Stopped when the run halts.
        """
        self.stats.cycles += 1
        groups: dict[Stop, list[str]] = {}
        for server_id in sorted(self._deadlines):
            groups.setdefault(self._stop_of(server_id), []).append(server_id)
        # Each part (account and region) is read at once: each has its own describe limiter,
        # and one after the other, ten accounts' reads took ten round trips per cycle.
        parts = [self._poll_governed(stop, pending) for stop, pending in groups.items()]
        for failed in await asyncio.gather(*parts, return_exceptions=True):
            if isinstance(failed, BaseException):
                raise failed  # a bug: the parts handle what MGN and the stops raise
        if self._stop.halted:
            raise Stopped()
        self._largest_part = max(
            (sum(1 for s in pending if s in self._deadlines) for pending in groups.values()),
            default=0,
        )
        now = self._clock()
        for server_id, deadline in list(self._deadlines.items()):
            if now >= deadline:
                del self._deadlines[server_id]
                self._on_expired(server_id)

    async def _poll_governed(self, stop: Stop, pending: list[str]) -> None:
        """Poll one stop's servers; an account error stops that part, whose servers are then
        no longer watched."""
        try:
            await self._poll_part(stop, pending)
        except AccountError as err:
            stop.request(StopReason.ACCOUNT, str(err))
        except Stopped:
            pass
        if stop.halted:
            for server_id in pending:
                self._deadlines.pop(server_id, None)

    async def _poll_part(self, stop: Stop, pending: list[str]) -> None:
        """Describe the pending servers one stop governs, unless it has halted.

        Raises Stopped when it halts mid-read, AccountError for an account-wide error.
        """
        if stop.halted:
            return
        for batch in chunks(pending, MAX_IDS_PER_DESCRIBE):
            try:
                views = await self._describe(batch)
            except (AccountError, Stopped):
                raise
            except MgnError as err:
                self.stats.failed_polls += 1
                log.warning("reconcile_poll_failed", error_code=err.code, error=err.message)
                continue
            finally:
                self.stats.describe_calls += 1
            for view in views:
                if view.source_server_id not in self._deadlines:
                    continue
                if view.converged:
                    del self._deadlines[view.source_server_id]
                self._on_seen(view)
