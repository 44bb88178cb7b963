"""The commands behind the CLI: load inputs, run the async work, render, return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator import collector, endpoints, logs, notify, rowmemo
from orchestrator.config import Config, flag_name, flag_overrides, load_config
from orchestrator.errors import (
    ApprovalRefused,
    ConfigError,
    Diagnostic,
    ExitCode,
    InputError,
    JournalError,
    WindowError,
)
from orchestrator.files import wave_dir
from orchestrator.gateway import Gateway, client_settings
from orchestrator.journal import JOURNAL_FILE, JournalEntry, StepEntry
from orchestrator.ledger import Fate, Ledger, record_approval
from orchestrator.mgn import MgnClient
from orchestrator.outcome import Outcome, RunRecord, exit_meaning
from orchestrator.plan import Application, LoadResult, Server, Wave, load_waves, select_wave
from orchestrator.progress import Progress, Terminal, final_summary
from orchestrator.report import (
    OK_OUTCOMES,
    ReportPaths,
    application_summaries,
    summarize,
    write_report,
)
from orchestrator.runner import RunState, busy_servers, run_wave, utc_now_iso
from orchestrator.state import (
    RunJournal,
    mgn_scope,
    open_journal,
    open_run_state,
    run_holding,
    state_root,
)
from orchestrator.stop import Stop
from orchestrator.targets import Targets, uncovered_accounts
from orchestrator.tonight import load_tonight
from orchestrator.validation import quote
from orchestrator.views import ServerView

if TYPE_CHECKING:
    from orchestrator import status

T = TypeVar("T")
log = structlog.get_logger(__name__)


def load_settings(ns: argparse.Namespace) -> Config:
    """The effective Config: flags > MGN_CUTOVER_* environment > --config file > defaults.

    Raises ConfigError with every problem of every source.
    """
    return load_config(getattr(ns, "config", None), os.environ, flag_overrides(vars(ns)))


def log_state_dir(config: Config, journal: str | Path) -> None:
    """Say once where the journal and lock live (state_dir is absolute by now), and which
    MGN's journal this command uses (a rehearsal's is never the night's)."""
    source = config.origin("state_dir") or "default"
    log.info("state_dir", path=str(config.state_dir), source=source)
    log.info("journal_opened", path=str(journal), mgn=mgn_scope(config))


def wave_conflicts(config: Config, wave: Wave) -> list[Diagnostic]:
    """A region or accountID from a flag, the environment or the config that contradicts the plan's.

    Each application's own value counts (or the wave's, which it inherits); one diagnostic per
    place the contradicted value is written. A plan that names neither leaves the setting to apply.
    """
    found: list[Diagnostic] = []
    for setting, key in (("region", "region"), ("account_id", "accountID")):
        given = getattr(config, setting)
        if given is None:
            continue
        places: dict[tuple[str, int, int], None] = {}
        wave_value = getattr(wave, setting)
        if wave_value not in (None, given):
            line, col = getattr(wave, f"{setting}_at")
            places[(wave_value, line, col)] = None
        for app in wave.applications:
            planned = getattr(app, setting)
            if planned not in (None, given, wave_value):
                line, col = getattr(app, f"{setting}_at")
                places[(planned, line, col)] = None
        for planned, line, col in places:
            origin = config.origin(setting) or flag_name(setting)
            where = f"{wave.source}:{line}:{col}" if line > 0 else str(wave.source)
            message = (
                f"{setting} {given} contradicts wave {wave.name}'s {key}: {planned} at {where}; "
                f"drop the setting or make them agree"
            )
            found.append(Diagnostic(origin, 0, 0, message))
    return found


def for_wave(config: Config, wave: Wave) -> Config:
    """The config for this wave: the plan's wave-level accountID and region where it names them
    (each application's own target is `Application.target`, resolved by `targets`).

    Raises ConfigError when a flag, the environment or the config file contradicts them.
    """
    conflicts = wave_conflicts(config, wave)
    if conflicts:
        raise ConfigError(conflicts)
    return replace(
        config,
        account_id=wave.account_id or config.account_id,
        region=wave.region or config.region,
    )


@dataclass(frozen=True)
class Inputs:
    """A command's settings and wave, the plans' warnings, and other waves' files skipped."""

    settings: Config
    wave: Wave
    warnings: list[Diagnostic]
    skipped: list[Diagnostic]


