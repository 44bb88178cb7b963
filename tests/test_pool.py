"""The finalize pool and the ledger together on virtual time: pacing, retries, refusals, the
application gate at finalize time, ambiguous calls, stops and a journal that cannot be written."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.errors import (
    AccountError,
    ConflictError,
    ExitCode,
    NotFoundError,
    RequestRejectedError,
    RetryableError,
    StateWriteError,
    ThrottledError,
)
from orchestrator.journal import Journal
from orchestrator.ledger import Ledger
from orchestrator.limiter import RateLimiter
from orchestrator.outcome import Outcome, ServerResult
from orchestrator.plan import Application, Server, Wave
from orchestrator.pool import FinalizePool
from orchestrator.preflight import decide
from orchestrator.reconciler import Reconciler
from orchestrator.retry import Retrier, RetryPolicy
from orchestrator.stop import Stop, StopReason
from orchestrator.views import ServerView, parse_server
from tests.fakes import VirtualTime

APP_A = "app-0000000000000000a"
APP_B = "app-0000000000000000b"


def _item(sid: str, state: str, app: str) -> dict[str, Any]:
    return {
        "sourceServerID": sid,
        "applicationID": app,
        "isArchived": False,
        "lifeCycle": {"state": state},
        "dataReplicationInfo": {
            "dataReplicationState": "DISCONNECTED" if state == "CUTOVER" else "CONTINUOUS"
        },
        "launchedInstance": {"firstBoot": "SUCCEEDED"},
    }


class FakeMgn:
    """FinalizeCutover and DescribeSourceServers over an in-memory state, with scripted faults."""

    def __init__(self, vt: VirtualTime, apps: dict[str, list[str]], latency_s: float = 0.05):
        self.vt = vt
        self.app_of = {sid: app for app, ids in apps.items() for sid in ids}
        self.state = dict.fromkeys(self.app_of, "CUTTING_OVER")
        self.latency_s = latency_s
        self.script: dict[str, list[Exception]] = {}
        self.finalize_calls: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.apply_before_error: set[str] = set()
        self.stale: dict[str, str] = {}  # what lagging reads still show
        self.hang: set[str] = set()  # calls that never answer
        self.describe_errors: list[Exception] = []  # raised by the next reads, in order

    async def finalize(self, sid: str) -> ServerView | None:
        self.finalize_calls.append((self.vt.now, sid))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.vt.sleep(1e9 if sid in self.hang else self.latency_s)
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
        return parse_server(_item(sid, "CUTOVER", self.app_of[sid]))

    def view(self, sid: str) -> ServerView:
        shown = {**self.state, **self.stale}
        view = parse_server(_item(sid, shown[sid], self.app_of[sid]))
        assert view is not None
        return view

    async def describe(self, ids: Sequence[str], states: Sequence[str] = ()) -> list[ServerView]:
        if self.describe_errors:
            raise self.describe_errors.pop(0)
        views = [self.view(sid) for sid in ids if sid in self.state]
        return [v for v in views if not states or v.lifecycle_state in states]


class Night:
    """A ledger, the pool and the reconciler over a FakeMgn, wired as the runner wires them."""

    def __init__(
        self,
        vt: VirtualTime,
        mgn: FakeMgn,
        journal: Journal,
        apps: dict[str, list[str]],
        *,
        rate: float = 1000,
        concurrency: int = 8,
        grace_s: float = 2.0,
        parts: dict[str, str] | None = None,
    ) -> None:
        """`parts`: application -> the (account, region) part of the run's stop it runs in,
        each with its own finalize limiter, as Targets gives each target its own."""
        self.vt, self.mgn = vt, mgn
        self.wave = Wave(
            "wave-t",
            tuple(
                Application(app, None, tuple(Server(s, app) for s in ids))
                for app, ids in apps.items()
            ),
        )
        self.stop = Stop()
        stops = {app: self.stop.part(key) for app, key in (parts or {}).items()}
        self.stop_of: Callable[[str], Stop] = lambda sid: stops.get(mgn.app_of[sid], self.stop)
        self.ledger = Ledger(
            self.wave,
            writer=journal,
            run_id="run-1",
            stop=self.stop,
            now_iso=lambda: f"t={vt.now:.3f}",
            entries=journal.entries(),
            stop_of=self.stop_of,
        )
        self.reconciler = Reconciler(
            lambda ids: mgn.describe(ids, ("CUTOVER",)),
            poll_interval_s=1.0,
            timeout_s=30.0,
            on_seen=self.ledger.observed,
            on_expired=self.ledger.expired,
            stop=self.stop,
            stop_of=self.stop_of,
            clock=vt.clock,
            sleep=vt.sleep,
        )
        reads = Retrier(
            RetryPolicy(max_attempts=4, base_delay_s=0.1),
            RateLimiter(1000, clock=vt.clock, sleep=vt.sleep),
            sleep=vt.sleep,
            clock=vt.clock,
            rng=random.Random(7),
        )
        writes = {
            stop: reads.copy(
                limiter=RateLimiter(rate, clock=vt.clock, sleep=vt.sleep),
                should_stop=lambda stop=stop: stop.sends_stopped,
            )
            for stop in {self.stop, *stops.values()}
        }
        self.pool = FinalizePool(
            finalize=mgn.finalize,
            describe=mgn.describe,
            ledger=self.ledger,
            writes=lambda sid: writes[self.stop_of(sid)],
            reads=reads,
            concurrency=concurrency,
            stop=self.stop,
            on_waiting=self.reconciler.add,
            stop_of=self.stop_of,
            grace_s=grace_s,
            sleep=vt.sleep,
        )
        self.before_send: Callable[[], None] = lambda: None

    async def run(self, *, reconcile: bool = True) -> dict[str, ServerResult]:
        """Pre-flight from the fake's views, send, reconcile; the settled rows by server."""
        for app in self.wave.applications:
            checks = [decide(s, self.mgn.view(s.source_server_id), Config()) for s in app.servers]
            work = self.ledger.checked(checks)
            for sid in work.poll:
                self.reconciler.add(sid)
            self.before_send()
            self.pool.submit(work.send)
        self.pool.close()

        async def finalize() -> None:
            await self.pool.run()
            self.reconciler.close()

        if reconcile:
            await asyncio.gather(finalize(), self.reconciler.run())
        else:
            await finalize()
        self.ledger.settle()
        return {r.source_server_id: r for r in self.ledger.results()}


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal.open(tmp_path, "wave-t") as j:
        yield j


