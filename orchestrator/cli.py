"""The `mgn-cutover` command: parse arguments, set up logging, run, map the outcome to an exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.errors import InputError, MgnCutoverError
from orchestrator.logs import use_json

# Flags whose value overrides a Config field of the same name (dest -> field).
CONFIG_FLAGS = (
    "region",
    "profile",
    "endpoint_url",
    "account_id",
    "concurrency",
    "finalize_rate",
    "describe_rate",
    "poll_interval_s",
    "reconcile_timeout_s",
    "max_attempts",
    "report_dir",
    "state_dir",
    "log_format",
    "verify_instances",
    "require_first_boot",
    "application_gate",
)


def _add_config_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    g = p.add_argument_group("settings (flag > environment > config file > default)")
    g.add_argument("--config", type=Path, metavar="FILE", help="YAML config file")
    g.add_argument("--region", help="AWS region")
    g.add_argument("--profile", help="AWS profile from the shared config")
    g.add_argument("--endpoint-url", dest="endpoint_url", help="MGN endpoint (an emulator)")
    g.add_argument("--account-id", dest="account_id", help="MGN accountID (12 digits)")
    g.add_argument("--log-format", dest="log_format", choices=("auto", "json", "console"))
    g.add_argument("--describe-rate", dest="describe_rate", metavar="R", help="reads per second")
    g.add_argument(
        "--verify-instances",
        dest="verify_instances",
        action="store_const",
        const=True,
        help="require each launched EC2 instance to be running and pass both status checks",
    )
    if not run:
        return
    g.add_argument("--concurrency", metavar="N", help="FinalizeCutover calls in flight")
    g.add_argument(
        "--finalize-rate", dest="finalize_rate", metavar="R", help="finalizes per second"
    )
    g.add_argument("--poll-interval", dest="poll_interval_s", metavar="S", help="seconds")
    g.add_argument(
        "--timeout", dest="reconcile_timeout_s", metavar="S", help="reconcile deadline, s"
    )
    g.add_argument("--max-attempts", dest="max_attempts", metavar="N")
    g.add_argument("--report-dir", dest="report_dir", metavar="D")
    g.add_argument("--state-dir", dest="state_dir", metavar="D")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgn-cutover",
        description="Finalize AWS MGN cutovers wave by wave, safely, and report on every server.",
    )
    parser.add_argument("--version", action="version", version=f"mgn-cutover {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check plan files (and --config) offline")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--config", type=Path, metavar="FILE")
    p.add_argument("--wave", help="only this wave")

    p = sub.add_parser("plan", help="pre-flight a wave against MGN; no mutating call")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--wave", required=True)
    p.add_argument("--output", choices=("table", "json"), default="table")
    _add_config_flags(p, run=False)

    p = sub.add_parser("export-plan", help="write a plan file from MGN's own waves")
    p.add_argument("--mgn-wave", dest="mgn_wave", required=True, metavar="NAME_OR_ID")
    p.add_argument("--wave", help="name for the exported wave (default: MGN's wave name)")
    _add_config_flags(p, run=False)

    p = sub.add_parser("run", help="finalize a wave's ready servers, reconcile, report")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--wave", required=True)
    p.add_argument("--dry-run", action="store_true", help="pre-flight and report; no mutating call")
    p.add_argument(
        "--application",
        dest="applications",
        action="append",
        metavar="ID",
        help="only this application (repeatable)",
    )
    _add_config_flags(p, run=True)

    p = sub.add_parser("report", help="re-render a wave's report from its journal")
    p.add_argument("--wave", required=True)
    _add_config_flags(p, run=True)

    p = sub.add_parser("status", help="journal and live MGN state side by side")
    p.add_argument("--wave", required=True)
    _add_config_flags(p, run=True)

    from orchestrator.emulator.args import add_arguments as add_simulate_arguments

    p = sub.add_parser("simulate", help="serve the MGN emulator for a rehearsal")
    add_simulate_arguments(p)
    return parser


def config_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    """The Config fields set by flags, as raw strings or values (validated by load_config)."""
    return {k: getattr(ns, k) for k in CONFIG_FLAGS if getattr(ns, k, None) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return _dispatch(ns)
    except MgnCutoverError as exc:
        if ns.command == "run" and use_json(ns.log_format or "auto", sys.stderr):
            print(_error_event(exc), file=sys.stderr)  # cron: stderr stays JSON lines
            return exc.exit_code
        # Diagnostics already read `file:line:col: message`; anything else gets our prefix.
        located = isinstance(exc, InputError) and exc.diagnostics
        print(str(exc) if located else f"mgn-cutover: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _error_event(exc: MgnCutoverError) -> str:
    """A run's refusal (bad input, locked, account, journal) as one JSON log line."""
    event: dict[str, Any] = {
        "event": "run_refused",
        "level": "error",
        "timestamp": datetime.now(UTC).isoformat(),
        "exit_code": exc.exit_code,
        "error_type": type(exc).__name__,
        "error": str(exc),
    }
    if isinstance(exc, InputError) and exc.diagnostics:
        event["diagnostics"] = [str(d) for d in exc.diagnostics]
    return json.dumps(event)


def _dispatch(ns: argparse.Namespace) -> int:
    if ns.command == "simulate":
        from orchestrator.emulator import cli as emulator_cli

        return emulator_cli.main(ns)
    if ns.command == "validate":
        return _validate(ns)
    from orchestrator import commands

    handlers = {
        "plan": commands.cmd_plan,
        "run": commands.cmd_run,
        "report": commands.cmd_report,
        "status": commands.cmd_status,
        "export-plan": commands.cmd_export_plan,
    }
    return handlers[ns.command](ns)


def _validate(ns: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.errors import Diagnostic, InputError
    from orchestrator.plan import LoadResult, load_waves, select_wave

    # Config and plans are both checked, so one run shows every problem of both.
    problems: list[Diagnostic] = []
    try:
        load_config(ns.config, os.environ, {})
    except InputError as exc:
        problems.extend(exc.diagnostics)
    result = LoadResult(())
    try:
        result = load_waves(ns.paths)
    except InputError as exc:
        problems.extend(exc.diagnostics)
    if problems:
        raise InputError(problems)
    for warning in result.warnings:
        print(str(warning), file=sys.stderr)
    waves = result.waves if ns.wave is None else (select_wave(result, ns.wave),)
    for wave in waves:
        print(
            f"{wave.source}: wave {wave.name}: {len(wave.applications)} applications, "
            f"{len(wave.servers)} servers"
        )
    return 0
