"""A wave's report: JSON for machines, Markdown for people, CSV for spreadsheets.

`write_report` puts all three in `<report_dir>/<wave>/` (folder 0700, files 0600), each replaced
atomically so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator import rowmemo
from orchestrator.files import ensure_private_dir, fsync_dir, link_atomic, wave_dir, write_all
from orchestrator.outcome import (
    CONVERGED_OUTCOMES,
    EXIT_MEANINGS,
    Outcome,
    RunRecord,
    ServerResult,
    exit_meaning,
    record_row_json,
)
from orchestrator.report_html import html_parts, prepare_html_rows

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
    Outcome.ACCEPTED: (
        "MGN accepted the finalize, then the run was stopped before its --timeout and before "
        "MGN showed CUTOVER/DISCONNECTED; rerun: it only polls, it never finalizes these "
        "servers again."
    ),
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
CSV_FIELDS = (
    *(
        name
        for f in SERVER_FIELDS
        for name in (("error_code", "error_message") if f == "error" else (f,))
    ),
    # Grown after v1, at the end so scripts reading columns by position keep working.
    "wave",
    "application_name",
)
# Spreadsheets run cells that start with these as formulas; names come from MGN tags.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def summarize(servers: Sequence[ServerResult]) -> dict[str, int]:
    """The total and a count for every outcome, zeros included, in Outcome order.

    Raises ValueError if a server's outcome is not an Outcome value.
    """
    counts = {"total": len(servers)} | {o.value: 0 for o in Outcome}
    for server in servers:
        counts[_outcome(server).value] += 1
    return counts


def render_json(record: RunRecord) -> str:
    """The report as JSON with a stable key order; objects in config as str."""
    return "".join(_json_parts(report_document(record)))


def _json_parts(doc: dict[str, Any]) -> Iterator[str]:
    """The document in pieces, never held whole: each top-level field on its own line, each
    element of a list of objects (servers, applications) on its own line. Readable and
    greppable, and each piece comes from json's C encoder (`indent` would use the pure-Python
    one: ~4x the CPU for thousands of servers)."""
    yield "{"
    for n, (key, value) in enumerate(doc.items()):
        yield f"{',' if n else ''}\n  {json.dumps(key, ensure_ascii=False)}: "
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            yield "["
            for i, item in enumerate(value):
                yield f"{',' if i else ''}\n    {_json_line(item)}"
            yield "\n  ]"
        else:
            yield _compact(value)
    yield "\n}\n"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


def _json_line(item: dict[str, Any]) -> str:
    return rowmemo.of_document_row("json", item, lambda: _compact(item))


def _document_row(s: ServerResult) -> dict[str, Any]:
    """The server's report.json entry (`_server_json`), kept in the row memo if any."""
    return rowmemo.document_row(s, lambda: _server_json(s))


def prepare_rows(rows: Sequence[ServerResult], wave: str, started_at: str) -> None:
    """Render every piece of these rows the report and the journal's record will need into
    the current memo (`rowmemo`), exactly as writing them would: the run calls this for
    servers that are done while it waits for the others. Nothing without a memo."""
    if rowmemo.current() is None:
        return
    docs = [_document_row(s) for s in rows]
    for s, doc in zip(rows, docs, strict=True):
        _json_line(doc)
        _csv_row(s, wave)
        _md_row(s)
        record_row_json(s)
    prepare_html_rows(docs, started_at)


def report_document(record: RunRecord) -> dict[str, Any]:
    """report.json as a dict (what render_json writes, and what the HTML page is drawn from)."""
    return {
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
        "servers": [_document_row(s) for s in _sorted(record.servers)],
        # Grown after v1 (additive): scripts may ignore them.
        "applications": application_summaries(record.servers),
        "run_id": record.run_id,
        "description": record.description,
        "stop_reason": record.stop_reason,
        "incomplete": record.incomplete,
        "covered_applications": record.covered_applications,
        "run_exit_code": record.run_exit_code,
        "endpoint_url": record.config.get("endpoint_url"),
        "rehearsal": rehearsal_endpoint(record) is not None,
        "warnings": list(record.warnings),
    }


def application_summaries(servers: Sequence[ServerResult]) -> list[dict[str, Any]]:
    """One entry per application: its name, servers, how many converged, and a status:
    `converged`, `partially_cut_over` (a server cut over or its finalize accepted, another not
    converged: needs attention now), `blocked`, `would_finalize` (dry run) or `not_converged`."""
    out = []
    for app_id, rows in _by_application(servers).items():
        converged = sum(_outcome(s) in CONVERGED_OUTCOMES for s in rows)
        outcomes = {_outcome(s) for s in rows}
        if converged == len(rows):
            status = "converged"
        elif converged or any(_cut_over(s) for s in rows):
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


