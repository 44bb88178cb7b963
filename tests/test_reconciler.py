"""The reconciler's polling state machine, on virtual time with a fake MGN read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from orchestrator.errors import AccountError, RetryableError
from orchestrator.reconciler import Reconciler
from orchestrator.stop import Stop, StopReason
from orchestrator.views import ServerView, parse_server
from tests.fakes import VirtualTime


class FakeReads:
    """DescribeSourceServers answers: each server converges at its own virtual time."""

    def __init__(self, vt: VirtualTime, converge_at: dict[str, float]) -> None:
        self.vt = vt
        self.converge_at = converge_at
        self.calls: list[tuple[float, int]] = []
        self.fail_next: Exception | None = None
        self.fail_for: dict[str, Exception] = {}  # a read naming this server fails so
        self.latency_s = 0.0

    async def __call__(self, ids: Sequence[str]) -> list[ServerView]:
        self.calls.append((self.vt.now, len(ids)))
        if self.latency_s:
            await self.vt.sleep(self.latency_s)
        for sid in ids:
            if sid in self.fail_for:
                raise self.fail_for[sid]
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        out = []
        for sid in ids:
            done = self.vt.now >= self.converge_at[sid]
            out.append(
                parse_server(
                    {
                        "sourceServerID": sid,
                        "isArchived": False,
                        "lifeCycle": {"state": "CUTOVER" if done else "CUTTING_OVER"},
                        "dataReplicationInfo": {
                            "dataReplicationState": "DISCONNECTED" if done else "CONTINUOUS"
                        },
                    }
                )
            )
        return [v for v in out if v is not None]


def _reconciler(vt: VirtualTime, reads: FakeReads, **kw: Any) -> tuple[Reconciler, dict[str, Any]]:
    seen: dict[str, Any] = {"converged": [], "timed_out": []}

    def converged(view: ServerView) -> None:
        if view.converged:
            seen["converged"].append((view.source_server_id, vt.now))

    def timed_out(sid: str) -> None:
        seen["timed_out"].append(sid)

    rec = Reconciler(
        reads,
        poll_interval_s=kw.pop("poll_interval_s", 1.0),
        timeout_s=kw.pop("timeout_s", 60.0),
        on_seen=converged,
        on_expired=timed_out,
        stop=kw.pop("stop", None),
        stop_of=kw.pop("stop_of", None),
        clock=vt.clock,
        sleep=vt.sleep,
    )
    return rec, seen


async def test_polls_in_batches_of_200_and_settles_each_server() -> None:
    """450 pending servers cost 3 describe calls per cycle, and all converge."""
    vt = VirtualTime()
    ids = [f"s-{i:017d}" for i in range(450)]
    reads = FakeReads(vt, dict.fromkeys(ids, 2.5))
    rec, seen = _reconciler(vt, reads)
    for sid in ids:
        rec.add(sid)
    rec.close()
    await vt.run(rec.run())
    assert sorted(n for _, n in reads.calls) == sorted([200, 200, 50] * 4)
    assert rec.stats.cycles == 4  # t = 0, 1, 2, 3
    assert rec.stats.describe_calls == 12
    assert len(seen["converged"]) == 450
    assert all(t == 3.0 for _, t in seen["converged"])


async def test_only_pending_servers_are_polled() -> None:
    """Servers that converged are dropped from the next cycle's reads."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-a": 0.0, "s-b": 5.0})
    rec, seen = _reconciler(vt, reads)
    rec.add("s-a")
    rec.add("s-b")
    rec.close()
    await vt.run(rec.run())
    assert reads.calls[0] == (0.0, 2)
    assert all(n == 1 for _, n in reads.calls[1:])
    assert [sid for sid, _ in seen["converged"]] == ["s-a", "s-b"]


async def test_ticks_are_drift_corrected() -> None:
    """Polls happen on the interval's grid even though each read takes time."""
    vt = VirtualTime()

    class SlowReads(FakeReads):
        async def __call__(self, ids: Sequence[str]) -> list[ServerView]:
            await vt.sleep(0.3)
            return await super().__call__(ids)

    reads = SlowReads(vt, {"s-a": 4.5})
    rec, _ = _reconciler(vt, reads, poll_interval_s=1.0)
    rec.add("s-a")

    async def pool_ends_later() -> None:
        await vt.sleep(5.6)
        rec.close()

    async def both() -> None:
        import asyncio

        await asyncio.gather(rec.run(), pool_ends_later())

    await vt.run(both())
    assert [round(t, 6) for t, _ in reads.calls] == [0.3, 1.3, 2.3, 3.3, 4.3, 5.3]


async def test_past_the_deadline_servers_time_out() -> None:
    """A server that never converges is reported timed out at its deadline, then polling ends."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-stuck": float("inf"), "s-ok": 1.0})
    rec, seen = _reconciler(vt, reads, timeout_s=10.0)
    rec.add("s-stuck")
    rec.add("s-ok")
    rec.close()
    await vt.run(rec.run())
    assert seen["timed_out"] == ["s-stuck"]
    assert [sid for sid, _ in seen["converged"]] == ["s-ok"]
    assert vt.now == pytest.approx(10.0)


async def test_a_failed_poll_is_retried_next_cycle() -> None:
    """A transient read failure costs one cycle, not the run."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-a": 0.0})
    reads.fail_next = RetryableError("InternalServerException", "boom", 500)
    rec, seen = _reconciler(vt, reads)
    rec.add("s-a")
    rec.close()
    await vt.run(rec.run())
    assert rec.stats.failed_polls == 1
    assert seen["converged"] == [("s-a", 0.125)]  # the pool is done: an eighth interval


