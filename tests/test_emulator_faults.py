"""Fault settings and decisions: token bucket on a fake clock, seeded dice, runtime updates."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.emulator.errors import FaultsError
from orchestrator.emulator.faults import FaultInjector, Faults, TokenBucket, retry_after_s


def test_bucket_allows_one_seconds_burst_then_refills(fake_clock: Any) -> None:
    """A 5/s bucket serves 5 at once, refuses the 6th, and refills at 5 tokens a second."""
    bucket = TokenBucket(5.0, fake_clock)
    assert [bucket.try_take() for _ in range(5)] == [0.0] * 5
    assert bucket.try_take() == pytest.approx(0.2)
    fake_clock.advance(0.2)
    assert bucket.try_take() == 0.0
    fake_clock.advance(10)
    assert sum(bucket.try_take() == 0.0 for _ in range(10)) == 5


def test_slow_bucket_has_burst_of_one(fake_clock: Any) -> None:
    """A rate below 1/s still holds one token, and the wait names the time to the next."""
    bucket = TokenBucket(0.5, fake_clock)
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(2.0)
    fake_clock.advance(1.5)
    assert bucket.try_take() == pytest.approx(0.5)


def test_retry_after_rounds_up_to_at_least_one() -> None:
    """Retry-After is the ceiling of the wait in whole seconds, never 0."""
    assert [retry_after_s(w) for w in (0.01, 1.0, 1.2, 2.9)] == [1, 1, 2, 3]


def test_injector_throttles_per_operation(fake_clock: Any) -> None:
    """Quotas are per operation: an unlisted operation is never throttled."""
    inj = FaultInjector(Faults(quota_per_s={"FinalizeCutover": 2}), seed=0, clock=fake_clock)
    waits = [inj.throttle_wait_s("FinalizeCutover") for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0
    assert all(inj.throttle_wait_s("DescribeSourceServers") == 0.0 for _ in range(100))


def test_same_seed_same_decisions(fake_clock: Any) -> None:
    """Two injectors with the same seed and faults make identical decisions."""
    faults = Faults(error_rate=0.3, drop_rate=0.2, jitter_ms=10)

    def run() -> list[object]:
        inj = FaultInjector(faults, seed=42, clock=fake_clock)
        return [(inj.latency_s("X"), inj.inject_error("X"), inj.drop("X", True)) for _ in range(50)]

    assert run() == run()


def test_drop_after_apply_splits_drops_of_mutating_calls(fake_clock: Any) -> None:
    """drop_after_apply=1 drops mutating calls after the change, reads always before."""
    inj = FaultInjector(Faults(drop_rate=1.0, drop_after_apply=1.0), seed=0, clock=fake_clock)
    assert inj.drop("FinalizeCutover", True) == "after"
    assert inj.drop("DescribeSourceServers", False) == "before"


def test_fault_ops_limit_where_faults_apply(fake_clock: Any) -> None:
    """With fault_ops set, error and drop rates leave other operations alone."""
    faults = Faults(error_rate=1.0, drop_rate=1.0, fault_ops=frozenset({"FinalizeCutover"}))
    inj = FaultInjector(faults, seed=0, clock=fake_clock)
    assert inj.inject_error("FinalizeCutover")
    assert not inj.inject_error("DescribeSourceServers")
    assert inj.drop("DescribeSourceServers", False) is None


def test_stuck_rate_depends_on_server_not_call_order(fake_clock: Any) -> None:
    """stuck_rate picks the same servers for a seed whatever order they are finalized in."""
    ids = [f"s-{i:017x}" for i in range(200)]
    a = FaultInjector(Faults(stuck_rate=0.25), seed=7, clock=fake_clock)
    b = FaultInjector(Faults(stuck_rate=0.25), seed=7, clock=fake_clock)
    picked = {s for s in ids if a.is_stuck(s, False)}
    assert picked == {s for s in reversed(ids) if b.is_stuck(s, False)}
    assert 20 < len(picked) < 80


def test_updated_converts_json_values_and_rejects_unknown_fields() -> None:
    """A partial update from JSON converts lists and dicts; unknown or bad values are refused."""
    f = Faults().updated({"stuck": ["s-1"], "quota_per_s": {"FinalizeCutover": 3}})
    assert f.stuck == frozenset({"s-1"}) and f.quota_per_s == {"FinalizeCutover": 3.0}
    with pytest.raises(FaultsError, match="unknown"):
        Faults().updated({"eror_rate": 0.1})
    with pytest.raises(FaultsError, match="error_rate"):
        Faults(error_rate=1.5)


def test_set_faults_keeps_unchanged_buckets(fake_clock: Any) -> None:
    """Changing another fault at runtime does not refill an operation's quota bucket."""
    inj = FaultInjector(Faults(quota_per_s={"ListWaves": 1}), seed=0, clock=fake_clock)
    assert inj.throttle_wait_s("ListWaves") == 0.0
    inj.set_faults(inj.faults.updated({"latency_ms": 5}))
    assert inj.throttle_wait_s("ListWaves") > 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"quota_per_s": {"Finalize": 5}}, "did you mean FinalizeCutover"),
        ({"fault_ops": ["StartCutovr"]}, "did you mean StartCutover"),
        ({"launch_failure_rate": 1.5}, "launch_failure_rate"),
        ({"stuck_job_rate": -0.1}, "stuck_job_rate"),
        ({"launch_s": [90, 30]}, "launch_s"),
        ({"boot_s": "soon"}, "boot_s"),
        ({"time_scale": 0}, "time_scale"),
        ({"max_active_jobs": 0}, "max_active_jobs"),
        ({"post_launch_actions": [{"actionName": "x"}]}, "ssmDocumentName"),
        ({"post_launch_actions": [{"actionName": "x", "ssmDocumentName": "d1", "so": 1}]}, "so"),
        ({"denied_after": {"2222": 1}}, "12-digit accountID"),
        ({"denied_after": {"222222222222": -1}}, "whole number of calls"),
        ({"denied_after": {"222222222222": True}}, "whole number of calls"),
        ({"denied_after": [1]}, "map accountID"),
    ],
)
def test_night_settings_are_checked(changes: dict[str, Any], words: str) -> None:
    """Unknown operations (with a suggestion), bad rates, ranges and actions are FaultsErrors."""
    with pytest.raises(FaultsError, match=words):
        Faults().updated(changes)


