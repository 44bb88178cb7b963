"""The run's stop and its parts: an account error on one (account, region) stops that part
alone; any other reason, and every stop of the run, reaches every part."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.stop import Stop, Stopped, StopReason


def test_an_account_error_in_a_part_stops_that_part_only() -> None:
    """Part B fails: B halts, A and the run go on; the run's account error names B."""
    run = Stop()
    a, b = run.part("A"), run.part("B")
    b.request(StopReason.ACCOUNT, "AccessDeniedException: expired")
    assert b.halted and b.failure == "AccessDeniedException: expired"
    assert run.reason is None and not a.sends_stopped
    assert run.failures() == {"B": "AccessDeniedException: expired"}
    assert run.account_error() == "B: AccessDeniedException: expired"


def test_other_reasons_and_the_run_s_own_stop_reach_every_part() -> None:
    """A journal failure seen in a part stops the run; a signal reaches a part made later."""
    run = Stop()
    a = run.part("A")
    a.request(StopReason.LOCAL_STATE, "disk full")
    assert run.reason is StopReason.LOCAL_STATE and a.halted and a.failure is None
    assert run.part("B").reason is StopReason.LOCAL_STATE


def test_every_part_failing_stops_the_run_for_the_account() -> None:
    """One part: the run stops with that error as is (one account behaves as before)."""
    one = Stop()
    one.part("A").request(StopReason.ACCOUNT, "denied")
    assert one.reason is StopReason.ACCOUNT and one.detail == "denied"
    two = Stop()
    two.part("A"), two.part("B")  # Targets makes every part when it opens the targets
    two.part("A").request(StopReason.ACCOUNT, "a")
    assert two.reason is None
    two.part("B").request(StopReason.ACCOUNT, "b")
    assert two.reason is StopReason.ACCOUNT and two.detail == "A: a; B: b"


async def test_a_part_s_account_error_halts_its_guarded_reads_only() -> None:
    """A read guarded by B is abandoned (Stopped) when B fails; A's read is answered."""
    run = Stop()
    a, b = run.part("A"), run.part("B")
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    read_a = asyncio.ensure_future(a.guard(answer))
    read_b = asyncio.ensure_future(b.guard(asyncio.Event().wait()))
    await asyncio.sleep(0)
    b.request(StopReason.ACCOUNT, "denied")
    answer.set_result("view")
    got, failed = await asyncio.gather(read_a, read_b, return_exceptions=True)
    assert got == "view" and isinstance(failed, Stopped)


@pytest.mark.parametrize("reason", [StopReason.SIGNAL, StopReason.WINDOW])
def test_a_failed_part_keeps_its_failure_when_the_run_stops(reason: StopReason) -> None:
    """The run stopping later does not erase which part failed and why."""
    run = Stop()
    run.part("A")
    run.part("B").request(StopReason.ACCOUNT, "denied")
    run.request(reason, "later")
    assert run.part("B").reason is StopReason.ACCOUNT and run.failures() == {"B": "denied"}