def load_inputs(ns: argparse.Namespace) -> Inputs:
    """Settings, the wave and the plan's warnings; every config and plan error at once.

    Raises InputError carrying the diagnostics of both when either is bad.
    """
    problems: list[InputError] = []
    settings = wave = None
    warnings: list[Diagnostic] = []
    skipped: list[Diagnostic] = []
    try:
        settings = load_settings(ns)
    except InputError as err:
        problems.append(err)
    try:
        wave, warnings, skipped = load_wave(ns)
    except InputError as err:
        problems.append(err)
    if settings is not None and wave is not None:
        conflicts = wave_conflicts(settings, wave) + uncovered_accounts(settings, wave)
        if conflicts:
            problems.append(ConfigError(conflicts))
    if problems or settings is None or wave is None:
        if all(p.diagnostics for p in problems):
            raise InputError([d for p in problems for d in p.diagnostics])
        raise problems[0]
    return Inputs(settings, wave, warnings, skipped)


def load_wave(ns: argparse.Namespace) -> tuple[Wave, list[Diagnostic], list[Diagnostic]]:
    """The plan's wave named by --wave (whole: a subset run still reports the whole wave), the
    plans' warnings, and other waves' plan files skipped because they have errors.

    Raises PlanError for a bad plan of this wave or an unknown wave, InputError for an
    --application that names no application of the wave, or a name that several share.
    """
    tonight = load_tonight(ns.paths, ns.wave)
    covered_applications(tonight.wave, ns)  # refuse unknown --application values with the rest
    return tonight.wave, list(tonight.warnings), list(tonight.skipped)


def covered_applications(wave: Wave, ns: argparse.Namespace) -> frozenset[str] | None:
    """The application IDs named by --application (None: the whole wave).

    Raises InputError naming every unknown one and what the wave has.
    """
    wanted = getattr(ns, "applications", None)
    if not wanted:
        return None
    return frozenset(app.application_id for app in _applications_named(wave, wanted))


def _applications_named(wave: Wave, wanted: list[str]) -> list[Application]:
    """The applications each --application names, by applicationID or by the plan's `name`."""
    chosen: list[Application] = []
    problems: list[Diagnostic] = []
    unknown: list[str] = []
    for want in wanted:
        by_id = [a for a in wave.applications if a.application_id == want]
        matches = by_id or [a for a in wave.applications if a.name == want]
        if len(matches) > 1:
            ids = ", ".join(a.application_id for a in matches)
            message = f"{quote(want)} names {len(matches)} applications of wave {wave.name}: "
            problems.append(Diagnostic("--application", 0, 0, message + f"{ids}; give an ID"))
        elif not matches:
            unknown.append(want)
        chosen.extend(matches)
    if unknown:
        known = ", ".join(sorted(a.application_id for a in wave.applications))
        message = f"{', '.join(unknown)} not in wave {wave.name} (it has: {known})"
        problems.insert(0, Diagnostic("--application", 0, 0, message))
    if problems:
        raise InputError(problems)
    return chosen


async def _with_gateway(
    config: Config,
    wave: Wave | None,
    work: Callable[[Any], Awaitable[T]],
    *,
    stop: Stop | None = None,
) -> T:
    endpoint = endpoints.mgn_endpoint(config, os.environ)
    source = endpoint.source_name if endpoint.url else None
    if wave is not None:  # one client and gateway per (account, region) of the wave
        async with Targets(wave, config, stop=stop, endpoint_source=source) as targets:
            return await work(targets)
    settings = replace(client_settings(config, None, None), endpoint_source=source)
    async with MgnClient(settings) as client:
        return await work(Gateway(client, config, stop=stop))


def _log_warnings(warnings: Sequence[Diagnostic], skipped: Sequence[Diagnostic] = ()) -> None:
    # Log events once logging is set up: JSON lines under cron, readable on a terminal.
    for warning in warnings:
        log.warning("plan_warning", warning=str(warning))
    for file in skipped:  # loud: another wave's night may be at risk
        log.warning("plan_file_skipped", path=file.path, error=file.message)


