"""`run --launch`: the whole night against the emulator over HTTP, time-scaled.

StartCutover within the job quotas, launch jobs watched to verification, streaming finalize,
approvals, archive, revert, and the faults of the night (lost answers, failed boots and
actions, stuck jobs, quota refusals); no server is ever launched twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, mgn_cutover, outcomes, report, run_args, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

# Emulated minutes pass in milliseconds: launch 60-120 s, boot 30-60 s, actions 10-20 s.
NIGHT: dict[str, Any] = {
    "time_scale": 2000.0,
    "launch_s": (60.0, 120.0),
    "boot_s": (30.0, 60.0),
    "action_s": (10.0, 20.0),
    "post_launch_actions": (),
}
FAST = ("--launch", "--poll-interval", "0.05", "--timeout", "20")


def ready(server_id: str, app_id: str, **extra: Any) -> dict[str, Any]:
    """A fixture server ready for StartCutover: READY_FOR_CUTOVER, replicating."""
    return {
        "sourceServerID": server_id,
        "applicationID": app_id,
        "state": "READY_FOR_CUTOVER",
        "lagDuration": "PT5S",
        **extra,
    }


def night(emulator: Any, work: Path, apps: int, per_app: int, **extra: Any) -> Path:
    groups = {aid(a): [sid(a, n) for n in range(per_app)] for a in range(apps)}
    emulator.seed({"servers": [ready(s, a, **extra) for a, ids in groups.items() for s in ids]})
    emulator.set_faults(**NIGHT)
    return write_plan(work, "night", groups)


def _timeline(row: dict[str, Any]) -> list[str]:
    return [e["event"] for e in row["timeline"]]


def test_the_whole_night_launches_verifies_finalizes_and_archives(
    emulator: Any, work_dir: Path
) -> None:
    """Every ready server is launched once, verified, finalized and archived; the report's
    timeline says so in order, with the launch job."""
    plan = night(emulator, work_dir, apps=3, per_app=4)
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST, "--archive"), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    rep = report(work_dir, "night")
    assert set(outcomes(rep).values()) == {"finalized"}
    assert max(emulator.launches().values()) == 1
    assert len(emulator.launches()) == 12
    for row in rep["servers"]:
        events = _timeline(row)
        order = ["launch_requested", "launch_job", "launched", "first_boot", "verified"]
        order += ["finalize_sent", "finalize_accepted", "converged", "archived"]
        assert [e for e in events if e in order] == order, events
        assert row["launch_job_id"].startswith("mgnjob-")
        assert row["archived_at"]
        assert emulator.server(row["sourceServerID"])["isArchived"] is True


def test_a_failed_boot_holds_its_application_and_reverts_it(emulator: Any, work_dir: Path) -> None:
    """A first boot that ends STOPPED: its application is never finalized; with
    --on-failure revert every launched server of it goes back to READY_FOR_CUTOVER and its
    instance is terminated; the other applications are finalized."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0), sid(1, 1)]}
    emulator.seed(
        {
            "servers": [
                ready(sid(0, 0), aid(0), bootFails=True),
                ready(sid(0, 1), aid(0)),
                ready(sid(1, 0), aid(1)),
                ready(sid(1, 1), aid(1)),
            ]
        }
    )
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "night", groups)
    args = run_args(plan, "night", work_dir, *FAST, "--on-failure", "revert")
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "night")
    assert outcomes(rep) == {
        sid(0, 0): "reverted",
        sid(0, 1): "reverted",
        sid(1, 0): "finalized",
        sid(1, 1): "finalized",
    }
    rows = {r["sourceServerID"]: r for r in rep["servers"]}
    assert "first_boot: STOPPED" in rows[sid(0, 0)]["reason"]
    assert f"application_gate: {sid(0, 0)}" in rows[sid(0, 1)]["reason"]
    for server_id in (sid(0, 0), sid(0, 1)):
        assert emulator.calls_for(server_id, "FinalizeCutover") == 0
        assert emulator.server(server_id)["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
        assert "reverted" in _timeline(rows[server_id])


def test_a_failed_must_succeed_action_is_never_finalized_and_kept_by_default(
    emulator: Any, work_dir: Path
) -> None:
    """A post-launch action marked must-succeed that FAILED: not finalized, reason names the
    action; default --on-failure keep leaves the launched instance for a person."""
    action = {
        "actionName": "smoke-test",
        "ssmDocumentName": "AWS-RunShellScript",
        "mustSucceedForCutover": True,
        "fail": True,
    }
    groups = {aid(0): [sid(0, 0)]}
    emulator.seed({"servers": [ready(sid(0, 0), aid(0), postLaunchActions=[action])]})
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "night", groups)
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST), cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    row = report(work_dir, "night")["servers"][0]
    assert row["outcome"] == "failed"
    assert row["reason"].startswith("post_launch_action: smoke-test FAILED")
    assert emulator.server(sid(0, 0))["lifeCycle"]["state"] == "CUTTING_OVER"
    assert emulator.calls_for(sid(0, 0), "FinalizeCutover") == 0


