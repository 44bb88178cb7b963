"""`status`: where a wave stands now, from its journal and MGN's live state, during a run too.

The journal is SQLite in WAL mode, so it can be read while a run holds the wave's lock. With the
plan, each application is read in its own account and region and shown by its name; without
it, the last finished run's account and region are used (the journal knows no names).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Config
from orchestrator.files import wave_dir
from orchestrator.journal import JournalEntry, StepEntry
from orchestrator.lock import LOCK_FILE
from orchestrator.outcome import RunRecord, ServerResult
from orchestrator.plan import Wave
from orchestrator.views import ServerView

# Journal states whose finalize may have gone out and that MGN has not confirmed yet.
_SENT = frozenset({"intent", "accepted"})


@dataclass(frozen=True)
class Target:
    """Where one server is read: its application and (account, region), from the plan."""

    server_id: str
    application_id: str
    application_name: str | None
    account_id: str | None
    region: str | None


def targets(wave: Wave) -> list[Target]:
    """Every server of the plan with its application's account and region (the wave's where
    the application names none)."""
    found = []
    for app in wave.applications:
        account = getattr(app, "account_id", None) or wave.account_id
        region = getattr(app, "region", None) or wave.region
        for server in app.servers:
            found.append(
                Target(server.source_server_id, app.application_id, app.name, account, region)
            )
    return found


def since(entry: JournalEntry) -> str:
    """When the server entered its journal state."""
    if entry.status == "converged":
        return entry.converged_at or entry.finalized_at or "-"
    if entry.status == "accepted":
        return entry.finalized_at or entry.intent_at or "-"
    return entry.intent_at or "-"


def run_in_progress(state_dir: Path, wave: str) -> str | None:
    """`pid 123 on host, since T` when the wave's lock names a live holder on this host (or
    one on another host, which cannot be checked from here); None otherwise. `state_dir` is
    the MGN's folder of it (`state.state_root`).

    The lock file is only read, never locked: status must not get in a run's way.
    """
    try:
        raw = (wave_dir(state_dir, wave) / LOCK_FILE).read_text(encoding="utf-8")
        holder = json.loads(raw)
        pid, host, started = int(holder["pid"]), str(holder["host"]), str(holder["started_at"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # the last holder, gone
        except PermissionError:
            pass
        return f"pid {pid} on {host}, since {started}"
    return f"pid {pid} on {host} (another host: may have ended), since {started}"


def table(
    server_targets: Sequence[Target],
    entries: Mapping[str, JournalEntry],
    last: Mapping[str, ServerResult],
    views: Mapping[str, ServerView],
) -> list[str]:
    """One row per server: the application, last outcome, journal state and since when, the
    (account, region) it is read in, and MGN's live state there."""
    rows = [
        (
            "SERVER",
            "APPLICATION",
            "LAST_OUTCOME",
            "JOURNAL",
            "SINCE",
            "ACCOUNT",
            "REGION",
            "MGN_STATE",
            "REPLICATION",
        )
    ]
    for t in server_targets:
        entry, view, result = (
            entries.get(t.server_id),
            views.get(t.server_id),
            last.get(t.server_id),
        )
        rows.append(
            (
                t.server_id,
                t.application_name or t.application_id,
                result.outcome.value if result else "-",
                entry.status if entry else "-",
                since(entry) if entry else "-",
                t.account_id or "-",
                t.region or "-",
                (view.lifecycle_state if view else "not found") or "?",
                (view.replication_state if view else "-") or "?",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def pending(
    server_targets: Sequence[Target],
    entries: Mapping[str, JournalEntry],
    views: Mapping[str, ServerView],
) -> list[str]:
    """Servers whose finalize was sent (journal intent or accepted) that MGN does not yet show
    as CUTOVER + DISCONNECTED, oldest first, each with since when."""
    waiting = []
    for t in server_targets:
        entry, view = entries.get(t.server_id), views.get(t.server_id)
        if entry is None or entry.status not in _SENT or (view is not None and view.converged):
            continue
        waiting.append((since(entry), t))
    lines = []
    for when, t in sorted(waiting, key=lambda pair: pair[0]):
        app = t.application_name or t.application_id
        lines.append(f"  {t.server_id}  {app}  finalize {entries[t.server_id].status} since {when}")
    return lines


def approvals_waiting(
    steps: Mapping[str, Mapping[str, StepEntry]],
    approvals_of: Callable[[str], Mapping[str, tuple[str, str]]],
    names: Mapping[str, str | None],
) -> list[str]:
    """Applications a `run --launch --require-approval` waits on (their servers verified, the
    approval step journaled, no approval of that run yet: `approvals_of(run_id)`), oldest
    first, with since when and the command."""
    since: dict[str, str] = {}
    given: dict[str, Mapping[str, tuple[str, str]]] = {}
    for server_steps in steps.values():
        step = server_steps.get("approval")
        if step is None or step.status != "intent" or step.run_id is None:
            continue
        app = step.detail or ""
        if step.run_id not in given:
            given[step.run_id] = approvals_of(step.run_id)
        if app and app not in given[step.run_id]:
            since[app] = min(since.get(app, step.at), step.at)
    lines = []
    for app, at in sorted(since.items(), key=lambda kv: kv[1]):
        label = f"{names.get(app)} ({app})" if names.get(app) else app
        lines.append(
            f"  {label}  verified, waiting since {at}: mgn-cutover approve PLAN --wave WAVE "
            f"--application {app}"
        )
    return lines


def render(
    wave: str,
    server_targets: Sequence[Target],
    entries: Mapping[str, JournalEntry],
    last: Mapping[str, ServerResult],
    views: Mapping[str, ServerView],
    running: str | None,
    waiting_approval: Sequence[str] = (),
) -> str:
    """The whole status: the table, then what is pending and since when, then approvals."""
    lines = [f"wave {wave}: " + (f"a run is in progress ({running})" if running else "no run")]
    lines += ["", *table(server_targets, entries, last, views)]
    waiting = pending(server_targets, entries, views)
    lines += ["", f"Pending: {len(waiting)} finalized server(s) not yet confirmed by MGN"]
    lines += waiting
    approvals = list(waiting_approval)
    if approvals:
        lines += ["", f"Waiting for approval: {len(approvals)}", *approvals]
    return "\n".join(lines)


def journal_targets(
    config: Config,
    entries: dict[str, JournalEntry],
    last: dict[str, ServerResult],
    record: RunRecord | None,
) -> list[Target]:
    """Without a plan: the servers the journal and the last run know, in the last run's
    account and region (the plan is needed for each application's own)."""
    account = region = None
    if record is not None:
        account = str(record.config.get("account_id") or "") or None
        region = str(record.config.get("region") or "") or None
    found = []
    for sid in sorted(set(entries) | set(last)):
        app_id = entries[sid].application_id if sid in entries else last[sid].application_id
        result = last.get(sid)
        name = result.application_name if result else None
        # Each server where the last run reached it (its own account and region), else the run's.
        where_account = (result.account_id if result else None) or account or config.account_id
        where_region = (result.region if result else None) or region or config.region
        found.append(Target(sid, app_id, name, where_account, where_region))
    return found