def _endpoint(config: Config, *, verify_instances: bool) -> tuple[Config, endpoints.Endpoint]:
    """The config with its MGN endpoint explicit, logged with where it came from.

    Raises ConfigError when a rehearsal (MGN is an emulator) would call real AWS for EC2, S3
    or SNS, or when AWS_ENDPOINT_URL_MGN is not a URL.
    """
    config, endpoint = endpoints.resolved(config, os.environ)
    needed = endpoints.other_services(config, verify_instances=verify_instances)
    endpoints.check_rehearsal(endpoint, needed, os.environ)
    log.info("mgn_endpoint", endpoint=endpoint.describe(), emulator=endpoint.is_emulator)
    return config, endpoint


def _setup_logging(config: Config) -> bool:
    return logs.configure(config.log_format)


def cmd_validate(ns: argparse.Namespace) -> int:
    """`validate`: plan files and --config checked offline; exit 0, or 2 with every problem.

    Raises InputError carrying the diagnostics of config and plans together.
    """
    # Config and plans are both checked, so one run shows every problem of both.
    problems: list[Diagnostic] = []
    config = None
    try:
        config = load_config(ns.config, os.environ, {})
    except InputError as exc:
        problems.extend(exc.diagnostics)
    result = LoadResult(())
    try:
        result = load_waves(ns.paths)
    except InputError as exc:
        problems.extend(exc.diagnostics)
    waves = result.waves if ns.wave is None or problems else (select_wave(result, ns.wave),)
    if config is not None:  # what run and plan would refuse
        problems.extend(d for wave in waves for d in wave_conflicts(config, wave))
        problems.extend(d for wave in waves for d in uncovered_accounts(config, wave))
    if problems:
        raise InputError(problems)
    for warning in result.warnings:
        print(str(warning), file=sys.stderr)
    for wave in waves:
        print(
            f"{wave.source}: wave {wave.name}: {len(wave.applications)} applications, "
            f"{len(wave.servers)} servers"
        )
    return ExitCode.OK


def cmd_plan(ns: argparse.Namespace) -> int:
    """`plan`: pre-flight with no mutating call; exit 0 nothing blocked, 1 something is."""
    inputs = load_inputs(ns)
    settings, wave = inputs.settings, inputs.wave
    _setup_logging(replace(settings, log_format="json") if ns.output == "json" else settings)
    _log_warnings(inputs.warnings, inputs.skipped)
    config, _ = _endpoint(for_wave(settings, wave), verify_instances=settings.verify_instances)

    async def work(gw: Targets) -> list[PlanRow]:
        return await plan_rows(wave, config, gw)

    rows = asyncio.run(_with_gateway(config, wave, work))
    if ns.output == "json":
        print(json.dumps(plan_document(wave, rows), indent=2))
    else:
        print(plan_table(rows, wave))
    return ExitCode.NOT_CONVERGED if counts(rows)["blocked"] else ExitCode.OK


@dataclass(frozen=True)
class PlanRow:
    """What a run would do to one server, as the ledger decides it in a dry run."""

    server: Server
    decision: str  # finalize | already_cutover | blocked
    reason: str | None
    view: ServerView | None


_PLAN_DECISIONS = {
    Fate.WOULD_FINALIZE: "finalize",
    Fate.ALREADY_CUTOVER: "already_cutover",
    Fate.CUTOVER_PENDING: "already_cutover",
    Fate.WOULD_LAUNCH: "launch",  # --launch: StartCutover, watch, verify, then finalize
    Fate.LAUNCHED: "watch",  # --launch: already launched: watched, verified, finalized
}


async def plan_rows(wave: Wave, config: Config, gw: Gateway | Targets) -> list[PlanRow]:
    """Pre-flight every server and let a dry-run ledger (no journal) decide, with the gate.

    Raises MgnError/AccountError from the reads.
    """
    ledger = Ledger(
        wave,
        writer=None,
        run_id="plan",
        stop=gw.stop,
        now_iso=utc_now_iso,
        application_gate=config.application_gate,
        read_settle_s=config.read_settle_s,
    )
    views: dict[str, ServerView | None] = {}
    busy = await busy_servers(gw, gw.stop) if config.launch else {}
    async for checks in gw.preflight(wave, config, busy):
        ledger.checked(checks)
        views.update((c.source_server_id, c.view) for c in checks)
    reasons = {r.source_server_id: r.reason for r in ledger.results()}
    return [
        PlanRow(
            s,
            _PLAN_DECISIONS.get(ledger.fate(s.source_server_id), "blocked"),
            reasons[s.source_server_id],
            views.get(s.source_server_id),
        )
        for s in wave.servers
    ]


