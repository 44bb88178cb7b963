"""`mgn-cutover run` as a subprocess against the emulator over HTTP: outcomes, faults, exits."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lock import WaveLock
from orchestrator.state import endpoint_scope
from tests.runhelp import (
    aid,
    cli_env,
    finalized_after_success,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    small_night,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")


def compact(iso: str) -> str:
    """A run folder's time part: the ISO start time without separators."""
    return "".join(c for c in iso if c.isalnum())


MUTATING = (
    "FinalizeCutover",
    "StartCutover",
    "ChangeServerLifeCycleState",
    "MarkAsArchived",
    "DisconnectFromService",
)


def _ready_wave(emulator: Any, work: Path, apps: int, per_app: int, wave: str = "w") -> Path:
    groups = {aid(a): [sid(a, n) for n in range(per_app)] for a in range(apps)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    return write_plan(work, wave, groups)


def test_every_outcome_in_one_run(emulator: Any, work_dir: Path) -> None:
    """Ready, already done, gated, blocked, missing and stuck servers each get their outcome."""
    a = [aid(i) for i in range(5)]
    groups = {
        a[0]: [sid(0, 0), sid(0, 1), sid(0, 2)],
        a[1]: [sid(1, 0), sid(1, 1)],
        a[2]: [sid(2, 0), sid(2, 1)],
        a[3]: [sid(3, 0)],
        a[4]: [sid(4, 0)],
    }
    emulator.seed(
        {
            "servers": [
                *(server(s, a[0]) for s in groups[a[0]]),
                server(sid(1, 0), a[1], "CUTOVER"),
                server(sid(1, 1), a[1]),
                server(sid(2, 0), a[2]),
                server(sid(2, 1), a[2], "READY_FOR_CUTOVER"),
                server(sid(3, 0), a[3], stuck=True),
            ]
        }
    )
    plan = write_plan(work_dir, "mixed", groups)
    out = mgn_cutover(run_args(plan, "mixed", work_dir, "--timeout", "1.5"), cli_env(emulator.url))
    assert out.returncode == 1, out.stderr
    rep = report(work_dir, "mixed")
    got = outcomes(rep)
    assert got == {
        sid(0, 0): "finalized",
        sid(0, 1): "finalized",
        sid(0, 2): "finalized",
        sid(1, 0): "already_cutover",
        sid(1, 1): "finalized",
        sid(2, 0): "blocked",
        sid(2, 1): "blocked",
        sid(3, 0): "timed_out",
        sid(4, 0): "blocked",
    }
    reasons = {s["sourceServerID"]: s["reason"] for s in rep["servers"]}
    assert reasons[sid(2, 0)].startswith(f"application_gate: {sid(2, 1)} wrong_state")
    assert reasons[sid(2, 1)].startswith("wrong_state: READY_FOR_CUTOVER")
    assert reasons[sid(4, 0)].startswith("not_found")
    stuck = next(s for s in rep["servers"] if s["sourceServerID"] == sid(3, 0))
    assert stuck["lifecycle_state"] == "CUTTING_OVER"  # MGN's last word, not the 200's body
    assert reasons[sid(3, 0)].startswith("finalize accepted; MGN still shows CUTTING_OVER")
    assert emulator.calls_for(sid(2, 0), "FinalizeCutover") == 0  # the gate held it back
    assert emulator.calls_for(sid(1, 0), "FinalizeCutover") == 0
    for s in groups[a[0]]:
        assert emulator.server(s)["lifeCycle"]["state"] == "CUTOVER"
    assert rep["summary"] == {
        "total": 9,
        "finalized": 4,
        "already_cutover": 1,
        "would_finalize": 0,
        "blocked": 3,
        "failed": 0,
        "timed_out": 1,
        "not_attempted": 0,
        "unconfirmed": 0,
        "would_launch": 0,
        "reverted": 0,
        "accepted": 0,
    }
    assert rep["exit_code"] == 1
    # The summary line names this run's own report.
    run_folder = (
        work_dir / "reports" / "mixed" / "runs" / f"{compact(rep['started_at'])}-{rep['run_id']}"
    )
    assert f"report={run_folder / 'report.md'}" in out.stdout
    assert (run_folder / "report.json").read_text() == (
        work_dir / "reports" / "mixed" / "report.json"
    ).read_text()


def test_all_ready_converges_with_exit_zero(emulator: Any, work_dir: Path) -> None:
    """A wholly ready wave ends with every server CUTOVER + DISCONNECTED and exit 0."""
    plan = _ready_wave(emulator, work_dir, apps=4, per_app=5)
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    rep = report(work_dir, "w")
    assert set(outcomes(rep).values()) == {"finalized"}
    assert all(s["converged_at"] and s["finalized_at"] for s in rep["servers"])
    assert emulator.calls("FinalizeCutover") == 20
    for s in emulator.servers():
        assert s["lifeCycle"]["state"] == "CUTOVER"
        assert s["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"


def test_dry_run_sends_no_mutating_call(emulator: Any, work_dir: Path) -> None:
    """--dry-run reports would_finalize, exits 0 (a real run would finalize every server: go,
    as `plan` says; issue 21) and the emulator counts zero mutating calls."""
    plan = _ready_wave(emulator, work_dir, apps=3, per_app=4)
    out = mgn_cutover(run_args(plan, "w", work_dir, "--dry-run"), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    rep = report(work_dir, "w")
    assert rep["dry_run"] is True
    assert set(outcomes(rep).values()) == {"would_finalize"}
    assert all(emulator.calls(op) == 0 for op in MUTATING)
    assert emulator.calls("DescribeSourceServers") >= 1
    assert {s["lifeCycle"]["state"] for s in emulator.servers()} == {"CUTTING_OVER"}


def test_throttling_is_retried_after_retry_after(emulator: Any, work_dir: Path) -> None:
    """Over-driven against a 5/s quota, every server still finishes, waiting out Retry-After."""
    plan = _ready_wave(emulator, work_dir, apps=2, per_app=10)
    emulator.set_faults(quota_per_s={"FinalizeCutover": 5})
    out = mgn_cutover(run_args(plan, "w", work_dir, "--finalize-rate", "50"), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    assert emulator.throttled("FinalizeCutover") > 0
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    # After a 429 (Retry-After: 1), that server's next attempt comes at least 1 s later.
    last_429: dict[str, float] = {}
    for entry in emulator.request_log():
        if entry["op"] != "FinalizeCutover":
            continue
        (server_id,) = entry["servers"]
        if server_id in last_429:
            assert entry["t"] - last_429.pop(server_id) >= 0.95
        if entry["status"] == 429:
            last_429[server_id] = entry["t"]
    assert finalized_after_success(emulator.request_log()) == []


def test_internal_errors_and_dropped_connections_are_survived(
    emulator: Any, work_dir: Path
) -> None:
    """With 25% 5xx and 15% dropped connections on every call, the wave still converges."""
    plan = _ready_wave(emulator, work_dir, apps=3, per_app=10)
    emulator.set_faults(error_rate=0.25, drop_rate=0.15)
    out = mgn_cutover(run_args(plan, "w", work_dir, "--max-attempts", "12"), cli_env(emulator.url))
    assert out.returncode == 0, out.stdout + out.stderr
    assert emulator.failed() > 0
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    assert finalized_after_success(emulator.request_log()) == []


def test_visibility_lag_is_waited_out(emulator: Any, work_dir: Path) -> None:
    """When Describe lags the change by 1 s, the reconciler keeps polling until it shows."""
    plan = _ready_wave(emulator, work_dir, apps=2, per_app=5)
    emulator.set_faults(visibility_lag_s=1.0)
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    assert emulator.calls("FinalizeCutover") == 10


def test_retries_exhausted_after_5xx_is_unconfirmed_with_the_error(
    emulator: Any, work_dir: Path
) -> None:
    """A 5xx may have been applied: after max_attempts the server is unconfirmed (MGN still
    shows CUTTING_OVER), never failed or finalized, and it carries the error."""
    plan = _ready_wave(emulator, work_dir, apps=1, per_app=3)
    emulator.set_faults(error_rate=1.0, fault_ops=frozenset({"FinalizeCutover"}))
    out = mgn_cutover(
        run_args(plan, "w", work_dir, "--max-attempts", "2", "--timeout", "0.5"),
        cli_env(emulator.url),
    )
    assert out.returncode == 1
    rep = report(work_dir, "w")
    for s in rep["servers"]:
        assert s["outcome"] == "unconfirmed"
        assert s["attempts"] == 2
        assert s["error"]["code"] == "InternalServerException"
        assert s["reason"].startswith("retries_exhausted")
        assert s["lifecycle_state"] == "CUTTING_OVER"
    assert emulator.calls("FinalizeCutover") == 6


def test_retries_exhausted_on_throttling_fails_and_holds_the_application(
    emulator: Any, work_dir: Path
) -> None:
    """Throttled every time (never applied), a server fails for good after max_attempts, and
    none of its application's servers not yet sent is sent."""
    plan = _ready_wave(emulator, work_dir, apps=1, per_app=4)
    emulator.set_faults(quota_per_s={"FinalizeCutover": 0.001})
    out = mgn_cutover(
        run_args(plan, "w", work_dir, "--max-attempts", "2", "--concurrency", "1"),
        cli_env(emulator.url),
    )
    assert out.returncode == 1, out.stderr
    rep = report(work_dir, "w")
    got = outcomes(rep)
    failed = [s for s, o in got.items() if o == "failed"]
    assert failed, got
    held = [s for s in rep["servers"] if s["outcome"] == "not_attempted"]
    assert held, got
    for row in held:
        assert row["reason"].startswith(f"application_gate: {failed[0]} was refused")
    assert set(got.values()) <= {"failed", "not_attempted", "finalized"}


@pytest.mark.parametrize("mode", ["uninitialized", "access_denied"])
def test_account_errors_stop_the_run_with_exit_4(emulator: Any, work_dir: Path, mode: str) -> None:
    """An account-wide error stops everything: exit 4, nothing finalized, one-line reason."""
    plan = _ready_wave(emulator, work_dir, apps=2, per_app=3)
    emulator.set_faults(**{mode: True})
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr
    rep = report(work_dir, "w")
    assert set(outcomes(rep).values()) == {"not_attempted"}
    assert rep["account_error"]
    assert emulator.calls("FinalizeCutover") == 0


def test_rerun_after_success_sends_nothing_and_keeps_times(emulator: Any, work_dir: Path) -> None:
    """A second run of a finished wave finalizes nothing and reports the first run's times."""
    plan = _ready_wave(emulator, work_dir, apps=2, per_app=3)
    first = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert first.returncode == 0, first.stderr
    before = {s["sourceServerID"]: s["finalized_at"] for s in report(work_dir, "w")["servers"]}
    emulator.reset_counters()
    second = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert second.returncode == 0, second.stderr
    assert emulator.calls("FinalizeCutover") == 0
    rep = report(work_dir, "w")
    assert set(outcomes(rep).values()) == {"finalized"}
    assert {s["sourceServerID"]: s["finalized_at"] for s in rep["servers"]} == before


def test_a_second_run_of_a_locked_wave_exits_3(emulator: Any, work_dir: Path) -> None:
    """While another process holds the wave's lock, run exits 3 at once naming the holder."""
    plan = _ready_wave(emulator, work_dir, apps=1, per_app=2)
    with WaveLock(work_dir / "state" / endpoint_scope(emulator.url), "w"):
        out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert out.returncode == 3
    import os

    assert f"pid {os.getpid()}" in out.stderr
    assert emulator.calls("FinalizeCutover") == 0
    assert emulator.calls("DescribeSourceServers") == 0


def test_application_filter_runs_part_of_a_wave(emulator: Any, work_dir: Path) -> None:
    """--application limits the run to those applications; the others are not touched, and
    the wave's report still lists them (never run: not_attempted) with the wave's exit code."""
    plan = _ready_wave(emulator, work_dir, apps=3, per_app=2)
    out = mgn_cutover(run_args(plan, "w", work_dir, "--application", aid(1)), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    rep = report(work_dir, "w")
    got = outcomes(rep)
    assert {s for s, o in got.items() if o == "finalized"} == {sid(1, 0), sid(1, 1)}
    assert {s for s, o in got.items() if o == "not_attempted"} == {
        sid(a, n) for a in (0, 2) for n in range(2)
    }
    assert rep["covered_applications"] == [aid(1)]
    assert rep["exit_code"] == 1 and rep["run_exit_code"] == 0
    calls: dict[str, int] = defaultdict(int)
    for entry in emulator.request_log():
        if entry["op"] == "FinalizeCutover":
            calls[entry["servers"][0]] += 1
    assert set(calls) == {sid(1, 0), sid(1, 1)}
    bad = mgn_cutover(
        run_args(plan, "w", work_dir, "--application", "app-zzzzzzzzzzzzzzzzz"),
        cli_env(emulator.url),
    )
    assert bad.returncode == 2
    assert "app-zzzzzzzzzzzzzzzzz" in bad.stderr


def test_report_and_status_read_the_journal(emulator: Any, work_dir: Path) -> None:
    """`report` re-renders the last run from the journal; `status` shows journal and MGN state."""
    plan = small_night(emulator, work_dir, "w")
    env = cli_env(emulator.url)
    assert mgn_cutover(run_args(plan, "w", work_dir), env).returncode == 1
    state = ["--state-dir", str(work_dir / "state")]
    again = mgn_cutover(
        ["report", "--wave", "w", *state, "--report-dir", str(work_dir / "again")], env
    )
    assert again.returncode == 1
    first = (work_dir / "reports" / "w" / "report.json").read_text()
    assert (work_dir / "again" / "w" / "report.json").read_text() == first
    status = mgn_cutover(["status", "--wave", "w", *state], env)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("s-")}
    assert rows[sid(0, 0)][0:3] == ["app0", "finalized", "converged"]
    assert rows[sid(0, 0)][-2:] == ["CUTOVER", "DISCONNECTED"]
    assert rows[sid(1, 0)][0:3] == ["app1", "blocked", "-"]
    assert rows[sid(1, 0)][-2] == "CUTTING_OVER"
    missing = mgn_cutover(["status", "--wave", "nope", *state], env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("mgn-cutover: no journal for wave 'nope'")


def test_config_and_plan_errors_are_reported_together(emulator: Any, work_dir: Path) -> None:
    """A bad config and a bad plan give every error of both at once: exit 2, nothing sent."""
    config = work_dir / "config.yaml"
    config.write_text("concurrency: 0\nfinalize_rat: 5\n")
    plan = work_dir / "bad.yaml"
    plan.write_text("wave: w\napplications:\n  - applicationID: app-1\n    sourceServerIDs: []\n")
    args = run_args(plan, "w", work_dir, "--config", str(config))
    args[args.index("--log-format") + 1] = "console"  # plain `file:line:col:` lines
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert any(line.startswith(f"{config}:1:") for line in lines), lines
    assert any(line.startswith(f"{config}:2:") and "finalize_rate" in line for line in lines)
    assert sum(line.startswith(f"{plan}:") for line in lines) >= 2, lines
    assert emulator.calls("DescribeSourceServers") == 0
