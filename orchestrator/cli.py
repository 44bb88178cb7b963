"""The `mgn-cutover` command: parse arguments, dispatch to a command, map errors to an exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from orchestrator import __version__, collector
from orchestrator.config import SETTINGS, Command
from orchestrator.errors import ExitCode, InputError, MgnCutoverError
from orchestrator.logs import use_json
from orchestrator.validation import did_you_mean


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and a did-you-mean for unknown flags."""

    def parse_args(  # type: ignore[override]  # always a Namespace here
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self.subcommand(getattr(ns, "command", None))
            parser.error(parser.unknown_message(extras))
        return ns

    def subcommand(self, name: str | None) -> _Parser:
        """The parser of command `name` (itself when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                parser: _Parser = action.choices[name]
                return parser
        return self

    def unknown_message(self, extras: Sequence[str]) -> str:
        """`unknown flag --x; did you mean --y?` for each flag not taken, on one line.

        Other leftovers are named only when no flag is unknown: they may be its value.
        """
        # argparse keeps no public list of a parser's flags: read its option table.
        known = [flag for flag in self._option_string_actions if flag.startswith("--")]
        parts = []
        for extra in extras:
            if extra.startswith("-"):
                flag = extra.split("=", 1)[0]
                guess = did_you_mean(flag, known)
                parts.append(f"unknown flag {flag}" + (f"; did you mean {guess}?" if guess else ""))
        return ", ".join(parts) or f"unexpected arguments: {' '.join(extras)}"

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_settings(p: argparse.ArgumentParser, command: Command) -> None:
    """The `--config` flag and every setting flag `command` takes, from config.SETTINGS."""
    g = p.add_argument_group("settings (flag > environment > config file > default)")
    g.add_argument("--config", type=Path, metavar="FILE", help="YAML config file")
    for s in SETTINGS:
        if s.flag is None or command not in s.commands:
            continue
        helptext = f"{s.help} [{s.env}]"
        if s.switch:
            g.add_argument(s.flag, dest=s.name, action="store_const", const=True, help=helptext)
        elif s.choices:
            g.add_argument(s.flag, dest=s.name, choices=s.choices, help=helptext)
        else:
            g.add_argument(s.flag, dest=s.name, metavar=s.metavar, help=helptext)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    _add_settings(p, "plan")

    p = sub.add_parser("export-plan", help="write a plan file from MGN's own waves")
    p.add_argument("--mgn-wave", dest="mgn_wave", required=True, metavar="NAME_OR_ID")
    p.add_argument("--wave", help="name for the exported wave (default: MGN's wave name)")
    p.add_argument(
        "--all-accounts",
        action="store_true",
        help="the wave from every account ListManagedAccounts lists, one plan",
    )
    p.add_argument(
        "--regions",
        type=lambda text: [r.strip() for r in text.split(",") if r.strip()],
        default=[],
        metavar="R1,R2",
        help="with --all-accounts: the regions to walk (default: --region)",
    )
    _add_settings(p, "export-plan")

    p = sub.add_parser("run", help="finalize a wave's ready servers, reconcile, report")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--wave", required=True)
    p.add_argument("--dry-run", action="store_true", help="pre-flight and report; no mutating call")
    p.add_argument(
        "--application",
        dest="applications",
        action="append",
        metavar="ID_OR_NAME",
        help="only this application, by applicationID or the plan's name (repeatable)",
    )
    _add_settings(p, "run")

    p = sub.add_parser("report", help="re-render a wave's report from its journal")
    p.add_argument("--wave", required=True)
    p.add_argument(
        "--run",
        metavar="ID",
        help="re-render this run's report (its run ID, or the first 6+ characters of it); "
        "default: the wave's report",
    )
    _add_settings(p, "report")

    p = sub.add_parser("approve", help="approve finalizing a verified application (run --launch)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--wave", required=True)
    p.add_argument(
        "--application",
        dest="applications",
        action="append",
        required=True,
        metavar="ID_OR_NAME",
        help="the application to approve, by applicationID or the plan's name (repeatable)",
    )
    p.add_argument("--by", metavar="NAME", help="who approves (default: $USER)")
    _add_settings(p, "approve")

    p = sub.add_parser("status", help="journal and live MGN state side by side")
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="plan files or folders: each application's account, region and name from the plan "
        "(without them: the journal and the last run's account and region)",
    )
    p.add_argument("--wave", required=True)
    _add_settings(p, "status")

    p = sub.add_parser("state", help="the DynamoDB state table (state_backend dynamodb)")
    actions = p.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "init", help="create the table (on-demand, point-in-time recovery on), or report it"
    )
    p.add_argument("--table", required=True, metavar="NAME", help="the table's name")
    _add_settings(p, "state")

    p = sub.add_parser("import", help="write wave plans from MGN's import CSV (names -> IDs)")
    p.add_argument("file", type=Path, metavar="FILE.csv")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the plans")
    p.add_argument("--force", action="store_true", help="overwrite plans that exist")
    _add_settings(p, "import")

    from orchestrator.emulator.args import add_arguments as add_simulate_arguments

    p = sub.add_parser("simulate", help="serve the MGN emulator for a rehearsal")
    add_simulate_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the program itself, not a caller in the same process
        collector.for_the_program()
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = parser.parse_args(args)
    except SystemExit as exit_:
        # A `run` refused by argparse still tells cron, on stdout, that the night did not happen.
        if exit_.code == ExitCode.BAD_INPUT and args[:1] == ["run"]:
            print(refusal_line(_wave_in(args), ExitCode.BAD_INPUT, "bad arguments (see stderr)"))
        raise
    try:
        code = _dispatch(ns)
    except MgnCutoverError as exc:
        if ns.command == "run":
            print(refusal_line(ns.wave, exc.exit_code, _why(exc)))  # cron mails stdout
        if ns.command == "run" and use_json(ns.log_format or "auto", sys.stderr):
            print(_error_event(exc, ns.wave), file=sys.stderr)  # cron: stderr stays JSON lines
            return exc.exit_code
        # Diagnostics already read `file:line:col: message`; anything else gets our prefix.
        located = isinstance(exc, InputError) and exc.diagnostics
        print(str(exc) if located else f"mgn-cutover: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if ns.command == "run":
            print(refusal_line(ns.wave, ExitCode.INTERRUPTED, "interrupted before it started"))
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if ns.command == "run":  # a bug: say so on stdout too, then let the traceback show
            print(refusal_line(ns.wave, 1, f"internal error {type(exc).__name__} (see stderr)"))
        raise
    if ns.command == "run" and argv is None and sys.getprofile() is None:
        _exit_now(code)  # not under cProfile, which writes its file at the interpreter's exit
    return code


def _exit_now(code: int) -> NoReturn:
    """End the `mgn-cutover run` process once everything is written: the run has closed its
    journal, lock, clients and files and awaited its notifications. Skips the interpreter's
    teardown, which frees every object of a large wave one by one (~0.1 s at 4,000 servers)."""
    logging.shutdown()  # the standard library's handlers, if a library added any
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing to do
            stream.flush()
    os._exit(code)


def refusal_line(wave: str | None, exit_code: int, why: str) -> str:
    """The one stdout line of a run that did not start: wave, exit code and why, on one line."""
    return f"wave {wave or '?'}: refused exit={int(exit_code)} why: {' '.join(why.split())}"


def _why(exc: MgnCutoverError) -> str:
    """The reason in a line: the first diagnostic (and how many more), or the message."""
    if isinstance(exc, InputError) and exc.diagnostics:
        more = len(exc.diagnostics) - 1
        return str(exc.diagnostics[0]) + (f" (and {more} more, see stderr)" if more else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _wave_in(args: Sequence[str]) -> str | None:
    """--wave's value in raw arguments (argparse refused them, so no Namespace exists)."""
    for i, arg in enumerate(args):
        if arg == "--wave" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--wave="):
            return arg.partition("=")[2]
    return None


def _error_event(exc: MgnCutoverError, wave: str | None) -> str:
    """A run's refusal (bad input, locked, account, journal) as one JSON log line."""
    event: dict[str, Any] = {
        "event": "run_refused",
        "level": "error",
        "timestamp": datetime.now(UTC).isoformat(),
        "wave": wave,
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
    if ns.command == "state":
        from orchestrator.state import cmd_state

        return cmd_state(ns)
    if ns.command == "import":
        from orchestrator.importer import cmd_import

        return cmd_import(ns)
    from orchestrator import commands

    handlers = {
        "validate": commands.cmd_validate,
        "plan": commands.cmd_plan,
        "run": commands.cmd_run,
        "report": commands.cmd_report,
        "status": commands.cmd_status,
        "approve": commands.cmd_approve,
        "export-plan": commands.cmd_export_plan,
    }
    return handlers[ns.command](ns)