def test_a_lost_start_cutover_answer_is_resolved_without_a_second_launch(
    emulator: Any, work_dir: Path
) -> None:
    """StartCutover applied but its answer dropped: the run finds the job in DescribeJobs and
    watches it; no server is launched twice."""
    plan = night(emulator, work_dir, apps=2, per_app=3)
    emulator.set_faults(drop_rate=1.0, drop_after_apply=1.0, fault_ops=frozenset({"StartCutover"}))
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert max(emulator.launches().values()) == 1


def test_job_quotas_are_kept_and_waited_out(emulator: Any, work_dir: Path) -> None:
    """With MGN allowing 2 active jobs of 6 servers, 5 applications of 3 all launch, never
    more than the quota at once, each exactly once."""
    plan = night(emulator, work_dir, apps=5, per_app=3)
    emulator.set_faults(max_active_jobs=2, max_active_job_servers=6)
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert max(emulator.launches().values()) == 1 and len(emulator.launches()) == 15


def test_a_stuck_job_times_out_and_nothing_of_it_is_finalized(
    emulator: Any, work_dir: Path
) -> None:
    """A launch job that never completes: after launch_timeout_s the server has failed."""
    plan = night(emulator, work_dir, apps=1, per_app=2, stuckJob=True)
    config = work_dir / "c.yaml"
    config.write_text("launch_timeout_s: 1.5\n")
    args = run_args(plan, "night", work_dir, *FAST, "--config", str(config))
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "night")
    assert set(outcomes(rep).values()) == {"failed", "not_attempted"}
    assert any(r["reason"].startswith("launch_timeout") for r in rep["servers"])
    assert emulator.calls("FinalizeCutover") == 0


