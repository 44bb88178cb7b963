"""A wave's report: JSON for machines, Markdown for people, CSV for spreadsheets.

`write_report` puts all three in `<report_dir>/<wave>/` (folder 0700, files 0600), each replaced
atomically so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.files import ensure_private_dir, fsync_dir, wave_dir
from orchestrator.outcome import (
    CONVERGED_OUTCOMES,
    EXIT_MEANINGS,
    Outcome,
    RunRecord,
    ServerResult,
    exit_meaning,
)
from orchestrator.report_html import render_html

__all__ = ["EXIT_MEANINGS", "exit_meaning", "render_json", "write_report"]

REPORT_SCHEMA = "mgn-cutover/report/v1"

# Outcomes that need no action; any other outcome makes its application a problem.
OK_OUTCOMES = frozenset({Outcome.FINALIZED, Outcome.ALREADY_CUTOVER, Outcome.WOULD_FINALIZE})
# Outcomes that need no action; any other outcome makes its application a problem.


NEXT_STEPS = {
    Outcome.BLOCKED: (
        "fix the cause in MGN (e.g. first boot, lifecycle or replication state) or drop the "
        "application from the wave, then rerun: the journal makes reruns safe."
    ),
    Outcome.FAILED: "see the error, check the server in the MGN console, then rerun.",
    Outcome.TIMED_OUT: (
        "MGN accepted the finalize but has not shown CUTOVER/DISCONNECTED yet; rerun later: "
        "the rerun only polls, it never finalizes these servers again."
    ),
    Outcome.NOT_ATTEMPTED: "rerun the wave.",
    Outcome.UNCONFIRMED: (
        "MGN has not shown whether our FinalizeCutover went through; rerun: it is sent again "
        "only if MGN still shows CUTTING_OVER, otherwise only polled."
    ),
}

SERVER_FIELDS = (
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
)
CSV_FIELDS = tuple(
    name
    for f in SERVER_FIELDS
    for name in (("error_code", "error_message") if f == "error" else (f,))
)
# Spreadsheets run cells that start with these as formulas; names come from MGN tags.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def summarize(servers: Sequence[ServerResult]) -> dict[str, int]:
    """The total and a count for every outcome, zeros included, in Outcome order.

    Raises ValueError if a server's outcome is not an Outcome value.
    """
    counts = {"total": len(servers)} | {o.value: 0 for o in Outcome}
    for server in servers:
        counts[Outcome(server.outcome).value] += 1
    return counts


def render_json(record: RunRecord) -> str:
    """The report as pretty-printed JSON with a stable key order; objects in config as str."""
    doc = {
        "schema": REPORT_SCHEMA,
        "wave": record.wave,
        "dry_run": record.dry_run,
        "interrupted": record.interrupted,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "exit_code": record.exit_code,
        "account_error": record.account_error,
        "config": record.config,
        "summary": summarize(record.servers),
        "servers": [_server_json(s) for s in _sorted(record.servers)],
        # Grown after v1 (additive): scripts may ignore them.
        "applications": application_summaries(record.servers),
        "run_id": record.run_id,
        "description": record.description,
        "stop_reason": record.stop_reason,
        "incomplete": record.incomplete,
        "covered_applications": record.covered_applications,
        "run_exit_code": record.run_exit_code,
        "endpoint_url": record.config.get("endpoint_url"),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def application_summaries(servers: Sequence[ServerResult]) -> list[dict[str, Any]]:
    """One entry per application: its name, servers, how many converged, and a status:
    `converged`, `partially_cut_over` (some converged, some not: needs attention now),
    `blocked`, `would_finalize` (dry run) or `not_converged`."""
    out = []
    for app_id, rows in _by_application(servers).items():
        converged = sum(Outcome(s.outcome) in CONVERGED_OUTCOMES for s in rows)
        outcomes = {Outcome(s.outcome) for s in rows}
        if converged == len(rows):
            status = "converged"
        elif converged:
            status = "partially_cut_over"
        elif outcomes == {Outcome.BLOCKED}:
            status = "blocked"
        elif outcomes <= {Outcome.WOULD_FINALIZE}:
            status = "would_finalize"
        else:
            status = "not_converged"
        name = next((s.application_name for s in rows if s.application_name), None)
        out.append(
            {
                "applicationID": app_id,
                "name": name,
                "servers": len(rows),
                "converged": converged,
                "status": status,
            }
        )
    return out


def render_markdown(record: RunRecord) -> str:
    """The report for people: status, summary, then each application, problems first."""
    lines = [f"# mgn-cutover report: wave {_md(record.wave)}", ""]
    if record.dry_run:
        lines += ["**DRY RUN**: no FinalizeCutover was sent; outcomes say what a run would do.", ""]
    if record.interrupted:
        lines += ["**INTERRUPTED**: the run stopped before every server had an outcome.", ""]
    if record.incomplete:
        lines += ["**INCOMPLETE**: an internal error ended the run early; see the log.", ""]
    if record.covered_applications:
        covered = ", ".join(_md(a) for a in record.covered_applications)
        lines += [
            f"**PARTIAL RUN** of {covered} (exit {record.run_exit_code}); the other "
            "applications show their last known outcome.",
            "",
        ]
    lines += [
        f"- Started: {_md(record.started_at)}",
        f"- Finished: {_md(record.finished_at)}",
        f"- Exit code: **{record.exit_code}**: {exit_meaning(record.exit_code, record.dry_run)}",
    ]
    if record.account_error:
        lines.append(
            f"- Account error: {_md(record.account_error)}. Fix the credentials or permissions "
            "for this account, then rerun."
        )
    lines += ["", "## Summary", "", "| Outcome | Servers |", "| --- | ---: |"]
    lines += [f"| {name} | {count} |" for name, count in summarize(record.servers).items()]
    lines += ["", "## Applications"]
    apps = _by_application(record.servers)
    if not apps:
        lines += ["", "No servers in this run."]
    for app_id, servers in sorted(apps.items(), key=lambda kv: (not _is_problem(kv[1]), kv[0])):
        lines += ["", *_application_section(app_id, servers)]
    return "\n".join(lines) + "\n"


def render_csv(record: RunRecord) -> str:
    """One row per server under a header row, for spreadsheets.

    Text that a spreadsheet would run as a formula (starting with =, +, -, @) gets a leading
    apostrophe; every other cell reads back exactly, None as an empty cell.
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for server in _sorted(record.servers):
        writer.writerow([_csv_cell(v) for v in _server_flat(server)])
    return buf.getvalue()