IDS = [f"s-{i:017d}" for i in range(40)]


def _sent(mgn: FakeMgn) -> list[str]:
    return [sid for _, sid in mgn.finalize_calls]


async def test_finalizes_all_under_the_rate_and_concurrency_bounds(journal: Journal) -> None:
    """40 servers at 10/s with 4 slots: every one finalized once, ~3.9 s, never 5 in flight."""
    vt = VirtualTime()
    apps = {APP_A: IDS}
    mgn = FakeMgn(vt, apps)
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=4)
    results = await vt.run(night.run())
    assert sorted(_sent(mgn)) == sorted(IDS)
    assert mgn.max_in_flight <= 4
    assert mgn.finalize_calls[-1][0] == pytest.approx(3.9)
    assert all(r.outcome is Outcome.FINALIZED and r.attempts == 1 for r in results.values())
    entries = journal.entries()
    assert all(entries[sid].status == "converged" and entries[sid].finalized_at for sid in IDS)


async def test_only_a_few_servers_per_account_are_started_and_a_slow_account_blocks_none(
    journal: Journal,
) -> None:
    """200 servers of a slow account (2/s) and 200 of a fast one (1000/s), 4 slots: a few
    tasks alive at any time (not 400), the fast account done at its own pace, all finalized."""
    vt = VirtualTime()
    slow_ids, fast_ids = [f"s-1{i:016d}" for i in range(200)], [f"s-2{i:016d}" for i in range(200)]
    apps = {APP_A: slow_ids, APP_B: fast_ids}
    mgn = FakeMgn(vt, apps, latency_s=0.01)
    night = Night(vt, mgn, journal, apps, concurrency=4)
    base = Retrier(RetryPolicy(), RateLimiter(1000, clock=vt.clock, sleep=vt.sleep), vt.sleep,
                   vt.clock, should_stop=lambda: night.stop.sends_stopped)  # fmt: skip
    slow = base.copy(limiter=RateLimiter(2, clock=vt.clock, sleep=vt.sleep))
    alive: list[int] = []

    async def counting(sid: str) -> ServerView | None:
        alive.append(len(asyncio.all_tasks()))
        return await mgn.finalize(sid)

    night.pool = FinalizePool(
        finalize=counting,
        describe=mgn.describe,
        ledger=night.ledger,
        writes=lambda sid: slow if sid in slow_ids else base,
        reads=base,
        concurrency=4,
        stop=night.stop,
        on_waiting=night.reconciler.add,
        sleep=vt.sleep,
    )
    results = await vt.run(night.run(reconcile=False))
    assert max(alive) < 30, max(alive)
    done_at = {sid: t for t, sid in mgn.finalize_calls}
    assert max(done_at[sid] for sid in fast_ids) < 1.0
    assert max(done_at[sid] for sid in slow_ids) == pytest.approx(99.5)
    # Unpolled, but each 200's body is the server record (CUTOVER + DISCONNECTED): finalized.
    assert {r.outcome for r in results.values()} == {Outcome.FINALIZED}
    assert sorted(_sent(mgn)) == sorted(slow_ids + fast_ids)