def _cut_over(s: ServerResult) -> bool:
    """Whether MGN accepted a finalize of the server or shows it CUTOVER (past the point of no
    return), converged or not."""
    return s.lifecycle_state == "CUTOVER" or any(
        e.get("event") == "finalize_accepted" for e in s.timeline
    )


def render_markdown(record: RunRecord) -> str:
    """The report for people. Its first page is for the manager: the wave, where and how long,
    one row per application (a half cut over one flagged loudly), then the problem servers and
    what to do; the outcome counts and every server by application follow."""
    lines = [f"# mgn-cutover report: wave {_md(record.wave)}", ""]
    lines += _banners(record)
    if record.description:
        lines += [f"**{_md(record.description)}**", ""]
    config = record.config
    where = ", ".join(
        f"{label} {_md(str(config.get(key)))}"
        for label, key in (("account", "account_id"), ("region", "region"))
        if config.get(key)
    )
    lines += [
        f"- Where: {where or 'account and region from the AWS profile'}",
        f"- Started: {_md(record.started_at)}; finished: {_md(record.finished_at)} "
        f"({_duration(record.started_at, record.finished_at)})",
        f"- Exit code: **{record.exit_code}**: {exit_meaning(record.exit_code, record.dry_run)}",
    ]
    if record.run_id:
        lines.append(f"- Run: {_md(record.run_id)}")
    if record.account_error:
        lines.append(
            f"- Account error: {_md(record.account_error)}. Fix the credentials or permissions "
            "for this account, then rerun."
        )
    lines += ["", *_applications_table(record.servers), "", *_problems_table(record.servers)]
    lines += ["", "## Summary", "", "| Outcome | Servers |", "| --- | ---: |"]
    lines += [f"| {name} | {count} |" for name, count in summarize(record.servers).items()]
    lines += night_section(record.servers)
    lines += ["", "## Servers by application"]
    apps = _by_application(record.servers)
    if not apps:
        lines += ["", "No servers in this run."]
    for app_id, servers in sorted(apps.items(), key=lambda kv: (not _is_problem(kv[1]), kv[0])):
        lines += ["", *_application_section(app_id, servers)]
    return "\n".join(lines) + "\n"


def rehearsal_endpoint(record: RunRecord) -> str | None:
    """The MGN endpoint when it is not real AWS (an emulator): the report is a rehearsal."""
    url = record.config.get("endpoint_url")
    if not isinstance(url, str) or not url:
        return None
    host = (urlsplit(url).hostname or "").lower()
    return None if host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")) else url


def _banners(record: RunRecord) -> list[str]:
    lines: list[str] = []
    rehearsal = rehearsal_endpoint(record)
    if rehearsal:
        lines += [
            f"> **REHEARSAL**: MGN was an emulator at `{rehearsal}`; nothing in this report "
            "happened in AWS.",
            "",
        ]
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
    for warning in record.warnings:
        lines += [f"**WARNING**: {_md(warning)}", ""]
    return lines