def counts(rows: list[PlanRow]) -> dict[str, int]:
    """How many servers got each decision, plus the total."""
    out = {"total": len(rows), "finalize": 0, "already_cutover": 0, "blocked": 0}
    for row in rows:
        out[row.decision] = out.get(row.decision, 0) + 1
    return out


def _ordered(rows: list[PlanRow]) -> list[PlanRow]:
    blocked_apps = {r.server.application_id for r in rows if r.decision == "blocked"}
    return sorted(
        rows,
        key=lambda r: (r.server.application_id not in blocked_apps, r.server.application_id),
    )


def plan_document(wave: Wave, rows: list[PlanRow]) -> dict[str, Any]:
    """The plan as a JSON-able document: one entry per server, then the counts."""
    names = {a.application_id: a.name for a in wave.applications}
    return {
        "schema": "mgn-cutover/plan/v1",
        "wave": wave.name,
        "servers": [
            {
                "sourceServerID": r.server.source_server_id,
                "applicationID": r.server.application_id,
                "application_name": names.get(r.server.application_id),
                "name": r.view.name if r.view else None,
                "decision": r.decision,
                "reason": r.reason,
                "lifecycle_state": r.view.lifecycle_state if r.view else None,
                "first_boot": r.view.first_boot if r.view else None,
            }
            for r in _ordered(rows)
        ],
        "counts": counts(rows),
    }


def plan_table(rows: list[PlanRow], wave: Wave | None = None) -> str:
    """A table grouped by application, blocked applications first, ending with counts; the
    application shown by the plan's name and ID."""
    names = {a.application_id: a.name for a in wave.applications} if wave else {}
    table = [("SERVER", "NAME", "APPLICATION", "DECISION", "REASON")]
    table += [
        (
            r.server.source_server_id,
            (r.view.name if r.view else None) or "-",
            _app_label(r.server.application_id, names.get(r.server.application_id)),
            r.decision,
            r.reason or "",
        )
        for r in _ordered(rows)
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in table]
    tally = counts(rows)
    lines.append("")
    night = "".join(f"{tally[k]} {k}, " for k in ("launch", "watch") if tally.get(k))
    lines.append(
        f"{tally['total']} servers: {night}{tally['finalize']} finalize, "
        f"{tally['already_cutover']} already_cutover, {tally['blocked']} blocked"
    )
    return "\n".join(line.rstrip() for line in lines)


def _app_label(application_id: str, name: str | None) -> str:
    """`payments-api (app-...)`, or the ID alone when the plan names no application."""
    return f"{name} ({application_id})" if name else application_id


def cmd_run(ns: argparse.Namespace) -> int:
    """`run`: window, lock, pre-flight, finalize, reconcile, report, publish; exit 0-6.

    Every event carries the wave and this run's ID; stdout gets exactly one summary line.
    """
    collector.run_starting()
    inputs = load_inputs(ns)
    settings, wave = inputs.settings, inputs.wave
    show_progress = sys.stderr.isatty() and not logs.use_json(settings.log_format, sys.stderr)
    # On a terminal: readable events (per application, not per server) above a live status line.
    terminal = Terminal(sys.stderr) if show_progress else None
    as_json = logs.configure(settings.log_format, terminal=terminal)
    run_id = uuid.uuid4().hex
    with bound_contextvars(wave=wave.name, run_id=run_id):
        _log_warnings(inputs.warnings, inputs.skipped)
        config, endpoint = _endpoint(
            for_wave(settings, wave), verify_instances=settings.verify_instances
        )
        check_window(config, datetime.now(UTC))
        record, paths, published = _run_locked(
            ns, wave, config, endpoint, run_id, inputs.skipped, terminal
        )
    exit_code = _run_exit(record)
    if paths is None:
        exit_code = max(exit_code, ExitCode.LOCAL_STATE)
        print(f"wave {wave.name}: exit={exit_code} report=- why: the report could not be written")
        return exit_code
    if terminal is not None:
        print(_terminal_summary(record), file=sys.stderr)
    print(_summary_line(record, exit_code, paths, published, inputs.skipped))
    stopped = record.account_error or (
        record.stop_reason if record.stop_reason == "local_state" else None
    )
    if stopped and as_json:  # cron: stderr stays JSON lines
        log.error(
            "run_stopped",
            error=stopped,
            stop_reason=record.stop_reason,
            wave=wave.name,
            run_id=record.run_id,
        )
    elif stopped:
        print(f"mgn-cutover: stopped: {stopped}", file=sys.stderr)
    return exit_code


