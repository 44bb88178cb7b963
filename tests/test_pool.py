"""The finalize pool on virtual time: concurrency, pacing, retries, conflicts, account stops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import (
    AccountError,
    ConflictError,
    NotFoundError,
    RequestRejectedError,
    RetryableError,
    ThrottledError,
)
from orchestrator.journal import Journal
from orchestrator.limiter import RateLimiter
from orchestrator.outcome import Outcome, ServerResult
from orchestrator.pool import FinalizePool
from orchestrator.preflight import ServerView, parse_server
from orchestrator.reconciler import Reconciler
from orchestrator.retry import RetryPolicy
from tests.fakes import VirtualTime


def _item(sid: str, state: str) -> dict[str, Any]:
    return {
        "sourceServerID": sid,
        "isArchived": False,
        "lifeCycle": {"state": state},
        "dataReplicationInfo": {
            "dataReplicationState": "DISCONNECTED" if state == "CUTOVER" else "CONTINUOUS"
        },
    }


class FakeMgn:
    """FinalizeCutover and DescribeSourceServers over an in-memory state, with scripted faults."""

    def __init__(self, vt: VirtualTime, ids: Sequence[str], latency_s: float = 0.05) -> None:
        self.vt = vt
        self.state = dict.fromkeys(ids, "CUTTING_OVER")
        self.latency_s = latency_s
        self.script: dict[str, list[Exception]] = {}
        self.finalize_calls: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.apply_before_error: set[str] = set()
        self.stale: dict[str, str] = {}

    async def finalize(self, sid: str) -> dict[str, Any]:
        self.finalize_calls.append((self.vt.now, sid))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.vt.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        errors = self.script.get(sid) or []
        if errors:
            if sid in self.apply_before_error:
                self.state[sid] = "CUTOVER"
            raise errors.pop(0)
        if self.state[sid] != "CUTTING_OVER":
            raise ConflictError("ConflictException", f"state {self.state[sid]}", 409)
        self.state[sid] = "CUTOVER"
        return _item(sid, "CUTOVER")

    async def describe(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        shown = {**self.state, **self.stale}  # `stale`: what lagging reads still show
        return [_item(sid, shown[sid]) for sid in ids if sid in self.state]

    async def describe_one(self, sid: str) -> ServerView | None:
        items = await self.describe([sid])
        return parse_server(items[0]) if items else None


def _pool(
    vt: VirtualTime,
    mgn: FakeMgn,
    journal: Journal,
    ids: Sequence[str],
    *,
    rate: float = 1000,
    concurrency: int = 8,
    prior_intent: frozenset[str] = frozenset(),
) -> tuple[FinalizePool, Reconciler, dict[str, ServerResult]]:
    results = {sid: ServerResult(sid, "app-00000000000000001") for sid in ids}
    rec = Reconciler(
        mgn.describe,
        poll_interval_s=1.0,
        timeout_s=30.0,
        on_converged=lambda v: setattr(results[v.source_server_id], "converged_at", "t"),
        on_timed_out=lambda sid, v: None,
        clock=vt.clock,
        sleep=vt.sleep,
    )
    pool = FinalizePool(
        finalize=mgn.finalize,
        describe_one=mgn.describe_one,
        limiter=RateLimiter(rate, clock=vt.clock, sleep=vt.sleep),
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.1),
        concurrency=concurrency,
        journal=journal,
        reconciler=rec,
        results=results,
        run_id="run-1",
        now_iso=lambda: f"t={vt.now:.3f}",
        clock=vt.clock,
        sleep=vt.sleep,
        rng=random.Random(7),
        prior_intent=prior_intent,
    )
    return pool, rec, results


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal.open(tmp_path, "wave-t") as j:
        yield j


IDS = [f"s-{i:017d}" for i in range(40)]


async def test_finalizes_all_under_the_rate_and_concurrency_bounds(journal: Journal) -> None:
    """40 servers at 10/s with 4 slots: every one finalized once, ~3.9 s, never 5 in flight."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS)
    pool, rec, results = _pool(vt, mgn, journal, IDS, rate=10, concurrency=4)
    await vt.run(pool.run(IDS))
    assert sorted(sid for _, sid in mgn.finalize_calls) == sorted(IDS)
    assert mgn.max_in_flight <= 4
    assert mgn.finalize_calls[-1][0] == pytest.approx(3.9)
    assert all(r.outcome is Outcome.FINALIZED and r.attempts == 1 for r in results.values())
    assert rec.pending == frozenset(IDS)
    entries = journal.entries()
    assert all(entries[sid].status == "accepted" for sid in IDS)


async def test_retries_transient_errors_then_succeeds(journal: Journal) -> None:
    """A 429 and a 500 are retried; the server ends finalized after three attempts."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.script[IDS[0]] = [
        ThrottledError("ThrottlingException", "slow", 429, retry_after_s=2),
        RetryableError("InternalServerException", "boom", 500),
    ]
    pool, _, results = _pool(vt, mgn, journal, IDS[:1])
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.FINALIZED
    assert results[IDS[0]].attempts == 3
    assert journal.entries()[IDS[0]].attempts == 3
    assert mgn.finalize_calls[1][0] - mgn.finalize_calls[0][0] >= 2.0


@pytest.mark.parametrize(
    ("error", "reason_start"),
    [
        (NotFoundError("ResourceNotFoundException", "gone", 404), "ResourceNotFoundException"),
        (RequestRejectedError("ValidationException", "bad", 400), "ValidationException"),
    ],
)
async def test_non_retryable_errors_fail_the_server_after_one_call(
    journal: Journal, error: Exception, reason_start: str
) -> None:
    """Not-found and validation errors are recorded as failed after a single call."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:2])
    mgn.script[IDS[0]] = [error]
    pool, _, results = _pool(vt, mgn, journal, IDS[:2])
    await vt.run(pool.run(IDS[:2]))
    assert results[IDS[0]].outcome is Outcome.FAILED
    assert (results[IDS[0]].reason or "").startswith(reason_start)
    assert [sid for _, sid in mgn.finalize_calls].count(IDS[0]) == 1
    assert results[IDS[1]].outcome is Outcome.FINALIZED
    assert journal.entries()[IDS[0]].status == "failed"