def _duration(started: str, finished: str) -> str:
    try:
        seconds = int(
            (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        )
    except (TypeError, ValueError):
        return "duration unknown"
    hours, rest = divmod(max(seconds, 0), 3600)
    return (
        f"{hours}h {rest // 60:02d}m {rest % 60:02d}s"
        if hours
        else f"{rest // 60}m {rest % 60:02d}s"
    )


_STATUS_WORDS = {
    "converged": "converged",
    "partially_cut_over": "**HALF CUT OVER: act now** (some servers cut over, some not)",
    "blocked": "blocked: nothing sent",
    "would_finalize": "would finalize (dry run)",
    "not_converged": "not converged",
}


def _applications_table(servers: Sequence[ServerResult]) -> list[str]:
    apps = application_summaries(servers)
    order = {"partially_cut_over": 0, "not_converged": 1, "blocked": 2}
    apps.sort(key=lambda a: (order.get(a["status"], 3), a["name"] or "", a["applicationID"]))
    lines = [
        "## Applications",
        "",
        "| Application | ID | Converged | Status |",
        "| --- | --- | ---: | --- |",
    ]
    for app in apps:
        lines.append(
            f"| {_md(app['name'])} | {_md(app['applicationID'])} | "
            f"{app['converged']} of {app['servers']} | {_STATUS_WORDS[app['status']]} |"
        )
    if not apps:
        lines.append("| - | - | 0 of 0 | no servers |")
    return lines


def _problems_table(servers: Sequence[ServerResult]) -> list[str]:
    problems = [s for s in _sorted(servers) if _outcome(s) not in OK_OUTCOMES]
    if not problems:
        return ["## Problem servers", "", "None: every server converged."]
    lines = [
        "## Problem servers",
        "",
        "| Server | Application | Outcome | Reason | What to do |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in problems:
        outcome = _outcome(s)
        app = f"{s.application_name} ({s.application_id})" if s.application_name else None
        cells = (
            s.source_server_id,
            app or s.application_id,
            outcome.value,
            s.reason,
            NEXT_STEPS.get(outcome),
        )
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return lines


# The night's steps in order, as the ledger names them on each server's timeline.
NIGHT_STEPS = (
    ("launch_requested", "launch requested"),
    ("launched", "launched"),
    ("first_boot", "first boot"),
    ("verified", "verified"),
    ("approved", "approved"),
    ("finalize_sent", "finalize sent"),
    ("converged", "converged"),
    ("archived", "archived"),
    ("reverted", "reverted"),
)


def night_section(servers: Sequence[ServerResult]) -> list[str]:
    """`run --launch`: each application's critical path (first launch to last convergence),
    then each server's timeline as a table of times (UTC). Empty without a launch."""
    if not any(e["event"] == "launch_requested" for s in servers for e in s.timeline):
        return []
    lines = [
        "",
        "## The night",
        "",
        "| Application | Launch requested | Last converged | Critical path | Slowest server |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for app_id, rows in _by_application(servers).items():
        starts = [_at(r, "launch_requested") for r in rows]
        ends = [_at(r, "converged") for r in rows]
        first = min((t for t in starts if t), default=None)
        done = None if any(t is None for t in ends) else max(t for t in ends if t)
        slowest = max(rows, key=lambda r: _at(r, "converged") or "")
        name = next((r.application_name for r in rows if r.application_name), None)
        label = f"{_md(name)} ({_md(app_id)})" if name else _md(app_id)
        lines.append(
            f"| {label} | {_clock(first)} | {_clock(done) if done else 'not converged'} | "
            f"{_duration(first, done) if first and done else '-'} | "
            f"{_md(slowest.source_server_id)} |"
        )
    header = " | ".join(title for _, title in NIGHT_STEPS)
    lines += ["", f"| Server | Job | {header} |", "| --- | --- |" + " --- |" * len(NIGHT_STEPS)]
    for row in _sorted(servers):
        cells = [_clock(_at(row, step)) for step, _ in NIGHT_STEPS]
        job = row.launch_job_id or "-"
        lines.append(f"| {_md(row.source_server_id)} | {_md(job)} | {' | '.join(cells)} |")
    return lines


def _at(row: ServerResult, event: str) -> str | None:
    return next((e["at"] for e in row.timeline if e["event"] == event), None)


def _clock(at: str | None) -> str:
    """HH:MM:SS of an ISO 8601 UTC time, or a dash."""
    if not at or "T" not in at:
        return "-"
    return at.split("T", 1)[1][:8]


def render_csv(record: RunRecord) -> str:
    """One row per server under a header row, for spreadsheets.

    Text that a spreadsheet would run as a formula (starting with =, +, -, @) gets a leading
    apostrophe; every other cell reads back exactly, None as an empty cell.
    """
    return "".join(_csv_parts(record))


def _csv_parts(record: RunRecord, rows_per_part: int = 1000) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for n, server in enumerate(_sorted(record.servers), start=1):
        buf.write(_csv_row(server, record.wave))
        if n % rows_per_part == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


# One line at a time, read back at once: a writer for each row cost more than the row.
_CSV_BUFFER = io.StringIO()
_CSV_LINE = csv.writer(_CSV_BUFFER)


def _csv_row(server: ServerResult, wave: str) -> str:
    """The server's CSV line, as `csv.writer` writes it, kept in the row memo if any."""

    def line() -> str:
        row = [*_server_flat(server), wave, server.application_name]
        _CSV_LINE.writerow([_csv_cell(v) for v in row])
        text = _CSV_BUFFER.getvalue()
        _CSV_BUFFER.seek(0)
        _CSV_BUFFER.truncate()
        return text

    return rowmemo.piece("csv", server, line, wave)


@dataclass(frozen=True)
class ReportPaths:
    """Where one run's report went: its own folder, and the wave's if it became the wave's."""

    run: Path
    wave: Path | None


def run_folder_name(record: RunRecord) -> str:
    """`<started, compact UTC>-<run id>`: runs sort by time in a listing."""
    started = "".join(c for c in record.started_at if c.isalnum())
    return f"{started}-{record.run_id or 'unknown'}"


def write_report(
    record: RunRecord, report_dir: Path, *, wave_level: bool | None = None
) -> ReportPaths:
    """Write the run's report (JSON, Markdown, CSV, HTML) to
    `<report_dir>/<wave>/runs/<started>-<run id>/`, and to `<report_dir>/<wave>/` when it is
    the wave's record: a real run always (a subset run's record is merged over the whole wave),
    a dry run only while the wave has no real run's report there. `wave_level` False: the run's
    folder alone (`report --run`: an old run never replaces the wave's report).

    Raises ValueError if the wave name would resolve outside report_dir; OSError if a file
    cannot be written (the previous report file then stays whole).
    """
    folder = wave_dir(report_dir, record.wave)
    doc = report_document(record)
    # Each file written as it is rendered, one after the other: 40,000 servers' pages are
    # ~200 MB of text, which must never be in memory at once.
    rendered: dict[str, Callable[[], Iterable[str]]] = {
        "report.json": lambda: _json_parts(doc),
        "report.md": lambda: (render_markdown(record),),
        "report.csv": lambda: _csv_parts(record),
        "report.html": lambda: html_parts(doc),
    }
    run = folder / "runs" / run_folder_name(record)
    if wave_level is None:
        wave_level = not record.dry_run or not _has_real_report(folder)
    ensure_private_dir(folder)
    ensure_private_dir(run)
    write_all([(run / name, parts) for name, parts in rendered.items()])
    fsync_dir(run)
    if wave_level:  # the same files again: linked, not written twice
        for name in rendered:
            link_atomic(run / name, folder / name)
        fsync_dir(folder)
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


def _outcome(s: ServerResult) -> Outcome:
    """The row's outcome as an Outcome (rows read back from a file may hold its text);
    raises ValueError for an unknown one."""
    outcome = s.outcome
    return outcome if type(outcome) is Outcome else Outcome(outcome)


def _sorted(servers: Sequence[ServerResult]) -> list[ServerResult]:
    return sorted(servers, key=lambda s: (s.application_id, s.source_server_id))


def _by_application(servers: Sequence[ServerResult]) -> dict[str, list[ServerResult]]:
    apps: dict[str, list[ServerResult]] = {}
    for server in _sorted(servers):
        apps.setdefault(server.application_id, []).append(server)
    return apps


def _is_problem(servers: Sequence[ServerResult]) -> bool:
    return any(_outcome(s) not in OK_OUTCOMES for s in servers)


def _server_json(s: ServerResult) -> dict[str, Any]:
    has_error = s.error_code is not None or s.error_message is not None
    return {
        "sourceServerID": s.source_server_id,
        "applicationID": s.application_id,
        "name": s.name,
        "outcome": _outcome(s).value,
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
        "launch_job_id": s.launch_job_id,
        "archived_at": s.archived_at,
        "accountID": s.account_id,
        "region": s.region,
    }


def _server_flat(s: ServerResult) -> list[Any]:
    """The JSON server row with `error` split into two columns, in CSV_FIELDS order."""
    row = _server_json(s)
    error = row.pop("error") or {}
    row["error_code"], row["error_message"] = error.get("code"), error.get("message")
    return [row[name] for name in CSV_FIELDS[:-2]]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_PREFIXES) else text


def _application_section(app_id: str, servers: Sequence[ServerResult]) -> list[str]:
    problem = _is_problem(servers)
    name = next((s.application_name for s in servers if s.application_name), None)
    title = f"{_md(name)} ({_md(app_id)})" if name else _md(app_id)
    lines = [
        f"### {title}" + (" (needs attention)" if problem else ""),
        "",
        "| Server | Name | Outcome | Reason | Lifecycle | Replication | Error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_md_row(s) for s in servers]
    present = {_outcome(s) for s in servers}
    steps = [f"- **{o.value}**: {text}" for o, text in NEXT_STEPS.items() if o in present]
    if steps:
        lines += ["", "What to do next:", "", *steps]
    return lines


def _md_row(s: ServerResult) -> str:
    """The server's row in its application's table, kept in the row memo if any."""
    return rowmemo.piece("md", s, lambda: _md_line(s))


def _md_line(s: ServerResult) -> str:
    error = ": ".join(x for x in (s.error_code, s.error_message) if x) or None
    cells = (
        s.source_server_id,
        s.name,
        _outcome(s).value,
        s.reason,
        s.lifecycle_state,
        s.replication_state,
        error,
    )
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _md(value: str | None) -> str:
    """Text safe inside a Markdown table cell or heading; None as a dash."""
    if value is None or value == "":
        return "-"
    text = " ".join(str(value).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
