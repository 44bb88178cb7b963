"""The report: JSON shape, summary counts, Markdown order and advice, CSV, safe atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import files
from orchestrator.outcome import Outcome, RunRecord, ServerResult
from orchestrator.report import (
    CSV_FIELDS,
    REPORT_SCHEMA,
    render_csv,
    render_json,
    render_markdown,
    summarize,
    write_report,
)

T0, T1 = "2025-03-01T10:00:00Z", "2025-03-01T10:30:00Z"


def make_record(**overrides: object) -> RunRecord:
    """A run of three applications: one all good, one blocked, one with a failure and a timeout."""
    servers = [
        ServerResult(
            "s-ok1",
            "app-good",
            name="web-1",
            outcome=Outcome.FINALIZED,
            lifecycle_state="CUTOVER",
            replication_state="DISCONNECTED",
            first_boot="SUCCEEDED",
            ec2_instance_id="i-0123",
            attempts=1,
            finalized_at=T0,
            converged_at=T1,
        ),
        ServerResult("s-ok2", "app-good", outcome=Outcome.ALREADY_CUTOVER, converged_at=T1),
        ServerResult(
            "s-blk",
            "app-blocked",
            name="db|primary",
            outcome=Outcome.BLOCKED,
            reason="first boot not SUCCEEDED (WAITING)",
            lifecycle_state="READY_FOR_CUTOVER",
        ),
        ServerResult(
            "s-fail",
            "app-mixed",
            outcome=Outcome.FAILED,
            reason="InternalServerError: boom",
            attempts=3,
            error_code="InternalServerError",
            error_message="boom, with a comma\nand a newline",
        ),
        ServerResult("s-slow", "app-mixed", outcome=Outcome.TIMED_OUT, finalized_at=T0),
    ]
    fields: dict[str, object] = {
        "wave": "wave-1",
        "dry_run": False,
        "started_at": T0,
        "finished_at": T1,
        "exit_code": 1,
        "interrupted": False,
        "config": {"concurrency": 16, "state_dir": Path(".mgn-cutover")},
        "servers": servers,
    }
    fields.update(overrides)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_summary_has_every_outcome_key() -> None:
    """summarize counts each outcome and lists every Outcome value, zeros included, plus total."""
    counts = summarize(make_record().servers)
    assert list(counts) == ["total", *(o.value for o in Outcome)]
    assert counts == {
        "total": 5,
        "finalized": 1,
        "already_cutover": 1,
        "would_finalize": 0,
        "blocked": 1,
        "failed": 1,
        "timed_out": 1,
        "not_attempted": 0,
        "unconfirmed": 0,
        "would_launch": 0,
        "reverted": 0,
        "accepted": 0,
    }
    assert summarize([])["total"] == 0


def test_json_schema_keys_and_order() -> None:
    """The JSON has the v1 keys in a stable order and servers sorted by application then server."""
    doc = json.loads(render_json(make_record()))
    assert list(doc) == [
        "schema",
        "wave",
        "dry_run",
        "interrupted",
        "started_at",
        "finished_at",
        "exit_code",
        "account_error",
        "config",
        "summary",
        "servers",
        # grown after v1, additively
        "applications",
        "run_id",
        "description",
        "stop_reason",
        "incomplete",
        "covered_applications",
        "run_exit_code",
        "endpoint_url",
        "rehearsal",
        "warnings",
    ]
    assert doc["schema"] == REPORT_SCHEMA
    assert doc["config"] == {"concurrency": 16, "state_dir": ".mgn-cutover"}
    assert [s["sourceServerID"] for s in doc["servers"]] == [
        "s-blk",
        "s-ok1",
        "s-ok2",
        "s-fail",
        "s-slow",
    ]
    first_ok = doc["servers"][1]
    assert list(first_ok) == [
        "sourceServerID",
        "applicationID",
        "name",
        "outcome",
        "reason",
        "lifecycle_state",
        "replication_state",
        "first_boot",
        "ec2InstanceID",
        "attempts",
        "error",
        "finalized_at",
        "converged_at",
        "application_name",
        "timeline",
        "launch_job_id",
        "archived_at",
        "accountID",
        "region",
    ]
    assert first_ok["error"] is None and first_ok["ec2InstanceID"] == "i-0123"
    assert doc["servers"][3]["error"] == {
        "code": "InternalServerError",
        "message": "boom, with a comma\nand a newline",
    }
    assert render_json(make_record()) == render_json(make_record())


def test_markdown_puts_problem_applications_first_with_advice() -> None:
    """Problem applications come first, with reasons and a what-to-do line per problem outcome."""
    text = render_markdown(make_record(interrupted=True))
    assert text.startswith("# mgn-cutover report: wave wave-1\n")
    assert "**INTERRUPTED**" in text and "DRY RUN" not in text
    assert "Exit code: **1**: something was blocked, failed, timed out" in text
    blocked = text.index("### app-blocked (needs attention)")
    mixed = text.index("### app-mixed (needs attention)")
    good = text.index("### app-good\n")
    assert blocked < mixed < good
    assert "first boot not SUCCEEDED (WAITING)" in text
    assert "db\\|primary" in text and "boom, with a comma and a newline" in text
    assert "- **blocked**: fix the cause in MGN" in text[blocked:mixed]
    assert "- **failed**: see the error" in text[mixed:good]
    assert "- **timed_out**: MGN accepted the finalize" in text[mixed:good]
    assert "What to do next" not in text[good:]
    assert "| timed_out | 1 |" in text


def test_markdown_dry_run_and_account_error() -> None:
    """A dry run says DRY RUN; an account error and exit code 4 are explained."""
    text = render_markdown(make_record(dry_run=True, exit_code=4, account_error="AccessDenied: no"))
    assert "**DRY RUN**" in text
    assert "Exit code: **4**: account or credential error" in text
    assert "Account error: AccessDenied: no" in text
    assert "go: a real run now would finalize" in render_markdown(
        make_record(dry_run=True, exit_code=0)
    )


def test_csv_parses_back_to_the_json_rows() -> None:
    """The CSV reads back with the csv module to the JSON server rows, error split in two."""
    record = make_record()
    rows = list(csv.DictReader(io.StringIO(render_csv(record), newline="")))
    assert rows and list(rows[0]) == list(CSV_FIELDS)
    expected = []
    for server in json.loads(render_json(record))["servers"]:
        error = server.pop("error") or {}
        server["error_code"], server["error_message"] = error.get("code"), error.get("message")
        server["wave"] = record.wave  # the CSV's own columns, at the end (issue 14)
        expected.append({k: "" if server[k] is None else str(server[k]) for k in CSV_FIELDS})
    assert rows == expected


def test_csv_defuses_spreadsheet_formulas() -> None:
    """A server name a spreadsheet would run as a formula gets a leading apostrophe."""
    record = make_record(servers=[ServerResult("s-1", "app-1", name="=HYPERLINK(1)")])
    row = next(csv.DictReader(io.StringIO(render_csv(record), newline="")))
    assert row["name"] == "'=HYPERLINK(1)"


def test_write_report_is_atomic_and_private_with_umask_0(tmp_path: Path) -> None:
    """write_report leaves exactly the four files, 0600, in 0700 folders (the wave's and the
    run's own), even with umask 0."""
    record = make_record()
    old = os.umask(0)
    try:
        paths = write_report(record, tmp_path / "reports")
        write_report(record, tmp_path / "reports")  # a rewrite replaces, leaving no temp files
    finally:
        os.umask(old)
    folder = paths.wave
    assert folder == (tmp_path / "reports" / "wave-1").resolve()
    assert paths.run.parent == folder / "runs"
    files = ["report.csv", "report.html", "report.json", "report.md"]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == files
    assert sorted(p.name for p in paths.run.iterdir()) == files
    assert (paths.run / "report.json").read_text() == render_json(record)
    assert stat.S_IMODE(paths.run.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "reports").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()} == {0o600}
    assert (folder / "report.json").read_text() == render_json(record)
    assert (folder / "report.csv").read_bytes() == render_csv(record).encode()