async def test_exhausted_retries_fail_the_server_and_the_pool_goes_on(journal: Journal) -> None:
    """A server failing with 500 on every attempt ends failed; the others are unaffected."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:3])
    mgn.script[IDS[1]] = [RetryableError("InternalServerException", "x", 500) for _ in range(9)]
    pool, _, results = _pool(vt, mgn, journal, IDS[:3])
    await vt.run(pool.run(IDS[:3]))
    assert results[IDS[1]].outcome is Outcome.FAILED
    assert results[IDS[1]].attempts == 4
    assert (results[IDS[1]].reason or "").startswith("retries_exhausted")
    assert {results[IDS[0]].outcome, results[IDS[2]].outcome} == {Outcome.FINALIZED}


async def test_conflict_on_a_cutover_server_means_already_done(journal: Journal) -> None:
    """ConflictException on a server MGN shows CUTOVER is already_cutover, not failed."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.state[IDS[0]] = "CUTOVER"
    pool, rec, results = _pool(vt, mgn, journal, IDS[:1])
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.ALREADY_CUTOVER
    assert IDS[0] in rec.pending


async def test_conflict_on_a_wrong_state_is_failed_with_the_state(journal: Journal) -> None:
    """ConflictException on a READY_FOR_CUTOVER server fails it, naming the state."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.state[IDS[0]] = "READY_FOR_CUTOVER"
    pool, rec, results = _pool(vt, mgn, journal, IDS[:1])
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.FAILED
    assert "READY_FOR_CUTOVER" in (results[IDS[0]].reason or "")
    assert not rec.pending


async def test_dropped_response_then_conflict_counts_as_finalized(journal: Journal) -> None:
    """A call whose response was lost but which took effect is finalized, sent no third time."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.script[IDS[0]] = [RetryableError("ConnectionClosedError", "dropped", ambiguous=True)]
    mgn.apply_before_error.add(IDS[0])
    pool, _, results = _pool(vt, mgn, journal, IDS[:1])
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.FINALIZED
    assert len(mgn.finalize_calls) == 2


async def test_account_error_stops_the_pool(journal: Journal) -> None:
    """After AccessDenied nothing more is sent; the servers not yet started are not_attempted."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS)
    mgn.script[IDS[5]] = [AccountError("AccessDeniedException", "denied")]
    pool, _, results = _pool(vt, mgn, journal, IDS, rate=10, concurrency=2)
    await vt.run(pool.run(IDS))
    assert pool.account_error is not None
    sent = [sid for _, sid in mgn.finalize_calls]
    assert len(sent) <= 7  # the denied call plus at most one in flight beside it
    assert results[IDS[5]].outcome is Outcome.FAILED
    not_attempted = [r for r in results.values() if r.outcome is Outcome.NOT_ATTEMPTED]
    assert len(not_attempted) == len(IDS) - len(sent)
    assert all(r.attempts == 0 for r in not_attempted)


async def test_stop_lets_in_flight_calls_finish_and_starts_nothing_new(journal: Journal) -> None:
    """Stopping mid-pool leaves every server finalized or not_attempted, none half-recorded."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS)
    pool, _, results = _pool(vt, mgn, journal, IDS, rate=10, concurrency=3)

    async def stop_later() -> None:
        await vt.sleep(1.05)
        pool.stop()

    async def both() -> None:
        await asyncio.gather(pool.run(IDS), stop_later())

    await vt.run(both())
    outcomes = {r.outcome for r in results.values()}
    assert outcomes == {Outcome.FINALIZED, Outcome.NOT_ATTEMPTED}
    finalized = {sid for sid, r in results.items() if r.outcome is Outcome.FINALIZED}
    assert finalized == {sid for _, sid in mgn.finalize_calls}
    assert 10 <= len(finalized) <= 13


async def test_conflict_with_a_stale_read_is_polled_never_resent(journal: Journal) -> None:
    """Conflict while reads still show CUTTING_OVER (lag): polled, not failed, not sent again."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.state[IDS[0]] = "CUTOVER"
    mgn.stale[IDS[0]] = "CUTTING_OVER"
    pool, rec, results = _pool(vt, mgn, journal, IDS[:1])
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.ALREADY_CUTOVER
    assert IDS[0] in rec.pending
    assert len(mgn.finalize_calls) == 1
    assert journal.entries()[IDS[0]].status == "accepted"


async def test_prior_intent_then_conflict_counts_as_ours(journal: Journal) -> None:
    """A server an earlier run sent without recording the answer is finalized, not failed."""
    vt = VirtualTime()
    mgn = FakeMgn(vt, IDS[:1])
    mgn.state[IDS[0]] = "CUTOVER"
    mgn.stale[IDS[0]] = "CUTTING_OVER"
    pool, _, results = _pool(vt, mgn, journal, IDS[:1], prior_intent=frozenset(IDS[:1]))
    await vt.run(pool.run(IDS[:1]))
    assert results[IDS[0]].outcome is Outcome.FINALIZED