async def test_account_errors_stop_the_run() -> None:
    """An account-wide error is not retried: it stops the run (the stop carries it)."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-a": 0.0})
    reads.fail_next = AccountError("AccessDeniedException", "no")
    stop = Stop()
    rec, seen = _reconciler(vt, reads, stop=stop)
    rec.add("s-a")
    await vt.run(rec.run())
    assert stop.reason is StopReason.ACCOUNT and "AccessDeniedException" in stop.detail
    assert len(reads.calls) == 1 and seen["converged"] == []


async def test_each_account_is_read_at_once_and_an_account_error_stops_only_its_own() -> None:
    """Ten parts (accounts) of the run's stop: every cycle reads all of them at the same moment
    (one after the other, each read taking 0.1 s, the tenth would start 0.9 s late); the
    account whose read is refused is stopped and no longer polled, the others converge."""
    vt = VirtualTime()
    ids = [f"s-{a}" for a in range(10)]
    reads = FakeReads(vt, dict.fromkeys(ids, 2.0))
    reads.latency_s = 0.1
    reads.fail_for["s-3"] = AccountError("AccessDeniedException", "not yours")
    stop = Stop()
    parts = {sid: stop.part(sid) for sid in ids}
    rec, seen = _reconciler(vt, reads, stop=stop, stop_of=parts.__getitem__)
    for sid in ids:
        rec.add(sid)
    rec.close()
    await vt.run(rec.run())
    per_cycle = Counter(t for t, _ in reads.calls)
    assert per_cycle[0.0] == 10  # every account at t = 0
    assert len(per_cycle) > 2 and all(n == 9 for t, n in per_cycle.items() if t > 0)
    assert parts["s-3"].reason is StopReason.ACCOUNT and stop.reason is None
    assert sorted(sid for sid, _ in seen["converged"]) == [sid for sid in ids if sid != "s-3"]
    assert len({t for _, t in seen["converged"]}) == 1  # seen in one cycle, all at once


async def test_a_halting_stop_ends_polling_at_once_but_a_closed_window_does_not() -> None:
    """SIGTERM ends the reconciler mid-wait; a closed window lets it poll to convergence."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-a": 5.0})
    stop = Stop()
    rec, seen = _reconciler(vt, reads, stop=stop)
    rec.add("s-a")

    async def signal_later() -> None:
        await vt.sleep(2.5)
        stop.request(StopReason.SIGNAL)

    import asyncio

    await vt.run(asyncio.gather(rec.run(), signal_later()))
    assert vt.now == pytest.approx(2.5)
    assert seen["converged"] == []

    vt = VirtualTime()
    reads = FakeReads(vt, {"s-a": 5.0})
    stop = Stop()
    stop.request(StopReason.WINDOW)
    rec, seen = _reconciler(vt, reads, stop=stop)
    rec.add("s-a")
    rec.close()
    await vt.run(rec.run())
    assert seen["converged"] == [("s-a", 5.0)]


async def test_waits_for_the_pool_while_nothing_is_pending() -> None:
    """Open and idle, it polls nothing; servers added later are polled; close ends it."""
    vt = VirtualTime()
    reads = FakeReads(vt, {"s-late": 0.0})
    rec, seen = _reconciler(vt, reads)

    async def pool() -> None:
        await vt.sleep(3.5)
        rec.add("s-late")
        await vt.sleep(1.0)
        rec.close()

    async def both() -> None:
        import asyncio

        await asyncio.gather(rec.run(), pool())

    await vt.run(both())
    assert reads.calls == [(4.0, 1)]
    assert seen["converged"] == [("s-late", 4.0)]


async def test_polls_eight_times_as_often_for_the_last_servers() -> None:
    """Once the pool is done and at most 200 are pending, polls come every eighth interval."""
    vt = VirtualTime()
    ids = [f"s-{i:017d}" for i in range(250)]
    converge = dict.fromkeys(ids[:100], 1.0) | dict.fromkeys(ids[100:], 2.6)
    reads = FakeReads(vt, converge)
    rec, seen = _reconciler(vt, reads, poll_interval_s=1.0)
    for sid in ids:
        rec.add(sid)
    rec.close()
    await vt.run(rec.run())
    times = sorted({t for t, _ in reads.calls})
    assert times == [0.0, 1.0, *(1.0 + n / 8 for n in range(1, 14))]
    assert max(t for _, t in seen["converged"]) == 2.625


async def test_the_tail_interval_counts_the_last_servers_per_account() -> None:
    """Two accounts with 150 pending each (300 in all) are one small call each per cycle:
    the last servers are polled every eighth interval, as a lone account's would be."""
    vt = VirtualTime()
    ids = [f"s-{i:017d}" for i in range(300)]
    reads = FakeReads(vt, dict.fromkeys(ids, 1.6))
    stop = Stop()
    parts = {"a": stop.part("a"), "b": stop.part("b")}
    rec, seen = _reconciler(
        vt, reads, poll_interval_s=1.0, stop=stop, stop_of=lambda s: parts["ab"[int(s[2:]) % 2]]
    )
    for sid in ids:
        rec.add(sid)
    rec.close()
    await vt.run(rec.run())
    assert sorted({t for t, _ in reads.calls}) == [n / 8 for n in range(14)]
    assert all(n == 150 for _, n in reads.calls)
    assert {t for _, t in seen["converged"]} == {1.625}
