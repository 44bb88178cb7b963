"""Issue 14 from the outside: `status` on its own, the report's first page, rehearsals that never
reach AWS, and errors a person can act on; each drives `mgn-cutover` as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runhelp import aid, cli_env, mgn_cutover, report, run_args, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

OTHER_ACCOUNT = "222233334444"


def _plan_in_account(folder: Path, wave: str, apps: dict[str, list[str]], account: str) -> Path:
    path = write_plan(folder, wave, apps)
    doc = yaml.safe_load(path.read_text())
    doc["accountID"] = account
    doc["description"] = "Payments stack"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_status_with_the_plan_works_during_a_first_run(emulator: Any, work_dir: Path) -> None:
    """While a wave's first run waits for MGN, `status PLAN --wave W` reads the plan's account,
    names applications, shows journal and MGN state and what is pending since when."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {"servers": [server(s, a, accountID=OTHER_ACCOUNT) for a, ids in groups.items() for s in ids]}
    )
    emulator.set_faults(stuck=frozenset({sid(0, 1)}))
    plan = _plan_in_account(work_dir, "w", groups, OTHER_ACCOUNT)
    env = cli_env(emulator.url)
    args = run_args(plan, "w", work_dir)
    args[args.index("--timeout") + 1] = "60"
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = ["--state-dir", str(work_dir / "state")]
        deadline = time.monotonic() + 30
        while True:
            out = mgn_cutover(["status", str(plan), "--wave", "w", *state], env)
            if "finalize accepted since" in out.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert run.poll() is None, "the run should still be waiting for the stuck server"
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("wave w: a run is in progress (pid ")
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("s-")}
    assert rows[sid(0, 0)][0] == "app0" and rows[sid(1, 0)][0] == "app1"
    assert "not found" not in out.stdout  # the plan's account was used
    assert rows[sid(0, 0)][-2:] == ["CUTOVER", "DISCONNECTED"]
    assert rows[sid(0, 1)][2] == "accepted" and rows[sid(0, 1)][-2] == "CUTTING_OVER"
    pending = [line for line in lines if line.startswith("  s-")]
    assert len(pending) == 1 and pending[0].split()[:2] == [sid(0, 1), "app0"]
    assert "since 20" in pending[0]
    # Without the plan (compatibility) status still answers from the journal.
    old = mgn_cutover(["status", "--wave", "w", *state], env)
    assert old.returncode == 0 and sid(0, 1) in old.stdout


def test_report_first_page_is_for_the_manager(emulator: Any, work_dir: Path) -> None:
    """report.md opens with the description, account, duration, one row per application (a half
    cut over one flagged), then problem servers with what to do; names everywhere; the CSV
    gains wave and application_name at the end; an emulator run says it is a rehearsal."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0), accountID=OTHER_ACCOUNT),
                server(sid(0, 1), aid(0), accountID=OTHER_ACCOUNT),
                server(sid(1, 0), aid(1), accountID=OTHER_ACCOUNT),
            ]
        }
    )
    emulator.set_faults(stuck=frozenset({sid(0, 1)}))
    plan = _plan_in_account(work_dir, "w", groups, OTHER_ACCOUNT)
    args = run_args(plan, "w", work_dir)
    args[args.index("--timeout") + 1] = "1"
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-2000:]
    md = (work_dir / "reports" / "w" / "report.md").read_text()
    first_page = md.split("## Summary")[0]
    assert "**REHEARSAL**" in first_page and emulator.url in first_page
    assert "Payments stack" in first_page and f"account {OTHER_ACCOUNT}" in first_page
    assert "finished:" in first_page and "s)" in first_page  # the run's duration
    assert f"| app0 | {aid(0)} | 1 of 2 | **HALF CUT OVER" in first_page
    assert f"| app1 | {aid(1)} | 1 of 1 | converged |" in first_page
    problems = first_page.split("## Problem servers")[1]
    assert sid(0, 1) in problems and f"app0 ({aid(0)})" in problems and "rerun later" in problems
    assert md.index("## Applications") < md.index("## Problem servers") < md.index("## Summary")
    assert f"### app0 ({aid(0)})" in md
    rep = report(work_dir, "w")
    assert rep["endpoint_url"] == emulator.url and rep["rehearsal"] is True
    [half] = [a for a in rep["applications"] if a["status"] == "partially_cut_over"]
    assert half["name"] == "app0"
    rows = list(csv.reader(io.StringIO((work_dir / "reports" / "w" / "report.csv").read_text())))
    assert rows[0][-2:] == ["wave", "application_name"] and rows[0][0] == "sourceServerID"
    assert {tuple(r[-2:]) for r in rows[1:]} == {("w", "app0"), ("w", "app1")}
    html = (work_dir / "reports" / "w" / "report.html").read_text()
    assert "REHEARSAL" in html


def test_plan_table_and_json_name_applications(emulator: Any, work_dir: Path) -> None:
    """`plan` shows the plan's application names next to their IDs, in the table and JSON."""
    groups = {aid(0): [sid(0, 0)]}
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", groups)
    env = cli_env(emulator.url)
    table = mgn_cutover(["plan", str(plan), "--wave", "w"], env)
    assert table.returncode == 0, table.stderr
    assert f"app0 ({aid(0)})" in table.stdout
    doc = mgn_cutover(["plan", str(plan), "--wave", "w", "--output", "json"], env)
    assert json.loads(doc.stdout)["servers"][0]["application_name"] == "app0"