def _run_locked(
    ns: argparse.Namespace,
    wave: Wave,
    config: Config,
    endpoint: endpoints.Endpoint,
    run_id: str,
    skipped: Sequence[Diagnostic],
    terminal: Terminal | None,
) -> tuple[RunRecord, ReportPaths | None, str | None]:
    """The run under the wave's lock and journal: its record, report paths and upload URI."""
    covered = covered_applications(wave, ns)
    state = RunState(wave=wave.name, dry_run=ns.dry_run)
    state.warnings = [str(d) for d in skipped]
    rehearsal = endpoint.url if endpoint.is_emulator else None
    names = {a.application_id: a.name for a in wave.applications}
    with open_run_state(
        config, wave.name, run_id=run_id, account_id=config.account_id, region=config.region
    ) as store:
        journal = store.journal
        log_state_dir(config, journal.path)
        progress = Progress(
            state, len(wave.servers), enabled=terminal is not None, terminal=terminal, names=names
        )

        async def work(gw: Targets) -> tuple[RunRecord, ReportPaths | None, str | None]:
            loop = asyncio.get_running_loop()
            store.bind(state.stop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, state.interrupt)
            async with _notifier(config, state.stop) as notifier, progress:
                tell = _teller(notifier, wave, ns.dry_run, rehearsal, state)
                notifier.send(
                    notify.run_started(
                        wave.name,
                        servers=len(wave.servers),
                        applications=len(wave.applications),
                        run_id=run_id,
                        dry_run=ns.dry_run,
                        endpoint_url=rehearsal,
                        warnings=state.warnings,
                    )
                )
                record = await run_wave(
                    wave,
                    config,
                    gw,
                    journal,
                    state,
                    covered=covered,
                    not_after=config.not_after,
                    on_application=tell,
                    on_approval_awaited=_awaited(notifier, wave),
                    run_id=run_id,
                )
                if state.stop.halted:
                    # A signal's grace bounds the notifications too; the report names the lost.
                    record.warnings += await notifier.flush()
                paths, published = await _report_and_publish(record, config)
                location = published or (str(paths.run / "report.md") if paths else None)
                notifier.send(
                    notify.run_finished(
                        wave.name,
                        exit_code=_run_exit(record),
                        summary=summarize(record.servers),
                        report_location=location,
                        run_id=record.run_id,
                        dry_run=ns.dry_run,
                        endpoint_url=rehearsal,
                    )
                )
                return record, paths, published

        # One memo for the run and its report: rows done before the end are rendered while
        # the run waits for the others (`rowmemo`).
        with rowmemo.using(rowmemo.RowMemo()):
            return asyncio.run(_with_gateway(config, wave, work, stop=state.stop))


def _summary_line(
    record: RunRecord,
    exit_code: int,
    paths: ReportPaths,
    published: str | None,
    skipped: Sequence[Diagnostic],
) -> str:
    """`wave W: total=N finalized=.. exit=E report=PATH [uploaded=URI] [why: ...]`."""
    summary = summarize(record.servers)
    counts = " ".join(f"{k}={v}" for k, v in summary.items() if v or k == "total")
    line = f"wave {record.wave}: {counts} exit={exit_code} report={paths.run / 'report.md'}"
    if published:
        line += f" uploaded={published}"
    why = [] if exit_code == 0 else [exit_meaning(exit_code, record.dry_run)]
    if skipped:
        why.append(f"WARNING {len(skipped)} other plan file(s) skipped: {skipped[0].path}")
    return line + (" why: " + "; ".join(why) if why else "")


def _terminal_summary(record: RunRecord) -> str:
    """The end of a run on a terminal: each application, then every problem server."""
    problems = [s for s in record.servers if Outcome(s.outcome) not in OK_OUTCOMES]
    return final_summary(application_summaries(record.servers), problems)


