"""An approval belongs to one night (issue 21, point 4): `approve` names the run waiting for the
application, is refused (exit 2, nothing recorded) when no live run waits, and a run reads only
its own approvals.

Subprocess runs of `run --launch --require-approval` and `approve` against the emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.journal import Journal
from orchestrator.state import endpoint_scope
from tests.runhelp import aid, cli_env, mgn_cutover, outcomes, report, run_args
from tests.test_night import FAST, night

pytestmark = pytest.mark.usefixtures("fake_credentials")


def _approve(plan: Path, work: Path, env: dict[str, str], app: str) -> Any:
    args = ["approve", str(plan), "--wave", "night", "--application", app, "--by", "alice"]
    return mgn_cutover([*args, "--state-dir", str(work / "state")], env)


def _approvals(work: Path, url: str, run_id: str) -> dict[str, tuple[str, str]]:
    with Journal.open(work / "state" / endpoint_scope(url), "night") as journal:
        return journal.approvals(run_id)


def _waiting_run(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A run started and read until it waits for its first approval; returns it and its ID."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        event = json.loads(line)
        if event.get("event") == "approval_awaited":
            return proc, str(event["run_id"])
    raise AssertionError(f"the run ended without waiting: exit {proc.wait()}")


def test_an_approval_after_the_run_gave_up_is_refused_and_never_carried(
    emulator: Any, work_dir: Path
) -> None:
    """Once a run stopped waiting (approve_timeout_s), `approve` exits 2 recording nothing,
    and the next night's --require-approval still waits instead of finalizing at once."""
    plan = night(emulator, work_dir, apps=1, per_app=1)
    config = work_dir / "c.yaml"
    config.write_text("approve_timeout_s: 0.5\n")
    env = cli_env(emulator.url)
    args = run_args(plan, "night", work_dir, *FAST, "--require-approval", "--config", str(config))
    first = mgn_cutover(args, env)
    assert first.returncode == 1, first.stderr[-3000:]
    late = _approve(plan, work_dir, env, aid(0))
    assert late.returncode == 2, late.stdout + late.stderr
    assert "stopped waiting" in late.stderr and "nothing recorded" in late.stderr
    second = mgn_cutover(args, env)
    assert second.returncode == 1, second.stderr[-3000:]
    row = report(work_dir, "night")["servers"][0]
    assert row["outcome"] == "not_attempted" and "not approved" in row["reason"]
    assert not any(e["event"] == "approved" for e in row["timeline"])
    assert emulator.calls("FinalizeCutover") == 0


def test_approve_names_the_waiting_run_and_that_run_alone_reads_it(
    emulator: Any, work_dir: Path
) -> None:
    """`approve` while a run waits records the approval for that run (printed and journaled
    under its ID); the run finalizes the application."""
    plan = night(emulator, work_dir, apps=1, per_app=2)
    env = cli_env(emulator.url)
    proc, run_id = _waiting_run(run_args(plan, "night", work_dir, *FAST, "--require-approval"), env)
    with proc:
        given = _approve(plan, work_dir, env, aid(0))
        assert given.returncode == 0, given.stderr
        assert "approved by alice at" in given.stdout and f"for run {run_id}" in given.stdout
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert set(outcomes(report(work_dir, "night")).values()) == {"finalized"}
    assert set(_approvals(work_dir, emulator.url, run_id)) == {aid(0)}
    assert _approvals(work_dir, emulator.url, "another-run") == {}


def test_approve_for_a_killed_run_is_refused(emulator: Any, work_dir: Path) -> None:
    """A run killed while it waited holds no lock: `approve` exits 2 and records nothing."""
    plan = night(emulator, work_dir, apps=1, per_app=1)
    env = cli_env(emulator.url)
    proc, run_id = _waiting_run(run_args(plan, "night", work_dir, *FAST, "--require-approval"), env)
    with proc:
        proc.kill()
        proc.wait(timeout=30)
    out = _approve(plan, work_dir, env, aid(0))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not running any more" in out.stderr
    assert _approvals(work_dir, emulator.url, run_id) == {}


def test_approve_before_any_run_waits_is_refused(emulator: Any, work_dir: Path) -> None:
    """With no run ever waiting (no journal yet), `approve` exits 2 and creates nothing."""
    plan = night(emulator, work_dir, apps=1, per_app=1)
    out = _approve(plan, work_dir, cli_env(emulator.url), aid(0))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no run is waiting" in out.stderr
    assert not (work_dir / "state").exists() or not any((work_dir / "state").rglob("*.sqlite3"))
    assert emulator.calls("StartCutover") == 0
