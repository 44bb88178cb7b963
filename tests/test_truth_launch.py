"""The launch side of the night under its ordinary faults, through the CLI on the emulator:
read lag after StartCutover, a lost answer beside an older revert's job, StartCutover
answered 5xx again and again, a 403 on StartCutover, DescribeJobs failing for a while, and a
rerun that meets servers an earlier run finalized (answers lost, reads lagging).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import (
    aid,
    cli_env,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)
from tests.test_accounts import seed_launchable, write_wave
from tests.test_night import FAST, NIGHT, ready

pytestmark = pytest.mark.usefixtures("fake_credentials")

ACCT = "222222222222"
REVERT_OPS = ("ChangeServerLifeCycleState", "TerminateTargetInstances")


def night(emulator: Any, work: Path, apps: int, per_app: int, **faults: Any) -> Path:
    groups = {aid(a): [sid(a, n) for n in range(per_app)] for a in range(apps)}
    emulator.seed({"servers": [ready(s, a) for a, ids in groups.items() for s in ids]})
    emulator.set_faults(**{**NIGHT, **faults})
    return write_plan(work, "night", groups)


def test_a_read_lag_after_start_cutover_is_lag_not_failure(emulator: Any, work_dir: Path) -> None:
    """Reads show READY_FOR_CUTOVER for 2 s after each accepted StartCutover: with
    --on-failure revert nothing is failed, reverted or terminated, and 40/40 are finalized,
    each launched once."""
    plan = night(emulator, work_dir, apps=4, per_app=10, visibility_lag_s=2.0)
    args = run_args(plan, "night", work_dir, *FAST, "--on-failure", "revert", "--timeout", "60")
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert all(emulator.calls(op) == 0 for op in REVERT_OPS)
    assert len(emulator.launches()) == 40
    assert max(emulator.launches().values()) == 1


def test_a_start_cutover_answered_500_again_and_again_is_bounded(
    emulator: Any, work_dir: Path
) -> None:
    """Every StartCutover answers 500: it is sent at most --max-attempts times, backing off,
    the run ends by itself, and the servers are unconfirmed (a rerun reads first), not failed
    launches and never reverted."""
    plan = night(
        emulator,
        work_dir,
        apps=1,
        per_app=2,
        error_rate=1.0,
        fault_ops=frozenset({"StartCutover"}),
        error_retry_after_s=0,
    )
    args = run_args(plan, "night", work_dir, *FAST, "--max-attempts", "3", "--on-failure", "revert")
    started = time.monotonic()
    out = mgn_cutover(args, cli_env(emulator.url), timeout_s=60)
    assert time.monotonic() - started < 30
    assert out.returncode == 1, out.stderr[-3000:]
    assert emulator.calls("StartCutover") == 3
    rep = report(work_dir, "night")
    assert set(outcomes(rep).values()) == {"unconfirmed"}
    assert all("retries_exhausted" in r["reason"] for r in rep["servers"])
    assert all(emulator.calls(op) == 0 for op in REVERT_OPS)


def test_a_lost_start_cutover_answer_is_not_resolved_from_an_older_revert_job(
    emulator: Any, work_dir: Path
) -> None:
    """Night 1 launches and reverts an application (a TERMINATE job lists its servers); on
    night 2 every StartCutover is lost before MGN acts: the revert's job is never taken for
    tonight's launch, so nothing is reported launched and no launch status TERMINATED."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [ready(sid(0, 0), aid(0), bootFails=True), ready(sid(0, 1), aid(0))]})
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "night", groups)
    first = mgn_cutover(
        run_args(plan, "night", work_dir, *FAST, "--on-failure", "revert"), cli_env(emulator.url)
    )
    assert first.returncode == 1, first.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"reverted"}
    assert any(j["type"] == "TERMINATE" for j in emulator.jobs())
    launched_before = dict(emulator.launches())
    emulator.set_faults(drop_rate=1.0, drop_after_apply=0.0, fault_ops=frozenset({"StartCutover"}))
    second = mgn_cutover(
        run_args(plan, "night", work_dir, *FAST, "--max-attempts", "2"), cli_env(emulator.url)
    )
    assert second.returncode == 1, second.stderr[-3000:]
    rows = report(work_dir, "night")["servers"]
    assert {r["outcome"] for r in rows} == {"unconfirmed"}
    for row in rows:
        assert "TERMINATED" not in (row["reason"] or "")
        assert row["launch_job_id"] is None
    assert dict(emulator.launches()) == launched_before


def _calls_before(emulator: Any, op: str, account_id: str) -> int:
    """How many calls of the account MGN answered before its first `op`."""
    mine = [e for e in emulator.request_log() if e["accountID"] == account_id]
    return next(i for i, e in enumerate(mine) if e["op"] == op)


