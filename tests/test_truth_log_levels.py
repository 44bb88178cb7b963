"""Log levels mean something (issue 21, point 13): what needs a person after the night is a
warning, account and internal errors are errors, and every event the package emits is in the
table of docs/operations.md at the level it is emitted.

`run_wave` in-process on the emulator over HTTP with its logs captured; the table is checked
against the package's source, read with `ast`.
"""

from __future__ import annotations

import ast
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator import commands, ledger, stop
from orchestrator.config import Config
from orchestrator.gateway import Gateway
from orchestrator.journal import Journal
from orchestrator.mgn import ClientSettings, MgnClient
from orchestrator.notify import Notifier
from orchestrator.plan import load_waves
from orchestrator.runner import RunState, run_wave
from tests.runhelp import aid, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestrator"
NIGHT: dict[str, Any] = {
    "time_scale": 2000.0,
    "launch_s": (60.0, 120.0),
    "boot_s": (30.0, 60.0),
    "action_s": (10.0, 20.0),
    "post_launch_actions": (),
}


async def _run(emulator: Any, work: Path, plan: Path, **config: Any) -> list[dict[str, Any]]:
    """Run the plan's wave in-process against the emulator, telling each settled application
    as `run` does (commands' teller, a notifier with no destination); the events it logged."""
    wave = load_waves([plan]).waves[0]
    settings = Config(
        region="us-east-1",
        endpoint_url=emulator.url,
        poll_interval_s=0.05,
        finalize_rate=200,
        describe_rate=200,
        reconcile_timeout_s=5,
        **config,
    )
    state = RunState(wave=wave.name, dry_run=False)
    client = ClientSettings(region="us-east-1", endpoint_url=emulator.url)
    tell = commands._teller(Notifier([]), wave, False, None, state)
    with Journal.open(work / "state", wave.name) as journal, capture_logs() as logs:
        async with MgnClient(client) as c:
            gateway = Gateway(c, settings, stop=state.stop)
            await run_wave(wave, settings, gateway, journal, state, on_application=tell)
    return logs


def _levels(logs: list[dict[str, Any]], event: str, **match: Any) -> set[str]:
    return {
        e["log_level"]
        for e in logs
        if e["event"] == event and all(e.get(k) == v for k, v in match.items())
    }


async def test_blocked_unconfirmed_and_exhausted_retries_are_warnings(
    emulator: Any, work_dir: Path
) -> None:
    """A blocked server and its application, and a FinalizeCutover answered 5xx until its
    retries ran out (so unconfirmed, its application failed) are warnings, not info."""
    groups = {aid(0): [sid(0, 0)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0), firstBoot="WAITING"),
                server(sid(1, 0), aid(1)),
            ]
        }
    )
    emulator.set_faults(error_rate=1.0, fault_ops=frozenset({"FinalizeCutover"}))
    plan = write_plan(work_dir, "w", groups)
    logs = await _run(emulator, work_dir, plan, max_attempts=2)
    assert _levels(logs, "server_blocked") == {"warning"}, [e["event"] for e in logs]
    assert _levels(logs, "server_unconfirmed") == {"warning"}
    assert _levels(logs, "call_retries_exhausted") == {"warning"}
    assert _levels(logs, "application_done", applicationID=aid(0)) == {"warning"}
    assert _levels(logs, "application_done", applicationID=aid(1)) == {"warning"}
    assert _levels(logs, "call_retry") == {"info"}  # a retry that may still succeed


