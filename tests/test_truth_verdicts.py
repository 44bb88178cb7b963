"""A dry run gives `plan`'s verdict, and `plan` reads N servers in ceil(N/200) calls (issue 21,
points 11 and 12).

Subprocess runs of `run --dry-run` and `plan` against the emulator over HTTP; call counts from
the emulator's own stats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, mgn_cutover, outcomes, report, run_args, server, sid
from tests.runhelp import write_plan as plan_file

pytestmark = pytest.mark.usefixtures("fake_credentials")

MUTATING = ("FinalizeCutover", "StartCutover", "ChangeServerLifeCycleState", "MarkAsArchived")


def _verdicts(emulator: Any, work: Path, plan: Path, *extra: str) -> tuple[int, int, str]:
    """(`plan`'s exit code, the dry run's exit code, the dry run's stdout) on one wave."""
    env = cli_env(emulator.url)
    planned = mgn_cutover(["plan", str(plan), "--wave", "w", *extra], env)
    dry = mgn_cutover(run_args(plan, "w", work, "--dry-run", *extra), env)
    assert "Traceback" not in planned.stderr + dry.stderr
    assert all(emulator.calls(op) == 0 for op in MUTATING)
    return planned.returncode, dry.returncode, dry.stdout


def test_a_dry_run_of_a_wholly_ready_wave_exits_0_as_plan_does(
    emulator: Any, work_dir: Path
) -> None:
    """Every server ready for finalize: `plan` and the dry run both exit 0 (go), each server
    `would_finalize`, nothing sent."""
    groups = {aid(a): [sid(a, n) for n in range(3)] for a in range(2)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = plan_file(work_dir, "w", groups)
    planned, dry, _ = _verdicts(emulator, work_dir, plan)
    assert (planned, dry) == (0, 0)
    assert set(outcomes(report(work_dir, "w")).values()) == {"would_finalize"}


def test_a_dry_run_with_a_blocked_server_exits_1_as_plan_does(
    emulator: Any, work_dir: Path
) -> None:
    """One server still booting (blocked) among ready ones: both exit 1 (no-go; the contract
    change keeps this)."""
    groups = {aid(0): [sid(0, 0)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {"servers": [server(sid(0, 0), aid(0)), server(sid(1, 0), aid(1), firstBoot="WAITING")]}
    )
    plan = plan_file(work_dir, "w", groups)
    planned, dry, _ = _verdicts(emulator, work_dir, plan)
    assert (planned, dry) == (1, 1)
    assert outcomes(report(work_dir, "w")) == {sid(0, 0): "would_finalize", sid(1, 0): "blocked"}


def test_a_launch_dry_run_of_a_ready_night_exits_0_as_plan_does(
    emulator: Any, work_dir: Path
) -> None:
    """`--launch` on READY_FOR_CUTOVER servers replicating with a small lag: both exit 0, each
    server `would_launch`, no StartCutover."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed(
        {
            "servers": [
                {
                    "sourceServerID": s,
                    "applicationID": aid(0),
                    "state": "READY_FOR_CUTOVER",
                    "lagDuration": "PT5S",
                }
                for s in groups[aid(0)]
            ]
        }
    )
    plan = plan_file(work_dir, "w", groups)
    planned, dry, _ = _verdicts(emulator, work_dir, plan, "--launch")
    assert (planned, dry) == (0, 0)
    assert set(outcomes(report(work_dir, "w")).values()) == {"would_launch"}


def test_a_launch_dry_run_of_servers_already_launched_exits_0_as_plan_does(
    emulator: Any, work_dir: Path
) -> None:
    """`--launch` on servers already CUTTING_OVER (a rerun's night): `plan` watches them and
    exits 0; the dry run agrees (each `would_finalize`, nothing sent) instead of exit 1."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [server(s, aid(0)) for s in groups[aid(0)]]})
    plan = plan_file(work_dir, "w", groups)
    planned, dry, _ = _verdicts(emulator, work_dir, plan, "--launch")
    assert (planned, dry) == (0, 0)
    assert set(outcomes(report(work_dir, "w")).values()) == {"would_finalize"}


def test_a_dry_run_of_a_converged_wave_exits_0_as_plan_does(emulator: Any, work_dir: Path) -> None:
    """Every server already CUTOVER + DISCONNECTED: both exit 0, as before issue 21."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [server(s, aid(0), "CUTOVER") for s in groups[aid(0)]]})
    plan = plan_file(work_dir, "w", groups)
    planned, dry, _ = _verdicts(emulator, work_dir, plan)
    assert (planned, dry) == (0, 0)
    assert set(outcomes(report(work_dir, "w")).values()) == {"already_cutover"}


def test_plan_reads_1000_servers_in_5_describe_calls(emulator: Any, work_dir: Path) -> None:
    """`plan` of 1,000 servers (100 applications of 10) sends ceil(1000/200) = 5
    DescribeSourceServers, each of 200 IDs, by the emulator's count."""
    groups = {aid(a): [sid(a, n) for n in range(10)] for a in range(100)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = plan_file(work_dir, "w", groups)
    emulator.reset_counters()
    out = mgn_cutover(["plan", str(plan), "--wave", "w"], cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert emulator.calls("DescribeSourceServers") == 5
    sizes = [
        len(e["servers"]) for e in emulator.request_log() if e["op"] == "DescribeSourceServers"
    ]
    assert sizes == [200] * 5


def test_a_dry_run_reads_1000_servers_in_5_describe_calls(emulator: Any, work_dir: Path) -> None:
    """The dry run's pre-flight reads the same 1,000 servers in the same 5 calls, and exits 0."""
    groups = {aid(a): [sid(a, n) for n in range(10)] for a in range(100)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = plan_file(work_dir, "w", groups)
    emulator.reset_counters()
    out = mgn_cutover(run_args(plan, "w", work_dir, "--dry-run"), cli_env(emulator.url))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert emulator.calls("DescribeSourceServers") == 5