async def test_a_stop_settles_the_servers_not_started_yet(journal: Journal) -> None:
    """A signal while most servers wait unstarted in the queue: each is not_attempted at once
    (no intent journaled), those already sent are accepted, nothing is sent after."""
    vt = VirtualTime()
    ids = [f"s-{i:017d}" for i in range(300)]
    apps = {APP_A: ids}
    mgn = FakeMgn(vt, apps)
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=2)

    async def signal_later() -> None:
        await vt.sleep(2.02)
        night.stop.request(StopReason.SIGNAL)

    results, _ = await vt.run(asyncio.gather(night.run(reconcile=False), signal_later()))
    sent = set(_sent(mgn))
    assert all(t <= 2.02 for t, _ in mgn.finalize_calls) and 20 <= len(sent) <= 22
    # Those answered 200 are finalized: the answer's body is the server record.
    assert {sid for sid, r in results.items() if r.outcome is Outcome.FINALIZED} == sent
    unsent = [results[sid] for sid in ids if sid not in sent]
    assert all(r.outcome is Outcome.NOT_ATTEMPTED and r.reason == "run interrupted" for r in unsent)
    assert set(journal.entries()) == sent
    assert vt.now < 3.0


async def test_retries_transient_errors_then_succeeds(journal: Journal) -> None:
    """A 429 (waiting out Retry-After) and a 500 are retried; finalized after three attempts."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:1]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [
        ThrottledError("ThrottlingException", "slow", 429, retry_after_s=2),
        RetryableError("InternalServerException", "boom", 500),
    ]
    results = await vt.run(Night(vt, mgn, journal, apps).run())
    assert results[IDS[0]].outcome is Outcome.FINALIZED
    assert results[IDS[0]].attempts == 3
    assert journal.entries()[IDS[0]].attempts == 3
    assert mgn.finalize_calls[1][0] - mgn.finalize_calls[0][0] >= 2.0


@pytest.mark.parametrize(
    ("error", "reason_start"),
    [
        (NotFoundError("ResourceNotFoundException", "gone", 404), "not_found"),
        (RequestRejectedError("ValidationException", "bad", 400), "ValidationException"),
        (ConflictError("ConflictException", "no", 409), "wrong_state"),
    ],
)
async def test_a_definitive_refusal_holds_the_rest_of_its_application(
    journal: Journal, error: Exception, reason_start: str
) -> None:
    """After one server is refused for good (404, 400, a 409 not explained by CUTOVER), none of
    its siblings not yet sent is sent; they are not_attempted naming it; other applications go
    on."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:4], APP_B: IDS[4:6]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [error]
    night = Night(vt, mgn, journal, apps, concurrency=1)
    if isinstance(error, ConflictError):  # reverted after the pre-flight read it
        night.before_send = lambda: mgn.state.update({IDS[0]: "READY_FOR_CUTOVER"})
    results = await vt.run(night.run())
    assert results[IDS[0]].outcome is Outcome.FAILED
    assert (results[IDS[0]].reason or "").startswith(reason_start)
    assert _sent(mgn).count(IDS[0]) == 1
    for sid in IDS[1:4]:
        assert sid not in _sent(mgn)
        assert results[sid].outcome is Outcome.NOT_ATTEMPTED
        assert (results[sid].reason or "").startswith(f"application_gate: {IDS[0]} was refused")
    assert {results[s].outcome for s in IDS[4:6]} == {Outcome.FINALIZED}
    assert journal.entries()[IDS[0]].status == "failed"