def _awaited(notifier: notify.Notifier, wave: Wave) -> Callable[[str], None]:
    """Tell people an application waits for `approve`, with the command to give it."""

    def tell(app: str) -> None:
        detail = f"mgn-cutover approve PLAN --wave {wave.name} --application {app}"
        notifier.send(
            notify.approval_awaited(wave.name, app, name=_app_name(wave, app), detail=detail)
        )

    return tell


def _app_name(wave: Wave, app_id: str) -> str | None:
    return next((a.name for a in wave.applications if a.application_id == app_id), None)


def cmd_approve(ns: argparse.Namespace) -> int:
    """`approve`: record that an application may be finalized by the run waiting for it (it
    sees it at its next poll). An approval names that run and is never read by another.

    Raises ApprovalRefused (exit 2, nothing recorded) when no live run is waiting for one of
    the applications; JournalError for a damaged journal, StateWriteError if it cannot be kept.
    """
    config = load_settings(ns)
    wave = select_wave(load_waves(ns.paths), ns.wave)
    chosen = _applications_named(wave, list(ns.applications))
    by = ns.by or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    at = utc_now_iso()
    try:
        with open_journal(config, wave.name) as journal:
            steps = journal.steps()
            holder = run_holding(config, wave.name, journal)
            runs = [(app, _waiting_run(journal, steps, app, holder)) for app in chosen]
            for app, run_id in runs:  # all checked first: a refusal records nothing
                label = _app_label(app.application_id, app.name)
                given = journal.approvals(run_id).get(app.application_id)
                if given is None:
                    record_approval(journal, app.application_id, run_id=run_id, by=by, at=at)
                    given = journal.approvals(run_id)[app.application_id]
                print(
                    f"wave {wave.name}: {label} approved by {given[0]} at {given[1]} "
                    f"for run {run_id}"
                )
    except JournalError as err:
        if not str(err).startswith("no journal for wave"):  # from open_journal alone
            raise
        raise ApprovalRefused(
            f"wave {wave.name}: no run is waiting for an approval ({err}): nothing recorded"
        ) from err
    return ExitCode.OK


def _waiting_run(
    journal: RunJournal,
    steps: dict[str, dict[str, StepEntry]],
    app: Application,
    holder: str | None,
) -> str:
    """The run waiting now for `app`'s approval: the latest run that journaled the approval
    step of its servers, while it still waits (no step of it failed: approve_timeout_s) and
    holds the wave's lock. Raises ApprovalRefused saying why there is none."""
    label = _app_label(app.application_id, app.name)
    mine = [
        (entry.at, entry.run_id, entry.status)
        for server in app.server_ids
        if (entry := steps.get(server, {}).get("approval")) is not None and entry.run_id
    ]
    if not mine:
        raise ApprovalRefused(
            f"{label}: no run has waited for its approval (run --launch --require-approval "
            "journals it once the application is verified): nothing recorded"
        )
    run_id = max(mine)[1] or ""
    statuses = {status for _, rid, status in mine if rid == run_id}
    if "failed" in statuses:
        raise ApprovalRefused(
            f"{label}: run {run_id} stopped waiting for its approval (approve_timeout_s "
            "passed): nothing recorded; a later run asks again"
        )
    if holder != run_id or journal.run_record(run_id) is not None:
        raise ApprovalRefused(
            f"{label}: run {run_id}, which waited for its approval, is not running any more: "
            "nothing recorded; a later run asks again"
        )
    if "intent" not in statuses and not journal.approvals(run_id).get(app.application_id):
        raise ApprovalRefused(f"{label}: run {run_id} is not waiting for it: nothing recorded")
    return run_id


def _run_exit(record: RunRecord) -> int:
    """The process's exit code: the subset's own when the run covered part of the wave."""
    return record.exit_code if record.run_exit_code is None else record.run_exit_code


def check_window(config: Config, now: datetime) -> None:
    """Refuse a run started outside its cutover window, before anything is read or sent.

    Raises WindowError (exit 6).
    """
    if config.not_before is not None and now < config.not_before:
        raise WindowError(
            f"the cutover window opens at {config.not_before.isoformat()} "
            f"(now {now.astimezone(config.not_before.tzinfo).isoformat(timespec='seconds')}): "
            "nothing was sent"
        )
    if config.not_after is not None and now >= config.not_after:
        raise WindowError(
            f"the cutover window closed at {config.not_after.isoformat()} "
            f"(now {now.astimezone(config.not_after.tzinfo).isoformat(timespec='seconds')}): "
            "nothing was sent"
        )


