"""The commands behind the CLI: load inputs, run the async work, render, return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog

from orchestrator import logs, notify
from orchestrator.config import Config, flag_name, flag_overrides, load_config
from orchestrator.errors import ConfigError, Diagnostic, ExitCode, InputError, WindowError
from orchestrator.gateway import Gateway, client_settings
from orchestrator.journal import Journal
from orchestrator.ledger import Fate, Ledger
from orchestrator.lock import WaveLock
from orchestrator.mgn import MgnClient, ServerView
from orchestrator.outcome import RunRecord
from orchestrator.plan import Application, LoadResult, Server, Wave, load_waves, select_wave
from orchestrator.progress import Progress
from orchestrator.publish import publish_report
from orchestrator.report import ReportPaths, summarize, write_report
from orchestrator.runner import RunState, run_wave, utc_now_iso
from orchestrator.stop import Stop
from orchestrator.targets import Targets, status_wave, uncovered_accounts
from orchestrator.validation import quote

T = TypeVar("T")
log = structlog.get_logger(__name__)


def load_settings(ns: argparse.Namespace) -> Config:
    """The effective Config: flags > MGN_CUTOVER_* environment > --config file > defaults.

    Raises ConfigError with every problem of every source.
    """
    return load_config(getattr(ns, "config", None), os.environ, flag_overrides(vars(ns)))


def log_state_dir(config: Config) -> None:
    """Say once where the journal and lock live (state_dir is absolute by now)."""
    source = config.origin("state_dir") or "default"
    log.info("state_dir", path=str(config.state_dir), source=source)


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


def load_inputs(ns: argparse.Namespace) -> tuple[Config, Wave, list[Diagnostic]]:
    """Settings, the wave and the plan's warnings; every config and plan error at once.

    Raises InputError carrying the diagnostics of both when either is bad.
    """
    problems: list[InputError] = []
    settings = wave = None
    warnings: list[Diagnostic] = []
    try:
        settings = load_settings(ns)
    except InputError as err:
        problems.append(err)
    try:
        wave, warnings = load_wave(ns)
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
    return settings, wave, warnings


def load_wave(ns: argparse.Namespace) -> tuple[Wave, list[Diagnostic]]:
    """The plan's wave named by --wave (whole: a subset run still reports the whole wave).

    Raises PlanError for bad plans or an unknown wave, InputError for an --application that
    names no application of the wave, or a name that several of its applications share.
    """
    result = load_waves(ns.paths)
    wave = select_wave(result, ns.wave)
    covered_applications(wave, ns)  # refuse unknown --application values with the rest
    return wave, list(result.warnings)


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
    if wave is not None:  # one client and gateway per (account, region) of the wave
        async with Targets(wave, config, stop=stop) as targets:
            return await work(targets)
    async with MgnClient(client_settings(config, None, None)) as client:
        return await work(Gateway(client, config, stop=stop))


def _log_warnings(warnings: list[Diagnostic]) -> None:
    # Log events once logging is set up: JSON lines under cron, readable on a terminal.
    for warning in warnings:
        log.warning("plan_warning", warning=str(warning))


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
    settings, wave, warnings = load_inputs(ns)
    _setup_logging(replace(settings, log_format="json") if ns.output == "json" else settings)
    _log_warnings(warnings)
    config = for_wave(settings, wave)

    async def work(gw: Targets) -> list[PlanRow]:
        return await plan_rows(wave, config, gw)

    rows = asyncio.run(_with_gateway(config, wave, work))
    if ns.output == "json":
        print(json.dumps(plan_document(wave, rows), indent=2))
    else:
        print(plan_table(rows))
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
    )
    views: dict[str, ServerView | None] = {}
    async for checks in gw.preflight(wave, config):
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
        out[row.decision] += 1
    return out


def _ordered(rows: list[PlanRow]) -> list[PlanRow]:
    blocked_apps = {r.server.application_id for r in rows if r.decision == "blocked"}
    return sorted(
        rows,
        key=lambda r: (r.server.application_id not in blocked_apps, r.server.application_id),
    )


def plan_document(wave: Wave, rows: list[PlanRow]) -> dict[str, Any]:
    """The plan as a JSON-able document: one entry per server, then the counts."""
    return {
        "schema": "mgn-cutover/plan/v1",
        "wave": wave.name,
        "servers": [
            {
                "sourceServerID": r.server.source_server_id,
                "applicationID": r.server.application_id,
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


def plan_table(rows: list[PlanRow]) -> str:
    """A table grouped by application, blocked applications first, ending with counts."""
    table = [("SERVER", "NAME", "APPLICATION", "DECISION", "REASON")]
    table += [
        (
            r.server.source_server_id,
            (r.view.name if r.view else None) or "-",
            r.server.application_id,
            r.decision,
            r.reason or "",
        )
        for r in _ordered(rows)
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in table]
    tally = counts(rows)
    lines.append("")
    lines.append(
        f"{tally['total']} servers: {tally['finalize']} finalize, "
        f"{tally['already_cutover']} already_cutover, {tally['blocked']} blocked"
    )
    return "\n".join(line.rstrip() for line in lines)


def cmd_run(ns: argparse.Namespace) -> int:
    """`run`: window, lock, pre-flight, finalize, reconcile, report, publish; exit 0-6."""
    settings, wave, warnings = load_inputs(ns)
    show_progress = sys.stderr.isatty() and not logs.use_json(settings.log_format, sys.stderr)
    # On a terminal the progress line is the main output: only warnings and errors scroll by.
    as_json = logs.configure(
        settings.log_format, level=logging.WARNING if show_progress else logging.INFO
    )
    _log_warnings(warnings)
    config = for_wave(settings, wave)
    check_window(config, datetime.now(UTC))
    covered = covered_applications(wave, ns)
    state = RunState(wave=wave.name, dry_run=ns.dry_run)
    with (
        WaveLock(config.state_dir, wave.name),
        Journal.open(config.state_dir, wave.name) as journal,
    ):
        log_state_dir(config)
        progress = Progress(state, len(wave.servers), enabled=show_progress)

        async def work(gw: Targets) -> tuple[RunRecord, ReportPaths | None, str | None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, state.interrupt)
            async with _notifier(config) as notifier, progress:
                tell = _teller(notifier, wave, ns.dry_run, config.endpoint_url)
                notifier.send(
                    notify.run_started(
                        wave.name,
                        servers=len(wave.servers),
                        applications=len(wave.applications),
                        dry_run=ns.dry_run,
                        endpoint_url=config.endpoint_url,
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
                )
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
                        endpoint_url=config.endpoint_url,
                    )
                )
                return record, paths, published

        record, paths, published = asyncio.run(_with_gateway(config, wave, work, stop=state.stop))
    exit_code = _run_exit(record)
    if paths is None:
        return max(exit_code, ExitCode.LOCAL_STATE)
    summary = summarize(record.servers)
    line = " ".join(f"{k}={v}" for k, v in summary.items() if v or k == "total")
    where = f" uploaded={published}" if published else ""
    print(f"wave {wave.name}: {line} exit={exit_code} report={paths.run / 'report.md'}{where}")
    stopped = record.account_error or (
        record.stop_reason if record.stop_reason == "local_state" else None
    )
    if stopped and as_json:  # cron: stderr stays JSON lines
        log.error("run_stopped", error=stopped, stop_reason=record.stop_reason)
    elif stopped:
        print(f"mgn-cutover: stopped: {stopped}", file=sys.stderr)
    return exit_code


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


def _notifier(config: Config) -> notify.Notifier:
    return notify.Notifier.from_settings(
        sns_topic_arn=config.notify_sns_topic_arn,
        webhook_url=config.notify_webhook_url,
        profile=config.profile,
    )


def _teller(
    notifier: notify.Notifier, wave: Wave, dry_run: bool, endpoint_url: str | None
) -> Callable[[str, str, str | None], None]:
    """The ledger's application callback: one notification per settled application."""
    names = {a.application_id: a.name for a in wave.applications}
    sizes = {a.application_id: len(a.servers) for a in wave.applications}

    def tell(app_id: str, status: str, reason: str | None) -> None:
        if dry_run:
            return
        name = names.get(app_id)
        if status == "finalized":
            event = notify.application_finalized(
                wave.name, app_id, name=name, servers=sizes.get(app_id, 0)
            )
        elif status == "blocked":
            event = notify.application_blocked(wave.name, app_id, name=name, reason=reason or "")
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
    with Journal.open(config.state_dir, ns.wave, create=False) as journal:
        run_id = getattr(ns, "run", None)
        record = journal.run_record(run_id) if run_id else journal.last_run_record()
    if record is None:
        what = f"no finished run {run_id!r}" if run_id else "no finished run"
        raise ConfigError(f"wave {ns.wave}: the journal has {what} to report")
    paths = write_report(record, config.report_dir)
    print((paths.wave if paths.wave and not run_id else paths.run) / "report.md")
    return _run_exit(record) if run_id else record.exit_code