async def test_exhausted_5xx_is_unconfirmed_then_finalized_if_mgn_shows_it(
    journal: Journal,
) -> None:
    """5xx on every attempt may have been applied: the server goes to the reconciler, and when
    MGN shows CUTOVER + DISCONNECTED it was finalized by this run (not already_cutover)."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:3]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[1]] = [RetryableError("InternalServerException", "x", 500) for _ in range(9)]
    mgn.apply_before_error.add(IDS[1])  # the first 500 came after MGN applied it
    mgn.script[IDS[2]] = [RetryableError("InternalServerException", "x", 500) for _ in range(9)]
    results = await vt.run(Night(vt, mgn, journal, apps).run())
    assert results[IDS[1]].outcome is Outcome.FINALIZED
    assert results[IDS[1]].attempts == 4
    assert journal.entries()[IDS[1]].status == "converged"
    # Never applied: unconfirmed after the reconciler's deadline, with MGN's last word.
    assert results[IDS[2]].outcome is Outcome.UNCONFIRMED
    assert results[IDS[2]].lifecycle_state == "CUTTING_OVER"
    assert results[IDS[2]].error_code == "InternalServerException"
    assert journal.entries()[IDS[2]].status == "intent"  # a rerun sends it again
    assert results[IDS[0]].outcome is Outcome.FINALIZED  # an ambiguous sibling holds nothing


async def test_exhausted_throttling_fails_for_good(journal: Journal) -> None:
    """429 on every attempt was never applied: failed (retries exhausted, journal failed); a
    sibling sent while it was backing off is not held back by it."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:2]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [ThrottledError("ThrottlingException", "slow", 429) for _ in range(9)]
    results = await vt.run(Night(vt, mgn, journal, apps, concurrency=1).run())
    assert results[IDS[0]].outcome is Outcome.FAILED
    assert (results[IDS[0]].reason or "").startswith("retries_exhausted: ThrottlingException")
    assert results[IDS[0]].attempts == 4
    assert journal.entries()[IDS[0]].status == "failed"
    assert results[IDS[1]].outcome is Outcome.FINALIZED


async def test_conflict_on_a_server_cut_over_elsewhere_is_already_cutover(
    journal: Journal,
) -> None:
    """ConflictException on a server MGN shows CUTOVER (not our doing): already_cutover."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:1]}
    mgn = FakeMgn(vt, apps)
    mgn.stale[IDS[0]] = "CUTTING_OVER"  # pre-flight saw it ready
    mgn.state[IDS[0]] = "CUTOVER"
    night = Night(vt, mgn, journal, apps)
    for app in night.wave.applications:
        night.ledger.checked(
            [decide(s, mgn.view(s.source_server_id), Config()) for s in app.servers]
        )
    del mgn.stale[IDS[0]]  # reads catch up before the read-back
    night.pool.submit(IDS[:1])
    night.pool.close()
    await vt.run(asyncio.gather(night.pool.run(), _close_later(night)))
    night.ledger.settle()
    row = night.ledger.results()[0]
    assert row.outcome is Outcome.ALREADY_CUTOVER
    assert row.lifecycle_state == "CUTOVER" and row.replication_state == "DISCONNECTED"


async def _close_later(night: Night) -> None:
    runner = asyncio.ensure_future(night.reconciler.run())
    await night.vt.sleep(5)
    night.reconciler.close()
    await runner


async def test_a_conflict_while_reads_still_show_cutting_over_is_unresolved(
    journal: Journal,
) -> None:
    """409 whose read-back still shows CUTTING_OVER is never journaled accepted: reported
    unconfirmed with the state read, sent once; a rerun that sees CUTTING_OVER sends again."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:2]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [ConflictError("ConflictException", "not now", 409)]
    results = await vt.run(Night(vt, mgn, journal, apps, concurrency=1).run())
    row = results[IDS[0]]
    assert row.outcome is Outcome.UNCONFIRMED
    assert row.lifecycle_state == "CUTTING_OVER"
    assert "still shows CUTTING_OVER" in (row.reason or "")
    assert journal.entries()[IDS[0]].status == "failed"
    assert _sent(mgn).count(IDS[0]) == 1
    assert results[IDS[1]].outcome is Outcome.NOT_ATTEMPTED  # the application is held

    vt2 = VirtualTime()
    mgn.vt = vt2
    again = await vt2.run(Night(vt2, mgn, journal, apps).run())
    assert again[IDS[0]].outcome is Outcome.FINALIZED
    assert _sent(mgn).count(IDS[0]) == 2