def _notifier(config: Config, stop: Stop) -> notify.Notifier:
    return notify.Notifier.from_settings(
        sns_topic_arn=config.notify_sns_topic_arn,
        webhook_url=config.notify_webhook_url,
        profile=config.profile,
        stop=stop,
    )


_CONVERGED_FATES = frozenset({Fate.FINALIZED, Fate.ALREADY_CUTOVER})
# application_done's level by status: anything but a whole application finalized is a warning.
_APPLICATION_LOG_LEVELS = {
    "finalized": logging.INFO,
    "blocked": logging.WARNING,
    "failed": logging.WARNING,
    "partially_cut_over": logging.WARNING,
}
_DRY_RUN_FINE = _CONVERGED_FATES | {Fate.WOULD_FINALIZE, Fate.WOULD_LAUNCH, Fate.UNCOVERED}


def _teller(
    notifier: notify.Notifier,
    wave: Wave,
    dry_run: bool,
    endpoint_url: str | None,
    state: RunState | None = None,
) -> Callable[[str, str, str | None], None]:
    """The ledger's application callback: one log line (the terminal's per-application summary)
    and one notification per settled application."""
    names = {a.application_id: a.name for a in wave.applications}
    servers = {a.application_id: a.server_ids for a in wave.applications}

    def converged(app_id: str) -> int | None:
        ledger = state.ledger if state is not None else None
        if ledger is None:
            return None
        return sum(ledger.fate(sid) in _CONVERGED_FATES for sid in servers.get(app_id, ()))

    def tell(app_id: str, status: str, reason: str | None) -> None:
        name = names.get(app_id)
        size, done = len(servers.get(app_id, ())), converged(app_id)
        level = _APPLICATION_LOG_LEVELS.get(status, logging.WARNING)
        if dry_run and state is not None and state.ledger is not None:
            # A dry run settles an application it would finalize as "failed": not a warning.
            fates = {state.ledger.fate(sid) for sid in servers.get(app_id, ())}
            level = logging.INFO if fates <= _DRY_RUN_FINE else level
        log.log(
            level,
            "application_done",
            applicationID=app_id,
            application=_app_label(app_id, name),
            status="HALF CUT OVER"
            if status == "partially_cut_over" or (done and done < size)
            else status,
            servers=size,
            converged=size if done is None else done,
            reason=reason,
        )
        if dry_run:
            return
        if status == "finalized":
            event = notify.application_finalized(wave.name, app_id, name=name, servers=size)
        elif status == "blocked":
            event = notify.application_blocked(wave.name, app_id, name=name, reason=reason or "")
        elif status == "partially_cut_over":
            event = notify.application_partially_cut_over(
                wave.name, app_id, name=name, servers=size, converged=done or 0, reason=reason or ""
            )
        else:
            event = notify.application_failed(wave.name, app_id, name=name, reason=reason or "")
        notifier.send(event)

    return tell


async def _report_and_publish(
    record: RunRecord, config: Config
) -> tuple[ReportPaths | None, str | None]:
    """Write the report; upload it when report_uri is set. Neither ever raises: a report that
    cannot be written is logged (the caller exits 5), an upload that fails is logged and left."""
    try:
        paths = write_report(record, config.report_dir)
    except OSError as exc:
        log.error("report_write_failed", error=str(exc))
        print(f"mgn-cutover: the report could not be written: {exc}", file=sys.stderr)
        return None, None
    if config.report_uri is None:
        return paths, None
    from orchestrator.publish import publish_report  # S3: only for a run that uploads

    result = await publish_report(
        paths.run,
        config.report_uri,
        record.wave,
        kms_key_id=config.report_kms_key_id,
        run_id=record.run_id,
        region=config.region,
        profile=config.profile,
    )
    if result.ok:
        log.info("report_uploaded", uri=result.uri, files=len(result.uploaded))
        return paths, result.uri
    log.warning("report_upload_failed", summary=result.summary())
    return paths, None