def test_a_403_on_start_cutover_is_not_a_possible_launch(emulator: Any, work_dir: Path) -> None:
    """MGN answers StartCutover AccessDeniedException (the account's credentials just
    expired): exit 4, one StartCutover, and the servers are not attempted ("refused
    StartCutover before launching"), never "unconfirmed ... while StartCutover was in flight"."""
    apps = {aid(0): (ACCT, [sid(0, 0), sid(0, 1)])}
    seed_launchable(emulator, apps)
    emulator.set_faults(**NIGHT)
    plan = write_wave(work_dir, "night", apps)
    # Where the first StartCutover falls among the account's calls: found by a first run
    # against a fresh copy of the wave (the run's reads before it are the same each time).
    probe = mgn_cutover(run_args(plan, "night", work_dir / "probe", *FAST), cli_env(emulator.url))
    assert probe.returncode == 0, probe.stderr[-3000:]
    before_start = _calls_before(emulator, "StartCutover", ACCT)
    emulator.reset()
    seed_launchable(emulator, apps)
    emulator.set_faults(denied_after={ACCT: before_start})
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST), cli_env(emulator.url))
    assert out.returncode == 4, out.stderr[-3000:]
    assert emulator.calls("StartCutover") == 1
    rows = report(work_dir, "night")["servers"]
    assert {r["outcome"] for r in rows} == {"not_attempted"}
    for row in rows:
        assert "refused StartCutover before launching" in row["reason"]
        assert "in flight" not in row["reason"]


def test_a_few_seconds_of_5xx_on_describe_jobs_do_not_end_the_night(
    emulator: Any, work_dir: Path
) -> None:
    """DescribeJobs answers 500 for ~2 s while the launches are watched (retries run out
    within that): the watch skips those ticks and goes on; every server is finalized."""
    plan = night(emulator, work_dir, apps=2, per_app=3, launch_s=(2000.0, 2000.0))
    args = run_args(plan, "night", work_dir, *FAST, "--max-attempts", "2", "--timeout", "60")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=cli_env(emulator.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while emulator.calls("StartCutover") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emulator.calls("StartCutover") == 1
        emulator.set_faults(
            error_rate=1.0, fault_ops=frozenset({"DescribeJobs"}), error_retry_after_s=0
        )
        time.sleep(2.0)
        assert emulator.failed("DescribeJobs") >= 2
        emulator.set_faults(error_rate=0.0, fault_ops=None)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}


def test_a_rerun_never_reverts_or_refinalizes_what_an_earlier_run_finalized(
    emulator: Any, work_dir: Path
) -> None:
    """Run 1's FinalizeCutovers are applied but every answer is lost and reads lag (run 1
    ends unconfirmed); run 2 with --launch --on-failure revert treats the journal's intents as
    MGN's to resolve: it polls them to CUTOVER + DISCONNECTED, sends no second
    FinalizeCutover and no revert."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [server(s, aid(0)) for s in groups[aid(0)]]})
    emulator.set_faults(
        drop_rate=1.0,
        drop_after_apply=1.0,
        fault_ops=frozenset({"FinalizeCutover"}),
        visibility_lag_s=4.0,
    )
    plan = write_plan(work_dir, "w", groups)
    first = mgn_cutover(
        run_args(plan, "w", work_dir, "--max-attempts", "1", "--timeout", "0.5"),
        cli_env(emulator.url),
    )
    assert first.returncode == 1, first.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"unconfirmed"}
    emulator.set_faults(drop_rate=0.0, fault_ops=None)
    second = mgn_cutover(
        run_args(plan, "w", work_dir, *FAST, "--on-failure", "revert"), cli_env(emulator.url)
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    for server_id in groups[aid(0)]:
        assert emulator.calls_for(server_id, "FinalizeCutover") == 1
    assert all(emulator.calls(op) == 0 for op in REVERT_OPS)
    assert emulator.calls("StartCutover") == 0


def test_an_unanswered_finalize_is_sent_again_only_once_reads_have_settled(
    emulator: Any, work_dir: Path
) -> None:
    """Run 1's FinalizeCutover is lost before MGN acts (intent only in the journal): a rerun
    within read_settle_s only polls it (never sends), saying when it will; a rerun after it,
    with MGN still showing CUTTING_OVER and no finalize recorded, sends it and finalizes."""
    groups = {aid(0): [sid(0, 0)]}
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    emulator.set_faults(
        drop_rate=1.0, drop_after_apply=0.0, fault_ops=frozenset({"FinalizeCutover"})
    )
    plan = write_plan(work_dir, "w", groups)
    args = run_args(plan, "w", work_dir, "--max-attempts", "1", "--timeout", "0.5")
    assert mgn_cutover(args, cli_env(emulator.url)).returncode == 1
    emulator.set_faults(drop_rate=0.0, fault_ops=None)
    polled = mgn_cutover(args, cli_env(emulator.url))
    assert polled.returncode == 1, polled.stderr[-3000:]
    row = report(work_dir, "w")["servers"][0]
    assert row["outcome"] == "unconfirmed"
    assert "never sent again" in row["reason"]
    assert emulator.calls_for(sid(0, 0), "FinalizeCutover") == 1
    settled = mgn_cutover(args, cli_env(emulator.url, {"MGN_CUTOVER_READ_SETTLE_S": "0.01"}))
    assert settled.returncode in (0, 1), settled.stderr[-3000:]
    assert emulator.calls_for(sid(0, 0), "FinalizeCutover") == 2
    assert report(work_dir, "w")["servers"][0]["outcome"] in ("finalized", "timed_out")
