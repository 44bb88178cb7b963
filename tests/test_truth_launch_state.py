"""What the launch keeps and shows: reverted rows show MGN's record after the revert, and a
journal whose approvals cannot be read stops the run (exit 5) instead of ending it silently.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.errors import JournalError
from orchestrator.gateway import Gateway
from orchestrator.journal import Journal
from orchestrator.mgn import ClientSettings, MgnClient
from orchestrator.plan import load_waves
from orchestrator.runner import RunState, run_wave
from tests.runhelp import aid, cli_env, mgn_cutover, report, run_args, sid, write_plan
from tests.test_night import FAST, NIGHT, ready

pytestmark = pytest.mark.usefixtures("fake_credentials")


def test_reverted_rows_show_mgn_s_state_after_the_revert(emulator: Any, work_dir: Path) -> None:
    """A failed first boot with --on-failure revert: each reverted row shows READY_FOR_CUTOVER
    (what MGN answered the revert with), not the CUTTING_OVER it showed before."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [ready(sid(0, 0), aid(0), bootFails=True), ready(sid(0, 1), aid(0))]})
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "night", groups)
    out = mgn_cutover(
        run_args(plan, "night", work_dir, *FAST, "--on-failure", "revert"), cli_env(emulator.url)
    )
    assert out.returncode == 1, out.stderr[-3000:]
    rows = report(work_dir, "night")["servers"]
    assert {r["outcome"] for r in rows} == {"reverted"}
    for row in rows:
        assert row["lifecycle_state"] == "READY_FOR_CUTOVER", row
        assert emulator.server(row["sourceServerID"])["lifeCycle"]["state"] == "READY_FOR_CUTOVER"


class _UnreadableApprovals(Journal):
    """A journal whose approvals cannot be read (the file locked by another process, say)."""

    reads = 0

    def approvals(self, run_id: str) -> dict[str, tuple[str, str]]:
        self.reads += 1
        raise JournalError(f"journal {self.path}: database is locked")


async def test_approvals_that_cannot_be_read_stop_the_run_with_exit_5(
    emulator: Any, work_dir: Path
) -> None:
    """--require-approval while every read of the approvals fails: the launcher retries on the
    next ticks, then stops the run for its local state (exit 5), never ending silently."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [ready(s, aid(0)) for s in groups[aid(0)]]})
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "w", groups)
    Journal.open(work_dir / "state", "w").close()
    path = work_dir / "state" / "w" / "journal.sqlite3"
    journal = _UnreadableApprovals(sqlite3.connect(path, isolation_level=None), path, "w")
    wave = load_waves([plan]).waves[0]
    settings = Config(
        region="us-east-1",
        endpoint_url=emulator.url,
        poll_interval_s=0.05,
        describe_rate=200,
        launch=True,
        require_approval=True,
        reconcile_timeout_s=20,
    )
    state = RunState(wave=wave.name, dry_run=False)
    async with MgnClient(ClientSettings(region="us-east-1", endpoint_url=emulator.url)) as c:
        record = await run_wave(
            wave, settings, Gateway(c, settings, stop=state.stop), journal, state
        )
    journal.close()
    assert journal.reads >= 3
    assert record.exit_code == 5
    assert record.stop_reason == "local_state"
    assert emulator.calls("FinalizeCutover") == 0