def _failing(parts: list[str]) -> Iterator[str]:
    yield from parts
    raise RuntimeError("a bug while rendering")


@pytest.mark.parametrize("fails", ["rendering", "fsync"])
def test_a_report_that_fails_midway_leaves_the_previous_files_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """The files are renamed over the old ones only once every one is on disk: a failure while
    rendering the last one, or a failed fsync, leaves every previous file as it was, no temp
    file and no open descriptor."""
    paths = [tmp_path / name for name in ("report.json", "report.md", "report.html")]
    for path in paths:
        path.write_text(f"old {path.name}")
    fds = len(os.listdir("/proc/self/fd"))
    last: list[str] = ["<html>", "half"]
    if fails == "fsync":
        synced: list[int] = []

        def fsync(fd: int) -> None:
            synced.append(fd)
            if len(synced) == 2:
                raise OSError(5, "Input/output error")

        monkeypatch.setattr(files.os, "fsync", fsync)
    rendered = [lambda: iter(["{}"]), lambda: iter(["# new"])]
    rendered.append((lambda: _failing(last)) if fails == "rendering" else (lambda: iter(last)))
    with pytest.raises(RuntimeError if fails == "rendering" else OSError):
        files.write_all(list(zip(paths, rendered, strict=True)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert [p.read_text() for p in paths] == [f"old {p.name}" for p in paths]
    assert len(os.listdir("/proc/self/fd")) == fds
    files.write_all(list(zip(paths, [lambda: iter(["{}"])] * 3, strict=True)))
    assert [p.read_text() for p in paths] == ["{}"] * 3


def test_write_report_tightens_an_existing_open_folder(tmp_path: Path) -> None:
    """An existing world-readable wave folder is made 0700 before the report is written."""
    folder = tmp_path / "wave-1"
    folder.mkdir()
    folder.chmod(0o755)
    write_report(make_record(), tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("wave", ["..", "../escape", "/tmp/x", "link"])
def test_write_report_refuses_paths_outside_report_dir(tmp_path: Path, wave: str) -> None:
    """A wave name or symlink resolving outside report_dir raises ValueError and writes nothing."""
    reports = tmp_path / "reports"
    reports.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (reports / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="wave"):
        write_report(make_record(wave=wave), reports)
    assert list(outside.iterdir()) == []


def test_a_dry_run_never_replaces_a_real_runs_wave_report(tmp_path: Path) -> None:
    """The wave's report keeps the latest real run; a dry run gets only its own folder, unless
    the wave has never really run."""
    reports = tmp_path / "reports"
    first_dry = write_report(make_record(dry_run=True, run_id="dry1"), reports)
    assert first_dry.wave is not None  # nothing real yet: the dry run is the wave's report
    real = write_report(make_record(run_id="real1"), reports)
    assert real.wave is not None
    later_dry = write_report(make_record(dry_run=True, run_id="dry2"), reports)
    assert later_dry.wave is None
    wave_doc = json.loads((reports / "wave-1" / "report.json").read_text())
    assert wave_doc["dry_run"] is False and wave_doc["run_id"] == "real1"
    dry_doc = json.loads((later_dry.run / "report.json").read_text())
    assert dry_doc["dry_run"] is True and dry_doc["run_id"] == "dry2"
    assert len(list((reports / "wave-1" / "runs").iterdir())) == 3