async def test_dropped_response_then_conflict_counts_as_finalized(journal: Journal) -> None:
    """A call whose answer was lost but which took effect is finalized, sent no third time."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:1]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [RetryableError("ConnectionClosedError", "dropped", ambiguous=True)]
    mgn.apply_before_error.add(IDS[0])
    results = await vt.run(Night(vt, mgn, journal, apps).run())
    assert results[IDS[0]].outcome is Outcome.FINALIZED
    assert len(mgn.finalize_calls) == 2


async def test_account_error_stops_the_pool(journal: Journal) -> None:
    """After AccessDenied nothing more is sent; the servers not yet sent are not_attempted."""
    vt = VirtualTime()
    apps = {APP_A: IDS}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[5]] = [AccountError("AccessDeniedException", "denied")]
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=2)
    results = await vt.run(night.run())
    assert night.stop.reason is StopReason.ACCOUNT
    sent = _sent(mgn)
    assert len(sent) <= 7  # the denied call plus at most one in flight beside it
    not_attempted = [r for r in results.values() if r.outcome is Outcome.NOT_ATTEMPTED]
    assert len(not_attempted) == len(IDS) - len(sent) + 1  # the denied one was not applied
    assert all(r.source_server_id not in sent[:-2] for r in not_attempted if r.attempts == 0)


async def test_an_account_error_stops_only_its_own_target(journal: Journal) -> None:
    """Two targets, each its own part of the run's stop: AccessDenied in B stops B alone (its
    waiting servers not_attempted with the error, nothing more sent there, its accepted ones no
    longer polled), A is finalized to the end; the run itself is not stopped, exit 4."""
    vt = VirtualTime()
    a_ids, b_ids = IDS[:10], IDS[10:20]
    apps = {APP_A: a_ids, APP_B: b_ids}
    mgn = FakeMgn(vt, apps)
    mgn.script[b_ids[3]] = [AccountError("AccessDeniedException", "token expired")]
    mgn.stale.update(dict.fromkeys(b_ids, "CUTTING_OVER"))  # B's reads lag: never confirmed
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=2, parts={APP_A: "a", APP_B: "b"})
    results = await vt.run(night.run())
    b_stop = night.stop_of(b_ids[0])
    assert night.stop.reason is None and night.stop_of(a_ids[0]).reason is None
    assert b_stop.reason is StopReason.ACCOUNT and b_stop.failure is not None
    assert "token expired" in b_stop.failure
    assert night.stop.account_error() == f"b: {b_stop.failure}"
    assert all(results[s].outcome is Outcome.FINALIZED for s in a_ids)
    denied_at = next(t for t, sid in mgn.finalize_calls if sid == b_ids[3])
    assert not [sid for t, sid in mgn.finalize_calls if sid in b_ids and t > denied_at]
    answered = {sid for _, sid in mgn.finalize_calls if sid in b_ids and sid != b_ids[3]}
    for sid in b_ids:
        if sid in answered:  # the 200's body is the server record, whatever the reads lag
            assert results[sid].outcome is Outcome.FINALIZED, results[sid]
            continue
        assert results[sid].outcome is not Outcome.FINALIZED
        assert "account error" in (results[sid].reason or ""), results[sid]
    assert results[b_ids[3]].outcome is Outcome.NOT_ATTEMPTED
    assert results[b_ids[-1]].outcome is Outcome.NOT_ATTEMPTED
    assert night.ledger.exit_code(covered_only=False) is ExitCode.ACCOUNT
    assert vt.now < 30.0  # B's accepted servers were dropped, not polled to the deadline


async def test_every_target_failing_stops_the_run(journal: Journal) -> None:
    """When the account error reaches every target, the run stops for it as one account does."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:4], APP_B: IDS[4:8]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [AccountError("AccessDeniedException", "a denied")]
    mgn.script[IDS[4]] = [AccountError("AccessDeniedException", "b denied")]
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=2, parts={APP_A: "a", APP_B: "b"})
    results = await vt.run(night.run())
    assert night.stop.reason is StopReason.ACCOUNT
    assert "a: " in night.stop.detail and "b: " in night.stop.detail
    assert len(mgn.finalize_calls) == 2
    assert {r.outcome for r in results.values()} == {Outcome.NOT_ATTEMPTED}