def cmd_status(ns: argparse.Namespace) -> int:
    """`status`: the last run's outcomes, the journal and MGN's live state, side by side."""
    config = load_settings(ns)
    _setup_logging(config)
    with Journal.open(config.state_dir, ns.wave, create=False) as journal:
        log_state_dir(config)
        entries = journal.entries()
        record = journal.last_run_record()
    last = {r.source_server_id: r for r in record.servers} if record else {}
    if record is not None:  # the wave's own account and region, as the last run used them
        used = record.config
        config = replace(
            config,
            account_id=str(used.get("account_id") or "") or config.account_id,
            region=str(used.get("region") or "") or config.region,
        )
    ids = sorted(set(entries) | set(last))

    async def work(gw: Targets) -> dict[str, Any]:
        return dict(await gw.read(ids))

    # Each server read in the (account, region) its last run reached it in.
    wave = status_wave(ns.wave, record.servers if record else [], ids)
    views = asyncio.run(_with_gateway(config, wave, work))
    where = ("ACCOUNT", "REGION")  # where the last run reached each server
    live = ("MGN_STATE", "REPLICATION")
    rows = [("SERVER", "LAST_OUTCOME", "JOURNAL", "FINALIZED_AT", *where, *live)]
    for sid in ids:
        entry, view, result = entries.get(sid), views.get(sid), last.get(sid)
        rows.append(
            (
                sid,
                result.outcome.value if result else "-",
                entry.status if entry else "-",
                (entry.finalized_at if entry else None) or "-",
                (result.account_id if result else None) or "-",
                (result.region if result else None) or "-",
                (view.lifecycle_state if view else "not found") or "?",
                (view.replication_state if view else "-") or "?",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


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
        _with_gateway(config, None, lambda gw: export_plan(gw.client, ns.mgn_wave, ns.wave))
    )
    sys.stdout.write(text)
    return ExitCode.OK