async def test_an_account_error_is_an_error(emulator: Any, work_dir: Path) -> None:
    """Access denied stops the run: its stop event is an error, not a warning."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    emulator.set_faults(access_denied=True)
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    logs = await _run(emulator, work_dir, plan)
    assert _levels(logs, "run_stopping", reason="account_error") == {"error"}, logs


async def test_a_failed_launch_and_its_revert_are_warnings(emulator: Any, work_dir: Path) -> None:
    """A first boot that fails under `--launch --on-failure revert`: the failed launch, the
    revert and the failed application are warnings; the finalized application is info."""
    groups = {aid(0): [sid(0, 0)], aid(1): [sid(1, 0)]}
    ready = {"state": "READY_FOR_CUTOVER", "lagDuration": "PT5S"}
    emulator.seed(
        {
            "servers": [
                {"sourceServerID": sid(0, 0), "applicationID": aid(0), **ready, "bootFails": True},
                {"sourceServerID": sid(1, 0), "applicationID": aid(1), **ready},
            ]
        }
    )
    emulator.set_faults(**NIGHT)
    plan = write_plan(work_dir, "night", groups)
    logs = await _run(emulator, work_dir, plan, launch=True, on_failure="revert")
    assert _levels(logs, "server_launch_failed") == {"warning"}, [e["event"] for e in logs]
    assert _levels(logs, "server_reverted") == {"warning"}
    assert _levels(logs, "application_done", applicationID=aid(0)) == {"warning"}
    assert _levels(logs, "application_done", applicationID=aid(1)) == {"info"}
    assert _levels(logs, "server_converged") == {"info"}


# --- the table ------------------------------------------------------------------------------

_LEVEL_WORDS = ("debug", "info", "warning", "error", "critical")
_METHOD_LEVEL = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
}


def _name(level: int) -> str:
    return logging.getLevelName(level).lower()


def _dynamic() -> dict[tuple[str, str], dict[str, set[str]]]:
    """Events whose name or level the code computes: (file, the call's first arguments as
    written) -> each event it can emit with its levels, taken from the code's own mappings."""
    moved = {
        f"server_{fate.value}": {_name(ledger._FINAL_LOG_LEVELS.get(fate, logging.WARNING))}
        for fate in ledger.FINAL - ledger._CONVERGED
    }
    stopping = {_name(level) for level in stop._STOP_LOG_LEVELS.values()}
    done = {_name(level) for level in commands._APPLICATION_LOG_LEVELS.values()} | {"info"}
    return {
        ("ledger.py", "_FINAL_LOG_LEVELS.get(to, logging.WARNING), 'server_' + to.value"): moved,
        ("stop.py", "_STOP_LOG_LEVELS[reason], event"): {
            "run_stopping": stopping,
            "part_stopping": stopping,
        },
        ("commands.py", "level, 'application_done'"): {"application_done": done},
    }


def _emitted() -> dict[str, set[str]]:
    """Every event `log.<level>(...)` (or a hand-written JSON event) emits in the package,
    the emulator excluded, with the levels it is emitted at."""
    found: dict[str, set[str]] = defaultdict(set)
    dynamic, unknown = _dynamic(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "emulator" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):  # cli.py's run_refused, written as JSON by hand
                pairs = {
                    k.value: v.value
                    for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                }
                if isinstance(pairs.get("event"), str) and pairs.get("level") in _LEVEL_WORDS:
                    found[pairs["event"]].add(pairs["level"])
                continue
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
            ):
                continue
            method, first = node.func.attr, node.args[0]
            if method in _METHOD_LEVEL and isinstance(first, ast.Constant):
                found[first.value].add(_METHOD_LEVEL[method])
            elif method in _METHOD_LEVEL or method == "log":
                where = (path.name, ", ".join(ast.unparse(a) for a in node.args))
                if where not in dynamic:
                    unknown.append(f"{path.name}:{node.lineno}: {where[1]}")
                    continue
                for event, levels in dynamic[where].items():
                    found[event] |= levels
    assert not unknown, f"events with a computed name or level, not known here: {unknown}"
    return dict(found)


def _table() -> dict[str, set[str]]:
    """docs/operations.md's Logs table: event -> the levels its row names."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Logs\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        levels = set(re.findall(r"[a-z]+", cells[1])) & set(_LEVEL_WORDS)
        for event in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            assert event not in rows, f"{event} has two rows"
            rows[event] = levels
    return rows


def test_every_emitted_event_is_in_the_operations_table_at_its_level() -> None:
    """Each event the package's source emits has a row in docs/operations.md naming exactly
    the levels it is emitted at, and the table names no event the code never emits."""
    emitted, table = _emitted(), _table()
    missing = sorted(set(emitted) - set(table))
    assert not missing, f"events missing from docs/operations.md: {missing}"
    wrong = {e: (sorted(emitted[e]), sorted(table[e])) for e in emitted if emitted[e] != table[e]}
    assert not wrong, f"event: (levels in the code, levels in the table): {wrong}"
    stale = sorted(set(table) - set(emitted))
    assert not stale, f"docs/operations.md names events nothing emits: {stale}"
