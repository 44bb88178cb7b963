"""The row memo saves work and changes nothing: a report (and the journal's record) rendered
with rows prepared earlier is byte for byte the report rendered from scratch."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from orchestrator import report, rowmemo
from orchestrator.outcome import Outcome, RunRecord, ServerResult, record_json
from tests.runhelp import aid, cli_env, mgn_cutover, run_args, sid, write_plan

FILES = ("report.json", "report.md", "report.csv", "report.html")


def _row(a: int, n: int, **changes: Any) -> ServerResult:
    timeline: list[dict[str, str | None]] = [
        {"at": f"2026-11-28T23:00:0{n}.000Z", "event": "finalize_sent", "detail": None},
        {"at": f"2026-11-28T23:00:0{n}.200Z", "event": "finalize_accepted", "detail": None},
        {"at": f"2026-11-28T23:00:1{n}.000Z", "event": "converged", "detail": None},
    ]
    values: dict[str, Any] = {
        "source_server_id": sid(a, n),
        "application_id": aid(a),
        "application_name": f"app {a} <&> |",
        "name": f"host-{a}-{n}",
        "outcome": Outcome.FINALIZED,
        "lifecycle_state": "CUTOVER",
        "replication_state": "DISCONNECTED",
        "attempts": 1,
        "finalized_at": timeline[1]["at"],
        "converged_at": timeline[2]["at"],
        "account_id": "111122223333",
        "region": "us-east-1",
        "timeline": timeline,
    }
    return ServerResult(**{**values, **changes})


def _record(rows: list[ServerResult]) -> RunRecord:
    return RunRecord(
        wave="w",
        dry_run=False,
        started_at="2026-11-28T22:59:59.000Z",
        finished_at="2026-11-28T23:00:30.000Z",
        exit_code=1,
        interrupted=False,
        config={"region": "us-east-1", "state_dir": Path("/tmp/state")},
        servers=rows,
        run_id="r1",
    )


def _files(record: RunRecord, folder: Path) -> dict[str, bytes]:
    paths = report.write_report(record, folder)
    return {name: (paths.run / name).read_bytes() for name in FILES}


def test_a_report_from_prepared_rows_is_the_report_rendered_afresh(tmp_path: Path) -> None:
    """Rows prepared while the run waited, some of which changed afterwards (a timeout's
    reason, an archive event, a server not seen then): the four files and the journal's
    record are the same bytes with the memo as without it, and the memo did serve rows."""
    early = [_row(a, n) for a in range(3) for n in range(4)]
    late = list(early)
    late[1] = dataclasses.replace(
        early[1], outcome=Outcome.TIMED_OUT, reason="MGN showed CUTTING_OVER | at the end"
    )
    archived = {"at": "2026-11-28T23:00:20.000Z", "event": "archived", "detail": None}
    late[5] = dataclasses.replace(early[5], timeline=[*early[5].timeline, archived])
    late.append(_row(3, 0, application_name=None, error_code="X", error_message="bad <b>"))
    fresh = _files(_record(late), tmp_path / "fresh")
    fresh_record = record_json(_record(late))

    memo = rowmemo.RowMemo()
    with rowmemo.using(memo):
        report.prepare_rows(early, "w", "2026-11-28T22:59:59.000Z")
        prepared = memo.misses
        from_memo = _files(_record(late), tmp_path / "memo")
        memo_record = record_json(_record(late))
    assert from_memo == fresh
    assert memo_record == fresh_record
    assert memo.hits >= 7 * 10  # 10 unchanged rows, 7 pieces each (the document row twice)
    assert memo.misses - prepared >= 7 * 3  # the 3 changed or new rows, rendered at the end


def test_a_run_writes_the_report_that_report_renders_from_its_journal(
    emulator: Any, work_dir: Path
) -> None:
    """Through the CLI and the emulator: servers converge one by one while the run waits (a
    visibility lag), so the run prepares their rows as it goes; `report`, rendering the same
    record from the journal without any memo, writes the same four files byte for byte."""
    groups = {aid(a): [sid(a, n) for n in range(10)] for a in range(3)}
    emulator.seed_ready(groups.items())
    emulator.set_faults(visibility_lag_s=1.0)
    plan = write_plan(work_dir, "w", groups)
    env = cli_env(emulator.url)
    run = mgn_cutover(run_args(plan, "w", work_dir, "--finalize-rate", "15"), env)
    assert run.returncode == 0, run.stderr
    written = work_dir / "reports" / "w"
    kept = {name: (written / name).read_bytes() for name in FILES}
    shutil.rmtree(written)
    state = ["--state-dir", str(work_dir / "state"), "--report-dir", str(work_dir / "reports")]
    again = mgn_cutover(["report", "--wave", "w", *state], env)
    assert again.returncode == 0, again.stderr
    assert {name: (written / name).read_bytes() for name in FILES} == kept
    assert b'"outcome": "finalized"' in kept["report.json"]


def test_a_full_memo_keeps_no_more_rows_and_changes_nothing(tmp_path: Path) -> None:
    """Past `max_rows`, rows are rendered and not kept (a big wave's report is never held
    whole); the report is the same bytes."""
    rows = [_row(a, n) for a in range(2) for n in range(3)]
    fresh = _files(_record(rows), tmp_path / "fresh")
    memo = rowmemo.RowMemo(max_rows=4)
    with rowmemo.using(memo):
        report.prepare_rows(rows, "w", "2026-11-28T22:59:59.000Z")
        assert len(memo) == 4
        assert _files(_record(rows), tmp_path / "memo") == fresh
    assert len(memo) == 4
