"""`report --run ID` renders that run where it lives (issue 21, point 10): its own `runs/`
folder, never the wave's `report_dir/<wave>/report.*`.

Subprocess runs and `report` against the emulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, mgn_cutover, report, run_args, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")


def test_report_of_an_old_run_leaves_the_waves_report_alone(emulator: Any, work_dir: Path) -> None:
    """After a timed-out run and a later one that finalizes, `report --run FIRST` writes the
    first run's folder and prints its path; the wave's report files stay the later run's."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0), stuck=True)]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    env = cli_env(emulator.url)
    first = mgn_cutover(run_args(plan, "w", work_dir, "--timeout", "0.5"), env)
    assert first.returncode == 1, first.stderr[-3000:]
    old = report(work_dir, "w")["run_id"]
    emulator.seed({"servers": [server(sid(0, 0), aid(0), state="CUTOVER")]})
    second = mgn_cutover(run_args(plan, "w", work_dir), env)
    assert second.returncode == 0, second.stderr[-3000:]
    wave = work_dir / "reports" / "w"
    before = {p.name: p.read_bytes() for p in wave.glob("report.*")}
    assert len(before) == 4
    [folder] = [p for p in (wave / "runs").iterdir() if p.name.endswith(old)]
    (folder / "report.md").unlink()
    out = mgn_cutover(
        [
            "report", "--wave", "w", "--run", old[:8],
            "--state-dir", str(work_dir / "state"), "--report-dir", str(work_dir / "reports"),
        ],
        env,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip() == str(folder / "report.md")
    assert (folder / "report.md").is_file()
    assert {p.name: p.read_bytes() for p in wave.glob("report.*")} == before
    assert report(work_dir, "w")["run_id"] != old