async def test_an_account_error_reading_back_a_conflict_stops_the_run(journal: Journal) -> None:
    """A 409 whose read-back is denied: the run stops for the account, the server fails with
    the 409 (unread), nothing more of its application is sent."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:6]}
    mgn = FakeMgn(vt, apps)
    mgn.script[IDS[0]] = [ConflictError("ConflictException", "wrong state", 409)]
    mgn.describe_errors.append(AccountError("AccessDeniedException", "read denied"))
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=1)
    results = await vt.run(night.run())
    assert night.stop.reason is StopReason.ACCOUNT and "read denied" in night.stop.detail
    assert _sent(mgn) == [IDS[0]]
    assert results[IDS[0]].outcome is Outcome.FAILED
    assert results[IDS[0]].error_code == "ConflictException"
    assert {results[s].outcome for s in IDS[1:6]} == {Outcome.NOT_ATTEMPTED}
    assert night.ledger.exit_code(covered_only=False) is ExitCode.ACCOUNT


async def test_a_signal_lets_calls_on_the_wire_finish_and_sends_nothing_new(
    journal: Journal,
) -> None:
    """SIGTERM mid-pool: every server is finalized or not_attempted, none half-recorded, and
    nothing is sent after the signal."""
    vt = VirtualTime()
    apps = {APP_A: IDS}
    mgn = FakeMgn(vt, apps)
    night = Night(vt, mgn, journal, apps, rate=10, concurrency=3)

    async def signal_later() -> None:
        await vt.sleep(1.05)
        night.stop.request(StopReason.SIGNAL)

    results, _ = await vt.run(asyncio.gather(night.run(reconcile=False), signal_later()))
    assert all(t <= 1.05 for t, _ in mgn.finalize_calls)
    outcomes = {r.outcome for r in results.values()}
    # Accepted and unpolled, each 200's body showing CUTOVER + DISCONNECTED: finalized.
    assert outcomes <= {Outcome.FINALIZED, Outcome.NOT_ATTEMPTED}
    accepted = {sid for sid, r in results.items() if r.outcome is Outcome.FINALIZED}
    assert accepted == set(_sent(mgn))
    assert 10 <= len(accepted) <= 13


async def test_a_call_hanging_past_the_grace_is_abandoned_as_unconfirmed(
    journal: Journal,
) -> None:
    """After a halting stop a call on the wire gets 2 s; then it is abandoned, unconfirmed."""
    vt = VirtualTime()
    apps = {APP_A: IDS[:3]}
    mgn = FakeMgn(vt, apps)
    mgn.hang.add(IDS[0])
    night = Night(vt, mgn, journal, apps, concurrency=1)

    async def signal_later() -> None:
        await vt.sleep(0.5)
        night.stop.request(StopReason.SIGNAL)

    results, _ = await vt.run(asyncio.gather(night.run(), signal_later()))
    assert vt.now == pytest.approx(2.5)
    assert results[IDS[0]].outcome is Outcome.UNCONFIRMED
    assert {results[s].outcome for s in IDS[1:3]} == {Outcome.NOT_ATTEMPTED}
    assert _sent(mgn) == [IDS[0]]


class FailingWrites(Journal):
    """A journal whose writes fail after `ok` intents: a full disk, on purpose."""

    ok = 3

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        if self.ok <= 0:
            raise StateWriteError("journal: database or disk is full")
        self.ok -= 1
        super().record_intent(server_id, application_id, at=at, run_id=run_id)


async def test_nothing_is_sent_once_an_intent_cannot_be_journaled(tmp_path: Path) -> None:
    """When the intent cannot be written, that server is not sent and the run stops (exit 5):
    no FinalizeCutover goes out without a durable intent."""
    Journal.open(tmp_path, "wave-t").close()
    conn = sqlite3.connect(tmp_path / "wave-t" / "journal.sqlite3", isolation_level=None)
    journal = FailingWrites(conn, tmp_path / "wave-t" / "journal.sqlite3", "wave-t")
    vt = VirtualTime()
    apps = {APP_A: IDS[:10]}
    mgn = FakeMgn(vt, apps)
    night = Night(vt, mgn, journal, apps, concurrency=1)
    results = await vt.run(night.run())
    assert night.stop.reason is StopReason.LOCAL_STATE
    assert night.stop.exit_code == 5
    assert len(_sent(mgn)) == 3
    assert set(journal.entries()) == set(_sent(mgn))
    unsent = [r for r in results.values() if r.source_server_id not in _sent(mgn)]
    assert {r.outcome for r in unsent} == {Outcome.NOT_ATTEMPTED}
    journal.close()