@dataclass(frozen=True)
class ReportPaths:
    """Where one run's report went: its own folder, and the wave's if it became the wave's."""

    run: Path
    wave: Path | None


def run_folder_name(record: RunRecord) -> str:
    """`<started, compact UTC>-<run id>`: runs sort by time in a listing."""
    started = "".join(c for c in record.started_at if c.isalnum())
    return f"{started}-{record.run_id or 'unknown'}"


def write_report(record: RunRecord, report_dir: Path) -> ReportPaths:
    """Write the run's report (JSON, Markdown, CSV, HTML) to
    `<report_dir>/<wave>/runs/<started>-<run id>/`, and to `<report_dir>/<wave>/` when it is
    the wave's record: a real run always (a subset run's record is merged over the whole wave),
    a dry run only while the wave has no real run's report there.

    Raises ValueError if the wave name would resolve outside report_dir; OSError if a file
    cannot be written (the previous report file then stays whole).
    """
    folder = wave_dir(report_dir, record.wave)
    doc = render_json(record)
    rendered = {
        "report.json": doc,
        "report.md": render_markdown(record),
        "report.csv": render_csv(record),
        "report.html": render_html(json.loads(doc)),
    }
    run = folder / "runs" / run_folder_name(record)
    targets = [run]
    wave_level = not record.dry_run or not _has_real_report(folder)
    if wave_level:
        targets.append(folder)
    for target in targets:
        ensure_private_dir(target)
        for name, text in rendered.items():
            _write_atomic(target / name, text)
        fsync_dir(target)
    return ReportPaths(run, folder if wave_level else None)


def _has_real_report(folder: Path) -> bool:
    """Whether the wave's report there is from a real run (an unreadable one counts as real:
    a dry run never replaces what it cannot read)."""
    path = folder / "report.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("dry_run") is not True
    except (OSError, ValueError, AttributeError):
        return True


def _sorted(servers: Sequence[ServerResult]) -> list[ServerResult]:
    return sorted(servers, key=lambda s: (s.application_id, s.source_server_id))


def _by_application(servers: Sequence[ServerResult]) -> dict[str, list[ServerResult]]:
    apps: dict[str, list[ServerResult]] = {}
    for server in _sorted(servers):
        apps.setdefault(server.application_id, []).append(server)
    return apps


def _is_problem(servers: Sequence[ServerResult]) -> bool:
    return any(Outcome(s.outcome) not in OK_OUTCOMES for s in servers)


def _server_json(s: ServerResult) -> dict[str, Any]:
    has_error = s.error_code is not None or s.error_message is not None
    return {
        "sourceServerID": s.source_server_id,
        "applicationID": s.application_id,
        "name": s.name,
        "outcome": Outcome(s.outcome).value,
        "reason": s.reason,
        "lifecycle_state": s.lifecycle_state,
        "replication_state": s.replication_state,
        "first_boot": s.first_boot,
        "ec2InstanceID": s.ec2_instance_id,
        "attempts": s.attempts,
        "error": {"code": s.error_code, "message": s.error_message} if has_error else None,
        "finalized_at": s.finalized_at,
        "converged_at": s.converged_at,
        "application_name": s.application_name,
        "timeline": s.timeline,
        "accountID": s.account_id,
        "region": s.region,
    }


def _server_flat(s: ServerResult) -> list[Any]:
    """The JSON server row with `error` split into two columns, in CSV_FIELDS order."""
    row = _server_json(s)
    error = row.pop("error") or {}
    row["error_code"], row["error_message"] = error.get("code"), error.get("message")
    return [row[name] for name in CSV_FIELDS]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_PREFIXES) else text


def _application_section(app_id: str, servers: Sequence[ServerResult]) -> list[str]:
    problem = _is_problem(servers)
    lines = [
        f"### {_md(app_id)}" + (" (needs attention)" if problem else ""),
        "",
        "| Server | Name | Outcome | Reason | Lifecycle | Replication | Error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in servers:
        error = ": ".join(x for x in (s.error_code, s.error_message) if x) or None
        cells = (
            s.source_server_id,
            s.name,
            Outcome(s.outcome).value,
            s.reason,
            s.lifecycle_state,
            s.replication_state,
            error,
        )
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    present = {Outcome(s.outcome) for s in servers}
    steps = [f"- **{o.value}**: {text}" for o, text in NEXT_STEPS.items() if o in present]
    if steps:
        lines += ["", "What to do next:", "", *steps]
    return lines


def _md(value: str | None) -> str:
    """Text safe inside a Markdown table cell or heading; None as a dash."""
    if value is None or value == "":
        return "-"
    text = " ".join(str(value).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _write_atomic(path: Path, text: str) -> None:
    """Write via a 0600 temp file in the same folder, fsync, then rename over `path`."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