def test_night_settings_from_json() -> None:
    """JSON values convert: a number is a fixed range, lists become tuples and sets."""
    f = Faults().updated(
        {
            "launch_s": 30,
            "boot_s": [10, 20],
            "stuck_job_servers": ["s-0a1b2c3d4e5f6a7b8"],
            "post_launch_actions": [{"actionName": "a", "ssmDocumentName": "doc"}],
        }
    )
    assert f.launch_s == (30.0, 30.0) and f.boot_s == (10.0, 20.0)
    assert f.stuck_job_servers == frozenset({"s-0a1b2c3d4e5f6a7b8"})
    assert f.to_json()["post_launch_actions"] == [{"actionName": "a", "ssmDocumentName": "doc"}]
    assert Faults(first_boot_delay_s=7).boot_range() == (7.0, 7.0)


def test_stuck_jobs_are_decided_per_job_id(fake_clock: Any) -> None:
    """stuck_job_rate is decided from the seed and the job ID, not from call order."""
    inj = FaultInjector(Faults(stuck_job_rate=0.5), seed=3, clock=fake_clock)
    ids = [f"mgnjob-{n:017x}" for n in range(200)]
    first = [inj.is_stuck_job(j, []) for j in ids]
    assert 60 < sum(first) < 140
    assert [inj.is_stuck_job(j, []) for j in reversed(ids)] == first[::-1]
    assert FaultInjector(Faults(), 0, fake_clock).is_stuck_job("mgnjob-x", []) is False
    named = FaultInjector(Faults(stuck_job_servers=frozenset({"s-1"})), 0, fake_clock)
    assert named.is_stuck_job("mgnjob-x", ["s-0", "s-1"]) is True


def test_denied_after_counts_each_account_s_calls(fake_clock: Any) -> None:
    """An account's first N calls pass, every later one is denied; other accounts are not
    counted; changing the setting starts the count again."""
    inj = FaultInjector(Faults().updated({"denied_after": {"222222222222": 2}}), 0, fake_clock)
    assert [inj.denied("222222222222") for _ in range(4)] == [False, False, True, True]
    assert not inj.denied("333333333333") and not inj.denied(None)
    inj.set_faults(inj.faults.updated({"denied_after": {"222222222222": 1}}))
    assert [inj.denied("222222222222") for _ in range(2)] == [False, True]
