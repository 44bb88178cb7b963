"""What happened to each server: the records the pool, the journal and the report share."""

from __future__ import annotations

import json
import operator
import uuid
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from orchestrator import rowmemo


class Outcome(StrEnum):
    """A server's final outcome in a run's report."""

    FINALIZED = "finalized"
    ALREADY_CUTOVER = "already_cutover"
    WOULD_FINALIZE = "would_finalize"
    BLOCKED = "blocked"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    NOT_ATTEMPTED = "not_attempted"
    UNCONFIRMED = "unconfirmed"  # our call may have gone through; MGN has not shown it
    WOULD_LAUNCH = "would_launch"  # dry run of `run --launch`: a real run would launch it
    REVERTED = "reverted"  # launched, then reverted to READY_FOR_CUTOVER (--on-failure revert)
    # MGN accepted the finalize (or shows CUTOVER), the run stopped before its --timeout and
    # before MGN showed CUTOVER + DISCONNECTED: not timed out, not confirmed; a rerun only polls.
    ACCEPTED = "accepted"


EXIT_MEANINGS = {
    0: "every server converged",
    1: "something was blocked, failed, timed out, unconfirmed or not attempted, "
    "or the run was interrupted",
    2: "bad input, config or journal",
    3: "another run holds this wave's lock",
    4: "account or credential error: nothing more was sent to that account",
    5: "local state (the journal) could not be written: nothing more was sent",
    6: "started outside its cutover window: nothing was sent",
}
DRY_RUN_EXIT_0 = "go: a real run now would finalize (or launch) every server not already converged"


def exit_meaning(exit_code: int, dry_run: bool = False) -> str:
    """What an exit code of `mgn-cutover run` means, in a few words."""
    if exit_code == 0 and dry_run:
        return DRY_RUN_EXIT_0
    return EXIT_MEANINGS.get(exit_code, "unexpected exit code")


# Outcomes that mean the server is where the wave wants it.
CONVERGED_OUTCOMES = frozenset({Outcome.FINALIZED, Outcome.ALREADY_CUTOVER})


@dataclass(frozen=True, slots=True)  # one per server, 40,000 in a big wave
class ServerResult:
    """One server's row in the report, a value: never changed once made (`rowmemo` keys
    what each row renders to by its value). Times are ISO 8601 UTC strings or None."""

    source_server_id: str
    application_id: str
    name: str | None = None
    outcome: Outcome = Outcome.NOT_ATTEMPTED
    reason: str | None = None
    lifecycle_state: str | None = None
    replication_state: str | None = None
    first_boot: str | None = None
    ec2_instance_id: str | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    finalized_at: str | None = None
    converged_at: str | None = None
    application_name: str | None = None
    launch_job_id: str | None = None  # the launch job of `run --launch`
    archived_at: str | None = None  # when MarkAsArchived was accepted (`--archive`)
    # The (account, region) the server was reached in (None: the caller's own / the default).
    account_id: str | None = None
    region: str | None = None
    # What happened to the server in this run: {"at", "event", "detail"}, oldest first.
    timeline: list[dict[str, str | None]] = field(default_factory=list)


@dataclass
class RunRecord:
    """A whole run, as the report renders it."""

    wave: str
    dry_run: bool
    started_at: str
    finished_at: str
    exit_code: int
    interrupted: bool
    config: dict[str, Any]
    servers: list[ServerResult] = field(default_factory=list)
    account_error: str | None = None
    run_id: str | None = None
    description: str | None = None
    # Why the run stopped early (signal, account_error, local_state, window_closed), if it did.
    stop_reason: str | None = None
    # True when something unexpected escaped the run: outcomes may be missing details.
    incomplete: bool = False
    # The applications this run worked on (all of the wave's unless --application was given).
    covered_applications: list[str] | None = None
    # This run's own exit code when it covered only part of the wave (exit_code is the wave's).
    run_exit_code: int | None = None
    # Loud warnings a reader must see (e.g. another wave's plan file that could not be read).
    warnings: list[str] = field(default_factory=list)


def record_json(record: RunRecord) -> str:
    """The record as `json.dumps(dataclasses.asdict(record), default=str)` writes it, without
    asdict's deep copy of every row and timeline: each row becomes a dict only while it is
    encoded. With a row memo (`rowmemo`), rows it already holds are not encoded again."""
    if rowmemo.current() is None:
        return json.dumps(record, default=_plain)
    # The rows spliced in where a placeholder no value can hold stands (json.dumps writes a
    # list as its items' own texts joined by ", ").
    placeholder = f"mgn-cutover-rows-{uuid.uuid4().hex}"
    head = json.dumps({**_plain_record(record), "servers": placeholder}, default=_plain)
    rows = ", ".join(record_row_json(row) for row in record.servers)
    return head.replace(json.dumps(placeholder), f"[{rows}]", 1)


def record_row_json(row: ServerResult) -> str:
    """One row as `record_json` writes it inside the record, kept in the row memo if any."""
    return rowmemo.piece("record", row, lambda: json.dumps(row, default=_plain))


def _plain(value: object) -> object:
    if isinstance(value, ServerResult):
        return dict(zip(_SERVER_FIELDS, _server_values(value), strict=True))
    if isinstance(value, RunRecord):
        return _plain_record(value)
    return str(value)


def _plain_record(record: RunRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


_SERVER_FIELDS = tuple(f.name for f in fields(ServerResult))
_server_values = operator.attrgetter(*_SERVER_FIELDS)  # one C call per row, in field order


def run_record_from_dict(data: dict[str, Any]) -> RunRecord:
    """Rebuild a RunRecord from `dataclasses.asdict` output, e.g. read back from JSON.

    Unknown keys are ignored, so a record written by a later version still loads. Raises
    TypeError or ValueError if a required field is missing or an outcome is unknown.
    """
    servers = []
    for raw in data.get("servers", []):
        values = _known_fields(ServerResult, raw)
        values["outcome"] = Outcome(values.get("outcome", Outcome.NOT_ATTEMPTED))
        servers.append(ServerResult(**values))
    return RunRecord(**{**_known_fields(RunRecord, data), "servers": servers})


def _known_fields(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
