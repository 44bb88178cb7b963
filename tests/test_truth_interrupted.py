"""After a signal, the report tells what MGN said (issue 21, point 8): a 200 answered during the
stop's grace is the server record, an interrupted run never reports `timed_out` before its
deadline, and an application half sent is flagged HALF CUT OVER.

Subprocess runs of the CLI against the emulator over HTTP, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import signal
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

pytestmark = pytest.mark.usefixtures("fake_credentials")


def _sigterm_when(emulator: Any, args: list[str], ready: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI, send SIGTERM once `ready()` holds, and return what it printed."""
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=cli_env(emulator.url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, "the run ended before the signal"
            assert time.monotonic() < deadline, "never ready for the signal"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _row(rep: dict[str, Any], server_id: str) -> dict[str, Any]:
    return next(s for s in rep["servers"] if s["sourceServerID"] == server_id)


def test_a_200_answered_during_the_grace_is_finalized_with_its_columns(
    emulator: Any, work_dir: Path
) -> None:
    """FinalizeCutover answered 200 during the stop's grace, reads lagging a minute and none
    after the 200: each server is `finalized` with CUTOVER/DISCONNECTED columns (MGN's own
    answer), not `timed_out` "MGN still shows CUTTING_OVER"."""
    ids = [sid(0, n) for n in range(3)]
    emulator.seed({"servers": [server(s, aid(0)) for s in ids]})
    plan = write_plan(work_dir, "w", {aid(0): ids})
    emulator.set_faults(
        latency_ms=800, fault_ops=frozenset({"FinalizeCutover"}), visibility_lag_s=60
    )
    out = _sigterm_when(
        emulator,
        run_args(plan, "w", work_dir, "--timeout", "1800"),
        lambda: emulator.calls("FinalizeCutover") == 3,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "w")
    assert rep["interrupted"] is True
    assert outcomes(rep) == dict.fromkeys(ids, "finalized")
    for s in ids:
        row = _row(rep, s)
        assert (row["lifecycle_state"], row["replication_state"]) == ("CUTOVER", "DISCONNECTED")
        assert row["finalized_at"] and row["converged_at"]
        assert emulator.server(s)["lifeCycle"]["state"] == "CUTOVER"
    assert emulator.calls("FinalizeCutover") == 3
    assert rep["applications"][0]["status"] == "converged"


def test_an_accepted_server_never_confirmed_is_not_timed_out_before_the_deadline(
    emulator: Any, work_dir: Path
) -> None:
    """An earlier run's accepted finalize (no 200 in this run) whose reads still show
    CUTTING_OVER, the run interrupted 30 minutes before its --timeout: the row says it was
    accepted and the run interrupted, never `timed_out`; nothing is sent again."""
    s = sid(0, 0)
    emulator.seed({"servers": [server(s, aid(0), stuck=True)]})
    plan = write_plan(work_dir, "w", {aid(0): [s]})
    first = mgn_cutover(run_args(plan, "w", work_dir, "--timeout", "0.5"), cli_env(emulator.url))
    assert first.returncode == 1, first.stderr[-3000:]
    assert outcomes(report(work_dir, "w")) == {s: "timed_out"}  # its deadline passed: true
    reads = emulator.calls("DescribeSourceServers")
    out = _sigterm_when(
        emulator,
        run_args(plan, "w", work_dir, "--timeout", "1800"),
        lambda: emulator.calls("DescribeSourceServers") >= reads + 3,  # pre-flight and polls
    )
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "w")
    row = _row(rep, s)
    assert row["outcome"] == "accepted", row
    assert row["lifecycle_state"] == "CUTTING_OVER"  # MGN's last word, and not converged
    assert "finalize accepted; run interrupted" in row["reason"]
    assert "before its --timeout" in row["reason"] and "timed out" not in row["outcome"]
    assert rep["summary"]["timed_out"] == 0 and rep["summary"]["accepted"] == 1
    assert emulator.calls("FinalizeCutover") == 1  # the first run's only
    assert rep["applications"][0]["status"] == "partially_cut_over"


def test_an_application_half_sent_is_flagged_half_cut_over(emulator: Any, work_dir: Path) -> None:
    """One server's FinalizeCutover accepted (200, reads lagging), its sibling never sent
    before SIGTERM: report.json says `partially_cut_over`, report.md and the console say
    HALF CUT OVER, not "not converged" like an application safely left alone."""
    ids = [sid(0, 0), sid(0, 1)]
    emulator.seed({"servers": [server(s, aid(0), stuck=(s == ids[0])) for s in ids]})
    plan = write_plan(work_dir, "w", {aid(0): ids})
    emulator.set_faults(
        latency_ms=1500, fault_ops=frozenset({"FinalizeCutover"}), visibility_lag_s=60
    )
    out = _sigterm_when(
        emulator,
        run_args(plan, "w", work_dir, "--concurrency", "1", "--timeout", "1800"),
        lambda: emulator.calls("FinalizeCutover") == 1,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "w")
    assert emulator.calls("FinalizeCutover") == 1
    got = outcomes(rep)
    assert got[ids[1]] == "not_attempted"
    assert got[ids[0]] in ("finalized", "accepted")  # its 200 came during the grace
    [app] = rep["applications"]
    assert app["status"] == "partially_cut_over", app
    md = (work_dir / "reports" / "w" / "report.md").read_text()
    assert "HALF CUT OVER" in md
    html = (work_dir / "reports" / "w" / "report.html").read_text()
    assert "HALF CUT OVER: act now" in html
    assert "HALF CUT OVER" in out.stdout + out.stderr
    done = [
        json.loads(line)
        for line in out.stderr.splitlines()
        if line.startswith("{") and '"application_done"' in line
    ]
    assert [d["status"] for d in done] == ["HALF CUT OVER"]