def test_a_rerun_watches_launched_servers_and_never_launches_them_again(
    emulator: Any, work_dir: Path
) -> None:
    """Interrupted after the launch: the rerun sees CUTTING_OVER, watches, finalizes."""
    plan = night(emulator, work_dir, apps=1, per_app=3)
    env = cli_env(emulator.url)
    emulator.set_faults(time_scale=20.0)  # slow enough to stop it mid-launch
    args = run_args(plan, "night", work_dir, *FAST)
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if json.loads(line).get("event") == "launch_job_started":
                break
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 1
    emulator.set_faults(time_scale=2000.0)
    out = mgn_cutover(args, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert max(emulator.launches().values()) == 1


def test_approval_gates_the_finalize_until_approve_is_run(emulator: Any, work_dir: Path) -> None:
    """--require-approval: a verified application waits; `approve` from another shell while
    the run holds the lock lets it finalize, and the report names who approved."""
    plan = night(emulator, work_dir, apps=2, per_app=2)
    env = cli_env(emulator.url)
    args = run_args(plan, "night", work_dir, *FAST, "--require-approval")
    state = ["--state-dir", str(work_dir / "state")]
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        waiting: set[str] = set()
        for line in proc.stderr:
            event = json.loads(line)
            if event.get("event") == "approval_awaited":
                waiting.add(event["applicationID"])
            if waiting == {aid(0), aid(1)}:
                break
        assert emulator.calls("FinalizeCutover") == 0
        shown = mgn_cutover(["status", str(plan), "--wave", "night", *state], env)
        assert shown.returncode == 0, shown.stderr
        assert "Waiting for approval: 2" in shown.stdout
        assert f"--application {aid(0)}" in shown.stdout
        for app, who in ((aid(0), "alice"), ("app1", "bob")):
            ok = mgn_cutover(
                [
                    "approve",
                    str(plan),
                    "--wave",
                    "night",
                    "--application",
                    app,
                    "--by",
                    who,
                    *state,
                ],
                env,
            )
            assert ok.returncode == 0, ok.stderr
            assert f"approved by {who}" in ok.stdout
        proc.wait(timeout=60)
    assert proc.returncode == 0
    rep = report(work_dir, "night")
    assert set(outcomes(rep).values()) == {"finalized"}
    approved = {
        r["sourceServerID"]: next(e["detail"] for e in r["timeline"] if e["event"] == "approved")
        for r in rep["servers"]
    }
    assert approved[sid(0, 0)].startswith("by alice")
    assert approved[sid(1, 1)].startswith("by bob")


def test_not_approved_in_time_is_not_finalized(emulator: Any, work_dir: Path) -> None:
    """No approval within approve_timeout_s: not finalized, reason says so."""
    plan = night(emulator, work_dir, apps=1, per_app=1)
    config = work_dir / "c.yaml"
    config.write_text("approve_timeout_s: 0.5\n")
    args = run_args(plan, "night", work_dir, *FAST, "--require-approval", "--config", str(config))
    started = time.monotonic()
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    assert time.monotonic() - started < 30
    row = report(work_dir, "night")["servers"][0]
    assert row["outcome"] == "not_attempted" and "not approved" in row["reason"]
    assert emulator.calls("FinalizeCutover") == 0


def test_plan_and_dry_run_show_the_night_and_send_nothing(emulator: Any, work_dir: Path) -> None:
    """`plan --launch` and `run --launch --dry-run` say launch / blocked per server, with
    reasons (a lagging server blocks its application), and send nothing mutating."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                ready(sid(0, 0), aid(0)),
                ready(sid(0, 1), aid(0), lagDuration="PT20M"),
                ready(sid(1, 0), aid(1)),
            ]
        }
    )
    plan = write_plan(work_dir, "night", groups)
    env = cli_env(emulator.url)
    shown = mgn_cutover(["plan", str(plan), "--wave", "night", "--launch", "--output", "json"], env)
    assert shown.returncode == 1, shown.stderr
    decisions = {
        s["sourceServerID"]: (s["decision"], s["reason"])
        for s in json.loads(shown.stdout)["servers"]
    }
    assert decisions[sid(1, 0)] == ("launch", None)
    assert decisions[sid(0, 1)][0] == "blocked"
    assert decisions[sid(0, 1)][1].startswith("replication_lag: 1200s")
    assert decisions[sid(0, 0)][1].startswith(f"application_gate: {sid(0, 1)}")
    dry = mgn_cutover(run_args(plan, "night", work_dir, *FAST, "--dry-run"), env)
    assert dry.returncode == 1, dry.stderr[-3000:]
    assert outcomes(report(work_dir, "night"))[sid(1, 0)] == "would_launch"
    for op in ("StartCutover", "FinalizeCutover", "ChangeServerLifeCycleState", "MarkAsArchived"):
        assert emulator.calls(op) == 0


def test_a_refused_revert_is_reported_and_the_run_ends(emulator: Any, work_dir: Path) -> None:
    """A stuck launch job: the revert MGN refuses (ConflictException while the job runs) is
    said in the report; the run does not wait forever and nothing is finalized."""
    plan = night(emulator, work_dir, apps=1, per_app=1, stuckJob=True)
    config = work_dir / "c.yaml"
    config.write_text("launch_timeout_s: 1\n")
    args = run_args(
        plan, "night", work_dir, *FAST, "--config", str(config), "--on-failure", "revert"
    )
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    row = report(work_dir, "night")["servers"][0]
    assert row["outcome"] == "failed"
    assert row["reason"].startswith("launch_timeout")
    assert "revert refused: ConflictException" in row["reason"]
    assert emulator.calls("FinalizeCutover") == 0


def test_start_cutover_5xx_and_throttling_are_resolved_or_waited_out(
    emulator: Any, work_dir: Path
) -> None:
    """StartCutover failing with 5xx (not applied) and 429s: the run finds no job, queues the
    servers again, and they all launch exactly once."""
    plan = night(emulator, work_dir, apps=4, per_app=2)
    # One application per job (MGN allows 2 servers in active jobs), so several calls.
    emulator.set_faults(
        error_rate=0.6,
        fault_ops=frozenset({"StartCutover"}),
        quota_per_s={"StartCutover": 4},
        max_active_job_servers=2,
    )
    out = mgn_cutover(run_args(plan, "night", work_dir, *FAST), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert max(emulator.launches().values()) == 1 and len(emulator.launches()) == 8
    assert emulator.failed("StartCutover") + emulator.throttled("StartCutover") > 0


def test_verify_instances_checks_the_launched_instances_on_ec2(
    work_dir: Path, moto_url: str
) -> None:
    """The launch's instances exist in EC2 (moto); --verify-instances waits for both status
    checks on exactly those IDs before finalizing."""
    from orchestrator.emulator.faults import Faults
    from orchestrator.emulator.testing import running_emulator

    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    fixture = {"servers": [ready(s, aid(0)) for s in groups[aid(0)]]}
    with running_emulator(
        fixture=fixture, faults=Faults(**NIGHT), ec2_endpoint_url=moto_url
    ) as emulator:
        plan = write_plan(work_dir, "night", groups)
        env = cli_env(emulator.url, {"AWS_ENDPOINT_URL_EC2": moto_url})
        args = run_args(plan, "night", work_dir, *FAST, "--verify-instances")
        out = mgn_cutover(args, env)
        assert out.returncode == 0, out.stderr[-3000:]
        rep = report(work_dir, "night")
        assert set(outcomes(rep).values()) == {"finalized"}
        launched = {r["ec2InstanceID"] for r in rep["servers"]}
        import boto3

        ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1")
        running = {
            i["InstanceId"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        }
        assert launched and launched <= running


def test_a_server_is_verified_only_once_its_launch_job_ended() -> None:
    """A job lists a post-launch action only once it starts: booted, no action listed yet and
    the job still running is not verified (a must-succeed action may still come)."""
    from orchestrator.launcher import judge
    from orchestrator.views import LaunchView, ServerView

    launch = LaunchView(sid(0, 0), "LAUNCHED", "i-0123456789abcdef0")
    booted = ServerView(sid(0, 0), lifecycle_state="CUTTING_OVER", first_boot="SUCCEEDED")
    assert not judge(launch, booted, job_done=False).verified
    assert judge(launch, booted, job_done=True).verified