def cmd_report(ns: argparse.Namespace) -> int:
    """`report`: re-render the wave's report (or one run's, `--run ID`) from the journal."""
    config = load_settings(ns)
    with open_journal(config, ns.wave) as journal:
        run_id = getattr(ns, "run", None)
        record = journal.run_record(run_id) if run_id else journal.last_run_record()
    if record is None:
        what = f"no finished run {run_id!r}" if run_id else "no finished run"
        raise ConfigError(f"wave {ns.wave}: the journal has {what} to report")
    # One run's report is rendered in its own folder alone: the wave's report stays the wave's.
    paths = write_report(record, config.report_dir, wave_level=False if run_id else None)
    print((paths.wave if paths.wave and not run_id else paths.run) / "report.md")
    return _run_exit(record) if run_id else record.exit_code


def cmd_status(ns: argparse.Namespace) -> int:
    """`status`: the journal and MGN's live state side by side, what is pending and since when.

    With plan paths each application is read in its own account and region and shown by name;
    without, the journal and the last run's account and region. Works while a run holds the
    lock. Raises InputError for bad plans or settings, JournalError for a damaged journal.
    """
    from orchestrator import status  # only this command reads it: not on a run's way

    if ns.paths:
        inputs = load_inputs(ns)
        config, wave = inputs.settings, inputs.wave
        _setup_logging(config)
        _log_warnings(inputs.warnings, inputs.skipped)
        config = for_wave(config, wave)
    else:
        config, wave = load_settings(ns), None
        _setup_logging(config)
    config, _ = endpoints.resolved(config, os.environ)
    entries: dict[str, JournalEntry] = {}
    record: RunRecord | None = None
    waiting: list[str] = []
    stored = config.state_backend == "dynamodb"
    if wave is None or stored or journal_path(state_root(config), wave.name).exists():
        with open_journal(config, ns.wave) as journal:
            log_state_dir(config, journal.path)
            entries, record = journal.entries(), journal.last_run_record()
            names = {a.application_id: a.name for a in wave.applications} if wave else {}
            waiting = status.approvals_waiting(journal.steps(), journal.approvals, names)
    last = {r.source_server_id: r for r in record.servers} if record else {}
    if wave is not None:
        server_targets = status.targets(wave)
    else:
        server_targets = status.journal_targets(config, entries, last, record)
    views = _read_views(config, server_targets)
    running = status.run_in_progress(state_root(config), ns.wave)
    print(status.render(ns.wave, server_targets, entries, last, views, running, waiting))
    return ExitCode.OK


def journal_path(state_dir: Path, wave: str) -> Path:
    """Where the wave's journal would be (it may not exist yet), under the MGN's folder of
    state_dir (`state.state_root`)."""
    return wave_dir(state_dir, wave) / JOURNAL_FILE


def _read_views(config: Config, server_targets: list[status.Target]) -> dict[str, ServerView]:
    """MGN's live view of every server, one client per (account, region)."""
    groups: dict[tuple[str | None, str | None], list[str]] = {}
    for t in server_targets:
        groups.setdefault((t.account_id, t.region), []).append(t.server_id)

    async def read_all() -> dict[str, ServerView]:
        views: dict[str, ServerView] = {}
        for (account, region), ids in groups.items():
            where = replace(
                config, account_id=account or config.account_id, region=region or config.region
            )

            async def work(gw: Gateway, ids: list[str] = ids) -> dict[str, ServerView]:
                return dict(await gw.read(ids))

            views.update(await _with_gateway(where, None, work))
        return views

    return asyncio.run(read_all())


def cmd_export_plan(ns: argparse.Namespace) -> int:
    """`export-plan`: a plan file from MGN's own wave, applications and servers."""
    from orchestrator.exporter import export_plan

    config = load_settings(ns)
    _setup_logging(config)
    if getattr(ns, "all_accounts", False):
        from orchestrator.exporter import export_everywhere

        text = asyncio.run(export_everywhere(config, ns.mgn_wave, ns.wave, ns.regions))
        sys.stdout.write(text)
        return ExitCode.OK
    text = asyncio.run(
        _with_gateway(
            config, None, lambda gw: export_plan(gw.client, ns.mgn_wave, gw.reads, ns.wave)
        )
    )
    sys.stdout.write(text)
    return ExitCode.OK
