"""The ledger: where each server's fate is decided, and the only writer of its outcome and journal.

The pre-flight, the finalize pool and the reconciler only report what they saw (events); the
ledger moves the server between states and writes the journal entry that goes with the move.
`docs/lifecycle.md` draws the same table as a diagram.

| from                        | event     | to                                               |
|-----------------------------|-----------|--------------------------------------------------|
| UNCHECKED                   | CHECKED   | READY (WOULD_FINALIZE in a dry run), BLOCKED,    |
|                             |           | ALREADY_CUTOVER*, CUTOVER_PENDING; after an      |
|                             |           | earlier run's accepted finalize: FINALIZED*,     |
|                             |           | ACCEPTED                                         |
| READY, WOULD_FINALIZE       | GATED     | BLOCKED (a sibling is blocked)                   |
| READY, SENDING              | SENT      | SENDING (intent journaled, one attempt sent)     |
| SENDING                     | ANSWERED  | ACCEPTED (MGN answered 200; journal: accepted)   |
| SENDING                     | REFUSED   | 409 and MGN shows CUTOVER: ACCEPTED if an earlier|
|                             |           | attempt of ours may have gone through, else      |
|                             |           | CUTOVER_PENDING; 409 and CUTTING_OVER:           |
|                             |           | UNRESOLVED; 404, 400, other 409, retries out     |
|                             |           | with no ambiguous attempt: FAILED (both hold the |
|                             |           | application; journal: failed)                    |
| SENDING                     | AMBIGUOUS | UNCONFIRMED (dropped, timed out, 5xx, stopped on |
|                             |           | the wire: it may have gone through)              |
| READY, SENDING              | HELD      | HELD (a sibling was refused), or UNCONFIRMED     |
| READY, SENDING              | STOPPED   | NOT_ATTEMPTED, or UNCONFIRMED                    |
| ACCEPTED, UNCONFIRMED,      | OBSERVED  | MGN shows CUTOVER + DISCONNECTED: FINALIZED* if  |
| UNRESOLVED, CUTOVER_PENDING,|           | we sent it, else ALREADY_CUTOVER*                |
| TIMED_OUT                   |           |                                                  |
| ACCEPTED, CUTOVER_PENDING   | EXPIRED   | TIMED_OUT (the reconciler's deadline passed)     |
| UNCHECKED, READY, SENDING,  | SETTLED   | the run ended: NOT_ATTEMPTED, UNCONFIRMED,       |
| ACCEPTED, CUTOVER_PENDING   |           | TIMED_OUT; STOPPED_WAITING when a stop ended the |
|                             |           | polls before the deadline (never TIMED_OUT early)|

`*`: journal entry `converged`. "or UNCONFIRMED": when an earlier attempt may have gone through.
The intent is journaled before every attempt; without it nothing is sent.

Rules the table encodes:
- *Accepted* means MGN answered 200, or showed CUTOVER after our call. A 409 while MGN still
  shows CUTTING_OVER is unresolved, never accepted: a rerun sends again if MGN still shows it.
- The application gate holds at pre-flight and at finalize time: once one server of an
  application is definitively refused, none of its siblings not yet sent is sent.
- An ambiguous call that MGN then shows CUTOVER + DISCONNECTED was finalized by this run.
- A row never contradicts its columns: CUTOVER + DISCONNECTED is always FINALIZED or
  ALREADY_CUTOVER, and those states always show CUTOVER + DISCONNECTED. The columns are MGN's
  last word: a 200's body (the server record) until a later read; at the end, a view showing
  CUTOVER + DISCONNECTED moves an ACCEPTED or TIMED_OUT row to FINALIZED (OBSERVED).
- A dry run (no journal) writes nothing and reports nothing as converged that MGN does not show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog

from orchestrator.errors import ExitCode, MgnError, RetryableError, StateWriteError
from orchestrator.journal import JournalEntry
from orchestrator.outcome import CONVERGED_OUTCOMES, Outcome, ServerResult
from orchestrator.plan import Server, Wave
from orchestrator.preflight import Check, Decision
from orchestrator.stop import Stop, StopReason
from orchestrator.views import CLOCK_SKEW_S, CUTOVER, CUTTING_OVER, ServerView, iso_time_s

log = structlog.get_logger(__name__)


class Fate(StrEnum):
    """Where one server stands in this run."""

    UNCHECKED = "unchecked"  # in the plan; MGN not read yet
    UNCOVERED = "uncovered"  # in the wave, outside this run's --application subset
    BLOCKED = "blocked"  # the pre-flight found it may not be finalized
    READY = "ready"  # will be sent FinalizeCutover
    WOULD_FINALIZE = "would_finalize"  # dry run: a real run would send it
    HELD = "held"  # a sibling was refused: never sent
    SENDING = "sending"  # intent journaled; a FinalizeCutover on the wire or being retried
    ACCEPTED = "accepted"  # MGN accepted our finalize; waiting for CUTOVER + DISCONNECTED
    UNCONFIRMED = "unconfirmed"  # our call may have gone through; MGN has not shown it
    UNRESOLVED = "unresolved"  # 409 while MGN still shows CUTTING_OVER
    CUTOVER_PENDING = "cutover_pending"  # CUTOVER outside this run, replication not yet off
    FINALIZED = "finalized"  # CUTOVER + DISCONNECTED, and we sent it
    ALREADY_CUTOVER = "already_cutover"  # CUTOVER + DISCONNECTED without our call
    FAILED = "failed"  # definitively refused
    TIMED_OUT = "timed_out"  # accepted, not confirmed before the deadline
    STOPPED_WAITING = "stopped_waiting"  # accepted, the run stopped before its deadline
    NOT_ATTEMPTED = "not_attempted"  # stopped before it was sent
    # The night before the finalize (`run --launch`):
    LAUNCH_READY = "launch_ready"  # READY_FOR_CUTOVER and healthy: will be launched
    WOULD_LAUNCH = "would_launch"  # dry run: a real run would launch it
    LAUNCHING = "launching"  # launch intent journaled; StartCutover sent or about to be
    LAUNCHED = "launched"  # in a launch job: watched until verified or failed
    VERIFIED = "verified"  # launched, booted, actions done: waits for its application
    AWAITING_APPROVAL = "awaiting_approval"  # its application waits for `approve`
    NOT_APPROVED = "not_approved"  # no approval before approve_timeout_s
    LAUNCH_FAILED = "launch_failed"  # launch, boot, a must-succeed action or time ran out
    REVERTED = "reverted"  # back to READY_FOR_CUTOVER (and its instance terminated)


class Event(StrEnum):
    """What the pre-flight, the pool or the reconciler report about one server."""

    CHECKED = "checked"
    GATED = "gated"
    SENT = "sent"
    ANSWERED = "answered"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"
    HELD = "held"
    STOPPED = "stopped"
    OBSERVED = "observed"
    EXPIRED = "expired"
    SETTLED = "settled"
    LAUNCH_SENT = "launch_sent"
    LAUNCH_ACCEPTED = "launch_accepted"
    LAUNCH_DEFERRED = "launch_deferred"
    LAUNCH_REFUSED = "launch_refused"
    VERIFY = "verify"
    APPROVE = "approve"
    LAUNCH_FAILURE = "launch_failure"
    REVERT = "revert"


F = Fate
_WAITING = frozenset({F.ACCEPTED, F.UNCONFIRMED, F.UNRESOLVED, F.CUTOVER_PENDING, F.TIMED_OUT})
# States the reconciler polls until MGN confirms (an unresolved 409 is only read back at the end).
POLLED = frozenset({F.ACCEPTED, F.UNCONFIRMED, F.CUTOVER_PENDING})
_CONVERGED = frozenset({F.FINALIZED, F.ALREADY_CUTOVER})

# Every allowed move; anything else is a bug and raises.
TRANSITIONS: dict[tuple[Fate, Event], frozenset[Fate]] = {
    (F.READY, Event.GATED): frozenset({F.BLOCKED}),
    (F.WOULD_FINALIZE, Event.GATED): frozenset({F.BLOCKED}),
    (F.READY, Event.SENT): frozenset({F.SENDING}),
    (F.SENDING, Event.SENT): frozenset({F.SENDING}),
    (F.SENDING, Event.ANSWERED): frozenset({F.ACCEPTED}),
    (F.SENDING, Event.REFUSED): frozenset(
        {F.ACCEPTED, F.CUTOVER_PENDING, F.FINALIZED, F.ALREADY_CUTOVER, F.UNRESOLVED, F.FAILED}
    ),
    (F.SENDING, Event.AMBIGUOUS): frozenset({F.UNCONFIRMED}),
    (F.READY, Event.HELD): frozenset({F.HELD, F.UNCONFIRMED}),
    (F.SENDING, Event.HELD): frozenset({F.HELD, F.UNCONFIRMED}),
    (F.READY, Event.STOPPED): frozenset({F.NOT_ATTEMPTED, F.UNCONFIRMED}),
    (F.SENDING, Event.STOPPED): frozenset({F.NOT_ATTEMPTED, F.UNCONFIRMED}),
    **{(w, Event.OBSERVED): frozenset({F.FINALIZED, F.ALREADY_CUTOVER}) for w in _WAITING},
    (F.ACCEPTED, Event.EXPIRED): frozenset({F.TIMED_OUT}),
    (F.CUTOVER_PENDING, Event.EXPIRED): frozenset({F.TIMED_OUT}),
    (F.UNCHECKED, Event.SETTLED): frozenset({F.NOT_ATTEMPTED}),
    (F.READY, Event.SETTLED): frozenset({F.NOT_ATTEMPTED}),
    (F.SENDING, Event.SETTLED): frozenset({F.UNCONFIRMED, F.NOT_ATTEMPTED}),
    (F.ACCEPTED, Event.SETTLED): frozenset({F.TIMED_OUT, F.STOPPED_WAITING}),
    (F.CUTOVER_PENDING, Event.SETTLED): frozenset({F.TIMED_OUT, F.STOPPED_WAITING}),
    # The night before the finalize.
    (F.UNCHECKED, Event.CHECKED): frozenset(
        {
            F.READY,
            F.WOULD_FINALIZE,
            F.BLOCKED,
            F.ALREADY_CUTOVER,
            F.CUTOVER_PENDING,
            F.FINALIZED,
            F.ACCEPTED,
            F.LAUNCH_READY,
            F.WOULD_LAUNCH,
            F.LAUNCHED,
            F.UNCONFIRMED,
        }
    ),
    (F.LAUNCH_READY, Event.GATED): frozenset({F.BLOCKED}),
    (F.WOULD_LAUNCH, Event.GATED): frozenset({F.BLOCKED}),
    (F.LAUNCHED, Event.GATED): frozenset({F.HELD}),
    (F.LAUNCH_READY, Event.LAUNCH_SENT): frozenset({F.LAUNCHING}),
    (F.LAUNCHING, Event.LAUNCH_ACCEPTED): frozenset({F.LAUNCHED, F.HELD}),
    (F.LAUNCHING, Event.LAUNCH_DEFERRED): frozenset({F.LAUNCH_READY}),
    (F.LAUNCHING, Event.LAUNCH_REFUSED): frozenset({F.LAUNCH_FAILED}),
    (F.LAUNCHED, Event.VERIFY): frozenset({F.VERIFIED}),
    (F.VERIFIED, Event.VERIFY): frozenset({F.READY, F.AWAITING_APPROVAL}),
    (F.AWAITING_APPROVAL, Event.APPROVE): frozenset({F.READY}),
    (F.AWAITING_APPROVAL, Event.EXPIRED): frozenset({F.NOT_APPROVED}),
    (F.LAUNCHED, Event.LAUNCH_FAILURE): frozenset({F.LAUNCH_FAILED}),
    (F.LAUNCH_READY, Event.LAUNCH_FAILURE): frozenset({F.LAUNCH_FAILED}),
    # StartCutover's answers stayed unclear and MGN shows no launch job: a rerun reads first.
    (F.LAUNCHING, Event.AMBIGUOUS): frozenset({F.UNCONFIRMED}),
    (F.LAUNCH_READY, Event.AMBIGUOUS): frozenset({F.UNCONFIRMED}),
    # CUTOVER read while watching a launch is convergence (an earlier run's finalize), not failure.
    **{
        (f, Event.OBSERVED): frozenset(
            {F.FINALIZED, F.ALREADY_CUTOVER, F.ACCEPTED, F.CUTOVER_PENDING}
        )
        for f in (F.LAUNCHED, F.VERIFIED)
    },
    (F.VERIFIED, Event.LAUNCH_FAILURE): frozenset({F.LAUNCH_FAILED}),
    **{(f, Event.HELD): frozenset({F.HELD}) for f in (F.LAUNCH_READY, F.LAUNCHED, F.VERIFIED)},
    (F.LAUNCH_FAILED, Event.REVERT): frozenset({F.REVERTED}),
    (F.HELD, Event.REVERT): frozenset({F.REVERTED}),
    (F.NOT_APPROVED, Event.REVERT): frozenset({F.REVERTED}),
    (F.LAUNCH_READY, Event.SETTLED): frozenset({F.NOT_ATTEMPTED}),
    (F.LAUNCHING, Event.SETTLED): frozenset({F.UNCONFIRMED}),
    (F.LAUNCHED, Event.SETTLED): frozenset({F.NOT_ATTEMPTED}),
    (F.VERIFIED, Event.SETTLED): frozenset({F.NOT_ATTEMPTED}),
    (F.AWAITING_APPROVAL, Event.SETTLED): frozenset({F.NOT_APPROVED}),
}

# States that end the run for a server (nothing moves them but a convergence seen by MGN).
FINAL = frozenset(
    {
        F.UNCOVERED,
        F.BLOCKED,
        F.WOULD_FINALIZE,
        F.HELD,
        F.UNCONFIRMED,
        F.UNRESOLVED,
        F.FINALIZED,
        F.ALREADY_CUTOVER,
        F.FAILED,
        F.TIMED_OUT,
        F.STOPPED_WAITING,
        F.NOT_ATTEMPTED,
        F.WOULD_LAUNCH,
        F.NOT_APPROVED,
        F.LAUNCH_FAILED,
        F.REVERTED,
    }
)

OUTCOMES: dict[Fate, Outcome] = {
    F.UNCHECKED: Outcome.NOT_ATTEMPTED,
    F.UNCOVERED: Outcome.NOT_ATTEMPTED,
    F.BLOCKED: Outcome.BLOCKED,
    F.READY: Outcome.NOT_ATTEMPTED,
    F.WOULD_FINALIZE: Outcome.WOULD_FINALIZE,
    F.HELD: Outcome.NOT_ATTEMPTED,
    F.SENDING: Outcome.UNCONFIRMED,
    F.ACCEPTED: Outcome.TIMED_OUT,
    F.UNCONFIRMED: Outcome.UNCONFIRMED,
    F.UNRESOLVED: Outcome.UNCONFIRMED,
    F.CUTOVER_PENDING: Outcome.TIMED_OUT,
    F.FINALIZED: Outcome.FINALIZED,
    F.ALREADY_CUTOVER: Outcome.ALREADY_CUTOVER,
    F.FAILED: Outcome.FAILED,
    F.TIMED_OUT: Outcome.TIMED_OUT,
    F.STOPPED_WAITING: Outcome.ACCEPTED,
    F.NOT_ATTEMPTED: Outcome.NOT_ATTEMPTED,
    F.LAUNCH_READY: Outcome.NOT_ATTEMPTED,
    F.WOULD_LAUNCH: Outcome.WOULD_LAUNCH,
    F.LAUNCHING: Outcome.UNCONFIRMED,
    F.LAUNCHED: Outcome.NOT_ATTEMPTED,
    F.VERIFIED: Outcome.NOT_ATTEMPTED,
    F.AWAITING_APPROVAL: Outcome.NOT_ATTEMPTED,
    F.NOT_APPROVED: Outcome.NOT_ATTEMPTED,
    F.LAUNCH_FAILED: Outcome.FAILED,
    F.REVERTED: Outcome.REVERTED,
}

# The report's timeline names for entering a state.
_TIMELINE = {
    F.BLOCKED: "blocked",
    F.HELD: "held",
    F.ACCEPTED: "finalize_accepted",
    F.UNCONFIRMED: "unconfirmed",
    F.UNRESOLVED: "unconfirmed",
    F.FINALIZED: "converged",
    F.ALREADY_CUTOVER: "already_cutover",
    F.FAILED: "failed",
    F.TIMED_OUT: "timed_out",
    F.NOT_ATTEMPTED: "not_attempted",
    F.LAUNCH_FAILED: "launch_failed",
    F.VERIFIED: "verified",
    F.AWAITING_APPROVAL: "approval_awaited",
    F.NOT_APPROVED: "not_approved",
}


class Writer(Protocol):
    """What the ledger writes to a journal; each method raises StateWriteError on failure."""

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        """Durably record that a FinalizeCutover is about to be sent."""

    async def record_intent_soon(
        self, server_id: str, application_id: str, *, at: str, run_id: str
    ) -> None:
        """`record_intent` from the event loop; durable on return (may be group-committed)."""

    def record_accepted(self, server_id: str, *, at: str, run_id: str) -> None:
        """Record that MGN accepted the finalize."""

    def record_converged(
        self,
        server_id: str,
        *,
        at: str,
        run_id: str,
        application_id: str | None = None,
        finalized: bool = False,
    ) -> None:
        """Record that MGN shows CUTOVER + DISCONNECTED."""

    def record_failed(self, server_id: str, *, code: str, message: str, run_id: str) -> None:
        """Record a definitive refusal."""

    def record_step(
        self,
        server_id: str,
        application_id: str,
        step: str,
        status: str,
        *,
        at: str,
        run_id: str,
        job_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record a step of the night (launch, revert, archive): intent before, result after."""


class IllegalMove(Exception):
    """A component reported an event the ledger's table does not allow: a bug."""


@dataclass(slots=True)  # one per server, 40,000 in a big wave
class _Row:
    """One server's standing; only the ledger changes it."""

    server: Server
    fate: Fate = Fate.UNCHECKED
    reason: str | None = "not checked"
    view: ServerView | None = None
    attempts: int = 0  # FinalizeCutover attempts in this run
    prior_attempts: int = 0  # ... in earlier runs, from the journal
    ambiguous: bool = False  # some attempt (this run or earlier) may have gone through
    ours: bool = False  # MGN accepted a finalize of ours (this run or an earlier one)
    error_code: str | None = None
    error_message: str | None = None
    finalized_at: str | None = None
    converged_at: str | None = None
    carried: ServerResult | None = None  # UNCOVERED: the row the wave's last report had
    timeline: list[dict[str, str | None]] = field(default_factory=list)
    launch_job_id: str | None = None  # the launch job it is (or was) in
    launched_at: float | None = None  # clock time of its first launch attempt (launch_timeout_s)
    launch_attempts: int = 0  # StartCutover attempts in this run
    archived_at: str | None = None
    # Its report row as last built (`Ledger._result`), kept until the row changes: the rows of
    # servers done early are the same objects at the end (`rowmemo` knows them by identity).
    result: ServerResult | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name != "result":
            object.__setattr__(self, "result", None)  # any change: the report row is rebuilt

    @classmethod
    def new(cls, server: Server) -> _Row:
        """`_Row(server)` without `__setattr__` for each field: a third of the time, for the
        rows of a big wave made before anything is sent."""
        row = object.__new__(cls)
        object.__setattr__(row, "server", server)
        for name, default in _ROW_DEFAULTS:
            object.__setattr__(row, name, default)
        for name, factory in _ROW_FACTORIES:
            object.__setattr__(row, name, factory())
        return row


_ROW_DEFAULTS = [(f.name, f.default) for f in fields(_Row) if f.default is not MISSING]
_ROW_FACTORIES: list[tuple[str, Callable[[], Any]]] = [
    (f.name, f.default_factory) for f in fields(_Row) if f.default_factory is not MISSING
]


@dataclass(frozen=True)
class Work:
    """What the run must do with one checked part of the wave."""

    send: list[str]
    poll: list[str]
    launch: list[str] = field(default_factory=list)  # `--launch`: StartCutover these
    watch: list[str] = field(default_factory=list)  # `--launch`: already in a launch job


class Ledger:
    """Every server of one wave in one run; decides and records each server's fate."""

    def __init__(
        self,
        wave: Wave,
        *,
        writer: Writer | None,
        run_id: str,
        stop: Stop,
        now_iso: Callable[[], str],
        entries: dict[str, JournalEntry] | None = None,
        covered: Iterable[str] | None = None,
        carried: dict[str, ServerResult] | None = None,
        application_gate: bool = True,
        on_application: Callable[[str, str, str | None], None] | None = None,
        require_approval: bool = False,
        where: Mapping[str, tuple[str | None, str | None]] | None = None,
        stop_of: Callable[[str], Stop] | None = None,
        read_settle_s: float = 300.0,
    ) -> None:
        """`writer` None is a dry run: nothing is written and nothing will be sent.

        `on_application(applicationID, status, reason)` is told once when every server of an
        application has reached a final state: status `finalized`, `blocked` or `failed`.

        `covered`: the application IDs this run works on (None: all); the other servers keep
        their `carried` row (their last known outcome) in the report.

        `stop_of`: the stop that governs a server (its (account, region)'s part of `stop`, which
        an account error stops alone); `stop` itself by default.

        `read_settle_s`: how long MGN's reads may lag a call; an earlier run's FinalizeCutover
        with no recorded answer, younger than this, is only polled (never sent again).
        """
        self.wave = wave
        self.dry_run = writer is None
        self._writer = writer
        self._run_id = run_id
        self._stop = stop
        self._stop_of = stop_of or (lambda _server_id: stop)
        self._now = now_iso
        self._gate = application_gate
        self._read_settle_s = read_settle_s
        self._entries = entries or {}
        self.covered = frozenset(covered) if covered is not None else None
        self._rows: dict[str, _Row] = {}
        self._by_app: dict[str, list[_Row]] = {}  # the rows of each application, plan order
        self._names = {a.application_id: a.name for a in wave.applications}
        self._held: dict[str, str] = {}  # application -> why nothing more is sent to it
        self._on_application = on_application
        self._require_approval = require_approval
        self._where = where or {}  # server -> (account, region) it is reached in
        self._told: set[str] = set()  # applications on_application has heard of
        for server in wave.servers:
            row = _Row.new(server)
            entry = self._entries.get(server.source_server_id)
            if entry is not None and entry.attempts:
                row.prior_attempts, row.ambiguous = entry.attempts, True
            if self.covered is not None and server.application_id not in self.covered:
                row.fate, row.reason = Fate.UNCOVERED, None
                row.carried = (carried or {}).get(server.source_server_id)
            self._rows[server.source_server_id] = row
            self._by_app.setdefault(server.application_id, []).append(row)

    # -- what the components ask -------------------------------------------------------------

    def fate(self, server_id: str) -> Fate:
        return self._rows[server_id].fate

    def application_of(self, server_id: str) -> str:
        return self._rows[server_id].server.application_id

    def is_ambiguous(self, server_id: str) -> bool:
        """Whether some FinalizeCutover of this server may have gone through unanswered."""
        return self._rows[server_id].ambiguous

    def in_run(self) -> list[Server]:
        """The servers this run works on (the covered applications), in plan order."""
        return [r.server for r in self._rows.values() if r.fate is not Fate.UNCOVERED]

    def waiting(self) -> list[str]:
        """Servers whose finalize MGN has not confirmed (ours, or found half done): what the
        final read-back reads."""
        return [sid for sid, r in self._rows.items() if r.fate in _WAITING]

    def tally(self) -> dict[str, int]:
        """How many servers of this run stand in each report outcome (for the progress line)."""
        counts = {o.value: 0 for o in Outcome}
        for row in self._rows.values():
            if row.fate is not Fate.UNCOVERED:
                counts[self._outcome(row).value] += 1
        return counts

    # -- events: the pre-flight --------------------------------------------------------------

    def checked(self, checks: Sequence[Check]) -> Work:
        """The pre-flight's verdicts on whole applications: decide each server, apply the
        application gate, and say what to send and what to poll."""
        for check in checks:
            self._check(check)
        if self._gate:
            self._gate_applications([c.server.application_id for c in checks])
        ids = [c.source_server_id for c in checks]
        return Work(
            send=[s for s in ids if self.fate(s) is F.READY],
            poll=[s for s in ids if self.fate(s) in POLLED],
            launch=[s for s in ids if self.fate(s) is F.LAUNCH_READY],
            watch=[s for s in ids if self.fate(s) is F.LAUNCHED],
        )

    def _check(self, check: Check) -> None:
        row = self._rows[check.source_server_id]
        view, entry = check.view, self._entries.get(check.source_server_id)
        row.view = view
        accepted_before = entry is not None and (
            entry.status in ("accepted", "converged") or entry.finalized_at is not None
        )
        if accepted_before and entry is not None:
            row.finalized_at = entry.finalized_at or entry.intent_at
        row.ours = accepted_before
        ours = accepted_before or row.prior_attempts > 0
        if view is not None and view.converged:
            note = check.reason if check.decision is not Decision.ALREADY_CUTOVER else None
            self._converged(row, Event.CHECKED, ours, note)
        elif accepted_before:
            why = "finalize accepted by an earlier run; never sent again, only polled"
            self._move(row, Event.CHECKED, F.ACCEPTED, why)
        elif ours and view is not None and view.lifecycle_state == CUTOVER:
            row.ours = True
            why = "an earlier run's FinalizeCutover went through; waiting for DISCONNECTED"
            self._move(row, Event.CHECKED, F.ACCEPTED, why)
        elif self._unanswered_intent(row, entry, check):
            pass  # decided there, from MGN's record: accepted, or only polled
        elif check.decision is Decision.FINALIZE:
            fate = F.WOULD_FINALIZE if self.dry_run else F.READY
            self._move(row, Event.CHECKED, fate, None)
        elif check.decision is Decision.LAUNCH:
            fate = F.WOULD_LAUNCH if self.dry_run else F.LAUNCH_READY
            self._move(row, Event.CHECKED, fate, None)
        elif check.decision is Decision.WATCH and self.dry_run:
            # Already launched: a real run would watch it and finalize it once verified.
            self._move(row, Event.CHECKED, F.WOULD_FINALIZE, check.reason)
        elif check.decision is Decision.WATCH:
            row.launch_job_id = view.last_cutover_job_id if view is not None else None
            self._move(row, Event.CHECKED, F.LAUNCHED, check.reason)
        elif check.decision is Decision.ALREADY_CUTOVER:
            why = f"cut over outside this run; {check.reason or 'waiting for DISCONNECTED'}"
            self._move(row, Event.CHECKED, F.CUTOVER_PENDING, why)
        else:
            self._move(row, Event.CHECKED, F.BLOCKED, check.reason)

    def _unanswered_intent(self, row: _Row, entry: JournalEntry | None, check: Check) -> bool:
        """An earlier run sent FinalizeCutover and no answer was journaled (killed behind the
        200, or the answer lost) while MGN still shows CUTTING_OVER: MGN may have taken it and
        its reads lag. Decide by reading, never by sending: MGN's own record of a finalize since
        the intent makes it accepted; an intent younger than `read_settle_s` is only polled.
        Returns False (nothing decided) without such an intent, or when it is old enough that
        MGN's reads have caught up: then the usual decision applies (a rerun sends it again)."""
        view = check.view
        if (
            entry is None
            or entry.status != "intent"  # an answer was journaled (a 409, say): it decides
            or row.prior_attempts == 0
            or view is None
            or view.lifecycle_state != CUTTING_OVER
            or check.decision not in (Decision.FINALIZE, Decision.WATCH)
        ):
            return False
        intent = iso_time_s(entry.intent_at)
        finalized = iso_time_s(view.last_cutover_finalized_at)
        if finalized is not None and (intent is None or finalized >= intent - CLOCK_SKEW_S):
            row.ours = True
            row.finalized_at = view.last_cutover_finalized_at
            why = (
                f"MGN records a FinalizeCutover at {view.last_cutover_finalized_at} (an earlier "
                "run's, its answer never journaled); never sent again, only polled"
            )
            self._move(row, Event.CHECKED, F.ACCEPTED, why)
            return True
        now = iso_time_s(self._now())
        if intent is not None and now is not None and now - intent >= self._read_settle_s:
            return False
        until = (
            datetime.fromtimestamp(intent + self._read_settle_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if intent is not None
            else "read_settle_s has passed"
        )
        why = (
            f"an earlier run's FinalizeCutover (intent at {entry.intent_at}, run "
            f"{entry.run_id or 'unknown'}) has no recorded answer and MGN may not have caught up: "
            f"polled, never sent again; if MGN still shows CUTTING_OVER after {until}, a rerun "
            "sends it again"
        )
        row.ambiguous = True
        self._move(row, Event.CHECKED, F.UNCONFIRMED, why)
        return True

    def _gate_applications(self, application_ids: Iterable[str]) -> None:
        for app_id in dict.fromkeys(application_ids):
            rows = self._app_rows(app_id)
            culprit = next((r for r in rows if r.fate is F.BLOCKED), None)
            if culprit is None:
                continue
            why = f"application_gate: {culprit.server.source_server_id} {culprit.reason}"
            for row in rows:
                if row.fate in (F.READY, F.WOULD_FINALIZE, F.LAUNCH_READY, F.WOULD_LAUNCH):
                    self._move(row, Event.GATED, F.BLOCKED, why)
                elif row.fate is F.LAUNCHED:  # launched earlier: watched, never finalized
                    self._move(row, Event.GATED, F.HELD, why)

    # -- events: the finalize pool -----------------------------------------------------------

    def may_send(self, server_id: str) -> bool:
        """Whether another FinalizeCutover may go out for this server now; if its application
        is held, the server is settled here and False is returned."""
        row = self._rows[server_id]
        held = self._held.get(row.server.application_id)
        if held is None:
            return row.fate in (F.READY, F.SENDING)
        if row.fate in (F.READY, F.SENDING):
            if row.ambiguous:
                why = f"{held}; an earlier attempt may have gone through, so it is polled"
                self._move(row, Event.HELD, F.UNCONFIRMED, why)
            else:
                self._move(row, Event.HELD, F.HELD, held)
        return False

    def sending(self, server_id: str) -> None:
        """A FinalizeCutover is about to go out: journal the intent first.

        Raises StateWriteError when the intent cannot be recorded: then it must not be sent,
        and the whole run stops (nothing may be sent without a durable intent).
        """
        row = self._rows[server_id]
        if self._writer is None:
            raise IllegalMove(f"{server_id}: a dry run never sends")
        try:
            self._writer.record_intent(
                server_id, row.server.application_id, at=self._now(), run_id=self._run_id
            )
        except StateWriteError as err:
            self._intent_failed(row, err)
            raise
        self._intent_recorded(row)

    async def sending_soon(self, server_id: str) -> None:
        """`sending` for the pool on the event loop: the intent may be group-committed with
        others (DynamoDB). The caller checks again that it may send once this returns.

        Raises StateWriteError as `sending` does.
        """
        row = self._rows[server_id]
        if self._writer is None:
            raise IllegalMove(f"{server_id}: a dry run never sends")
        try:
            await self._writer.record_intent_soon(
                server_id, row.server.application_id, at=self._now(), run_id=self._run_id
            )
        except StateWriteError as err:
            if row.fate in (F.READY, F.SENDING):
                self._intent_failed(row, err)
            raise
        if row.fate in (F.READY, F.SENDING):
            self._intent_recorded(row)

    def _intent_failed(self, row: _Row, err: StateWriteError) -> None:
        self._stop.request(StopReason.LOCAL_STATE, str(err))
        fate = F.UNCONFIRMED if row.ambiguous else F.NOT_ATTEMPTED
        self._move(row, Event.STOPPED, fate, f"journal write failed, not sent: {err}")

    def _intent_recorded(self, row: _Row) -> None:
        first = row.fate is F.READY
        self._move(row, Event.SENT, F.SENDING, None)
        row.attempts += 1
        if first:
            self._timeline(row, "finalize_sent", None)

    def answered(self, server_id: str, view: ServerView | None) -> None:
        """MGN answered FinalizeCutover with 200: accepted. The answer's body (`view`, None when
        unreadable) is the server record: MGN's latest word on it until a later read says
        otherwise. The server stays polled: only a run stopped before any read after the 200
        ends on the body's columns (`settle`); a later read showing CUTTING_OVER replaces it."""
        row = self._rows[server_id]
        # An answer naming another server is not this one's; one showing less than a view
        # already seen (converged) is not newer.
        older = row.view is not None and row.view.converged and not (view and view.converged)
        if view is not None and view.source_server_id == server_id and not older:
            row.view = view
        at = self._now()
        row.finalized_at = row.finalized_at or at
        row.error_code = row.error_message = None
        row.ours = True
        self._move(row, Event.ANSWERED, F.ACCEPTED, None)
        log.info("finalize_accepted", sourceServerID=server_id, attempts=row.attempts)
        self._write(lambda w: w.record_accepted(server_id, at=at, run_id=self._run_id))

    def ambiguous(self, server_id: str) -> None:
        """An attempt may have reached MGN and taken effect (dropped, timed out, 5xx)."""
        self._rows[server_id].ambiguous = True

    def unconfirmed(self, server_id: str, err: MgnError | None, why: str) -> None:
        """The pool gave up on an ambiguous server (retries exhausted, or stopped while a call
        was on the wire): the reconciler decides, from what MGN shows."""
        row = self._rows[server_id]
        row.ambiguous = True
        self._error(row, err)
        self._move(row, Event.AMBIGUOUS, F.UNCONFIRMED, why)

    def refused(self, server_id: str, err: MgnError, readback: ServerView | None) -> None:
        """MGN refused FinalizeCutover for good (or retries ran out with no ambiguous attempt).

        `readback`: MGN's view read after a ConflictException, if it could be read.
        """
        row = self._rows[server_id]
        row.view = self._fresher(row.view, readback)
        state = readback.lifecycle_state if readback is not None else None
        if err.status == 409 or err.code == "ConflictException":
            if readback is not None and readback.converged:
                self._converged(row, Event.REFUSED, row.ambiguous, None)
                return
            if state == CUTOVER:
                if row.ambiguous:
                    at = self._now()
                    row.finalized_at = row.finalized_at or at
                    row.ours = True
                    why = "MGN shows CUTOVER after our earlier attempt: accepted"
                    self._move(row, Event.REFUSED, F.ACCEPTED, why)
                    self._write(lambda w: w.record_accepted(server_id, at=at, run_id=self._run_id))
                else:
                    why = "finalized outside this run (MGN answered ConflictException)"
                    self._move(row, Event.REFUSED, F.CUTOVER_PENDING, why)
                return
            if state == CUTTING_OVER and row.ambiguous:
                # Our earlier attempt may be what MGN refused on, its reads lagging: poll it.
                why = "MGN refused a repeat (ConflictException) after an attempt that may have"
                self.unconfirmed(server_id, err, f"{why} gone through; reads still lag")
                return
            if state == CUTTING_OVER:
                why = (
                    "MGN refused FinalizeCutover (ConflictException) while it still shows "
                    "CUTTING_OVER; a rerun sends it again if MGN still shows CUTTING_OVER"
                )
                self._refuse(row, err, F.UNRESOLVED, why)
                return
            if readback is None and row.ambiguous:
                why = "MGN refused a repeat (ConflictException) and could not be read back"
                self.unconfirmed(server_id, err, why)
                return
            shown = state or "nothing readable"
            self._refuse(row, err, F.FAILED, f"wrong_state: MGN refused it and shows {shown}")
            return
        self._refuse(row, err, F.FAILED, _refusal_reason(err, row.attempts))

    def _refuse(self, row: _Row, err: MgnError, fate: Fate, why: str) -> None:
        self._error(row, err)
        self._move(row, Event.REFUSED, fate, why)
        log.warning(
            "finalize_failed",
            sourceServerID=row.server.source_server_id,
            reason=why,
            error_code=err.code,
            attempts=row.attempts,
        )
        app = row.server.application_id
        if self._gate and app not in self._held:
            self._held[app] = f"application_gate: {row.server.source_server_id} was refused ({why})"
            log.warning("application_held", applicationID=app, by=row.server.source_server_id)
        sid = row.server.source_server_id
        code, message = err.code, err.message
        self._write(lambda w: w.record_failed(sid, code=code, message=message, run_id=self._run_id))

    def stopped(self, server_id: str, why: str, err: MgnError | None = None) -> None:
        """The run stopped before this server's next attempt was sent."""
        row = self._rows[server_id]
        if row.fate not in (F.READY, F.SENDING):
            return
        self._error(row, err)
        if row.ambiguous:
            why = f"{why}; an earlier attempt may have gone through: rerun to confirm"
            self._move(row, Event.STOPPED, F.UNCONFIRMED, why)
        else:
            self._move(row, Event.STOPPED, F.NOT_ATTEMPTED, why)

    # -- events: the night before the finalize (`run --launch`) ------------------------------

    def launch_started(self, server_ids: Sequence[str], clock_s: float) -> None:
        """A StartCutover for these servers is about to go out: journal each intent first.

        Raises StateWriteError when an intent cannot be recorded: nothing may be sent then,
        and the run stops.
        """
        for sid in server_ids:
            row = self._rows[sid]
            try:
                self._step(row, "launch", "intent")
            except StateWriteError as err:
                self._stop.request(StopReason.LOCAL_STATE, str(err))
                raise
            first = row.launched_at is None
            self._move(row, Event.LAUNCH_SENT, F.LAUNCHING, None)
            row.launch_attempts += 1
            if first:  # launch_timeout_s runs from the first attempt, across re-sends
                row.launched_at = clock_s
                self._timeline(row, "launch_requested", None)

    def launch_accepted(self, server_ids: Sequence[str], job_id: str) -> None:
        """MGN took these servers into launch job `job_id` (202, or found after a lost answer)."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate is not F.LAUNCHING:
                continue
            row.launch_job_id = job_id
            held = self._held.get(row.server.application_id)
            if held is not None:
                self._move(row, Event.LAUNCH_ACCEPTED, F.HELD, held)
            else:
                self._move(row, Event.LAUNCH_ACCEPTED, F.LAUNCHED, None)
            self._timeline(row, "launch_job", job_id)
            self._write_step(row, "launch", "accepted", job_id=job_id)

    def launch_deferred(self, server_ids: Sequence[str], why: str) -> None:
        """MGN refused the StartCutover without launching (job quota): queue them again."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate is F.LAUNCHING:
                self._move(row, Event.LAUNCH_DEFERRED, F.LAUNCH_READY, why)

    def launch_refused(self, server_ids: Sequence[str], err: MgnError) -> None:
        """MGN refused the StartCutover for good: these servers failed to launch."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate is F.LAUNCHING:
                self._error(row, err)
                self._launch_failure(row, Event.LAUNCH_REFUSED, f"launch_refused: {err}")

    def launch_unclear(self, server_ids: Sequence[str], why: str) -> None:
        """StartCutover's answers stayed unclear (5xx, lost) until its retries ran out, and MGN
        shows no launch job for these servers: none is sent again; a rerun reads MGN first."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate in (F.LAUNCHING, F.LAUNCH_READY):
                self._move(row, Event.AMBIGUOUS, F.UNCONFIRMED, why)
                self._hold_application(row, f"application_gate: {sid} {why}")

    def launch_expired(self, server_ids: Sequence[str], why: str) -> None:
        """Queued servers whose first launch attempt is older than launch_timeout_s."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate is F.LAUNCH_READY:
                self._launch_failure(row, Event.LAUNCH_FAILURE, why)

    def launch_observed(self, server_id: str, view: ServerView) -> bool:
        """MGN shows CUTOVER while the launch is watched: the server was finalized (by an
        earlier run of ours when the journal says so, else outside this run). Convergence, not
        a failure; never reverted. Returns True when it must still be polled (replication
        not yet DISCONNECTED)."""
        row = self._rows[server_id]
        if row.fate not in (F.LAUNCHED, F.VERIFIED) or view.lifecycle_state != CUTOVER:
            return False
        row.view = view
        ours = row.ours or row.prior_attempts > 0
        if view.converged:
            self._converged(row, Event.OBSERVED, ours, "cut over outside this run")
            return False
        if ours:
            row.ours = True
            why = "an earlier run's FinalizeCutover went through; waiting for DISCONNECTED"
            self._move(row, Event.OBSERVED, F.ACCEPTED, why)
        else:
            why = "cut over outside this run; waiting for DISCONNECTED"
            self._move(row, Event.OBSERVED, F.CUTOVER_PENDING, why)
        return True

    def launch_abandoned(self, server_ids: Sequence[str], why: str) -> None:
        """The launcher of these servers' (account, region) could no longer read MGN: those
        not yet finalized end the run not attempted (an approval awaited: not approved)."""
        for sid in server_ids:
            row = self._rows[sid]
            if row.fate in (F.LAUNCH_READY, F.LAUNCHED, F.VERIFIED):
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, why)
            elif row.fate is F.AWAITING_APPROVAL:
                self._move(row, Event.SETTLED, F.NOT_APPROVED, why)

    def first_launch_at(self, server_id: str) -> float | None:
        """Clock time of the server's first launch attempt in this run (None: none yet)."""
        return self._rows[server_id].launched_at

    def launch_attempts(self, server_id: str) -> int:
        """StartCutover attempts for this server in this run."""
        return self._rows[server_id].launch_attempts

    def note(self, server_id: str, event: str, detail: str | None = None) -> None:
        """Put something MGN showed on the server's timeline (launched, first boot, ...);
        changes nothing else."""
        row = self._rows[server_id]
        if not any(e["event"] == event for e in row.timeline):
            self._timeline(row, event, detail)

    def watched(self) -> list[tuple[str, str | None, float | None]]:
        """(server, launch job, clock time launched) of every server being watched."""
        return [
            (sid, r.launch_job_id, r.launched_at)
            for sid, r in self._rows.items()
            if r.fate is F.LAUNCHED
        ]

    def watching_since(self, server_id: str, clock_s: float) -> float:
        """When the watch of this server began (set now if never)."""
        row = self._rows[server_id]
        if row.launched_at is None:
            row.launched_at = clock_s
        return row.launched_at

    def verified(self, server_id: str, view: ServerView | None) -> list[str]:
        """The server passed every check. Once its whole application is verified, the
        application moves on: returns the servers now READY (to finalize) or, with approval
        required, [] (see `awaiting_approval`)."""
        row = self._rows[server_id]
        row.view = self._fresher(row.view, view)
        if row.fate is not F.LAUNCHED:
            return []
        self._move(row, Event.VERIFY, F.VERIFIED, None)
        app = row.server.application_id
        rows = self._app_rows(app)
        if any(r.fate is not F.VERIFIED for r in rows if r.fate not in _CONVERGED):
            return []
        to = F.AWAITING_APPROVAL if self._require_approval else F.READY
        ready = []
        for r in rows:
            if r.fate is F.VERIFIED:
                self._move(r, Event.VERIFY, to, None)
                ready.append(r.server.source_server_id)
                if to is F.AWAITING_APPROVAL:  # `status` shows it waits, and since when
                    self._write_step(r, "approval", "intent", detail=app)
        if to is F.AWAITING_APPROVAL:
            log.info("approval_awaited", applicationID=app)
            return []
        return ready

    def awaiting_approval(self) -> list[str]:
        """Applications waiting for an approval."""
        return sorted(
            {r.server.application_id for r in self._rows.values() if r.fate is F.AWAITING_APPROVAL}
        )

    def approved(self, application_id: str, by: str, at: str) -> list[str]:
        """`approve` recorded an approval: the application's servers are READY (returned)."""
        ready = []
        for row in self._app_rows(application_id):
            if row.fate is F.AWAITING_APPROVAL:
                self._move(row, Event.APPROVE, F.READY, None)
                self._timeline(row, "approved", f"by {by} at {at}")
                self._write_step(row, "approval", "done", detail=application_id)
                ready.append(row.server.source_server_id)
        return ready

    def approval_expired(self, application_id: str, waited_s: float) -> None:
        """No approval within approve_timeout_s: the application is not finalized."""
        why = f"not approved within {waited_s:g}s"
        for row in self._app_rows(application_id):
            if row.fate is F.AWAITING_APPROVAL:
                self._move(row, Event.EXPIRED, F.NOT_APPROVED, why)
                self._write_step(row, "approval", "failed", detail=application_id)

    def launch_failed(self, server_id: str, reason: str) -> None:
        """The server failed to launch or verify: it and its application are not finalized."""
        row = self._rows[server_id]
        if row.fate in (F.LAUNCHED, F.VERIFIED):
            self._launch_failure(row, Event.LAUNCH_FAILURE, reason)

    def _launch_failure(self, row: _Row, event: Event, reason: str) -> None:
        self._move(row, event, F.LAUNCH_FAILED, reason)
        sid, app = row.server.source_server_id, row.server.application_id
        self._write(
            lambda w: w.record_step(
                sid, app, "launch", "failed", at=self._now(), run_id=self._run_id, detail=reason
            )
        )
        self._hold_application(row, f"application_gate: {sid} {reason}")

    def _hold_application(self, row: _Row, why: str) -> None:
        """Nothing more of this server's application is launched or finalized."""
        app = row.server.application_id
        self._held.setdefault(app, why)
        for sibling in self._app_rows(app):
            waiting = (F.LAUNCH_READY, F.LAUNCHED, F.VERIFIED)
            unsent = sibling.fate is F.READY and sibling.attempts == 0
            if sibling is not row and (sibling.fate in waiting or unsent):
                self._move(sibling, Event.HELD, F.HELD, why)

    def to_revert(self, application_id: str) -> list[str]:
        """Servers of the application that this run launched and did not finalize."""
        return [
            r.server.source_server_id
            for r in self._app_rows(application_id)
            if r.launch_job_id is not None
            and r.fate in (F.LAUNCH_FAILED, F.HELD, F.NOT_APPROVED)
            and not r.ours
            and r.prior_attempts == 0  # a FinalizeCutover of ours may have gone through
            and not (r.view is not None and r.view.lifecycle_state == CUTOVER)
        ]

    def failed_applications(self) -> list[str]:
        """Applications with a server that failed to launch or verify, or not approved."""
        return sorted(
            {
                r.server.application_id
                for r in self._rows.values()
                if r.fate in (F.LAUNCH_FAILED, F.NOT_APPROVED)
            }
        )

    def revert_started(self, server_id: str) -> None:
        """Journal the intent to revert a server. Raises StateWriteError (then do not send)."""
        row = self._rows[server_id]
        try:
            self._step(row, "revert", "intent")
        except StateWriteError as err:
            self._stop.request(StopReason.LOCAL_STATE, str(err))
            raise

    def reverted(self, server_id: str, detail: str, view: ServerView | None = None) -> None:
        """MGN took the revert (READY_FOR_CUTOVER, instance terminated as said in `detail`);
        `view`: MGN's record after the revert (its answer, or read back), which the row shows
        from now on."""
        row = self._rows[server_id]
        row.view = self._fresher(row.view, view)
        before = row.reason
        self._move(row, Event.REVERT, F.REVERTED, f"reverted after: {before}")
        self._timeline(row, "reverted", detail)
        sid, app = row.server.source_server_id, row.server.application_id
        self._write(
            lambda w: w.record_step(
                sid, app, "revert", "done", at=self._now(), run_id=self._run_id, detail=detail
            )
        )

    def revert_failed(self, server_id: str, err: MgnError) -> None:
        """MGN refused the revert: the server stays as it was, with the refusal said."""
        row = self._rows[server_id]
        row.reason = f"{row.reason}; revert refused: {err}"
        self._timeline(row, "revert_failed", str(err))
        sid, app = row.server.source_server_id, row.server.application_id
        self._write(
            lambda w: w.record_step(
                sid, app, "revert", "failed", at=self._now(), run_id=self._run_id, detail=str(err)
            )
        )

    def to_archive(self) -> list[str]:
        """Converged servers not yet archived by this run (and not archived in MGN)."""
        return [
            sid
            for sid, r in self._rows.items()
            if r.fate in _CONVERGED
            and r.archived_at is None
            and not (r.view is not None and r.view.archived)
        ]

    def archive_started(self, server_id: str) -> None:
        """Journal the intent to archive. Raises StateWriteError (then do not send)."""
        try:
            self._step(self._rows[server_id], "archive", "intent")
        except StateWriteError as err:
            self._stop.request(StopReason.LOCAL_STATE, str(err))
            raise

    def archived(self, server_id: str) -> None:
        """MGN accepted MarkAsArchived."""
        row = self._rows[server_id]
        row.archived_at = self._now()
        self._timeline(row, "archived", None)
        sid, app = row.server.source_server_id, row.server.application_id
        self._write(
            lambda w: w.record_step(
                sid, app, "archive", "done", at=self._now(), run_id=self._run_id
            )
        )

    def archive_failed(self, server_id: str, err: MgnError) -> None:
        """MGN refused MarkAsArchived: the server stays converged, the refusal said."""
        row = self._rows[server_id]
        row.reason = f"archive refused: {err}"
        self._timeline(row, "archive_failed", str(err))

    def _write_step(
        self,
        row: _Row,
        step: str,
        status: str,
        *,
        job_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Journal a step's result; a failure stops the run (see `_write`)."""
        sid, app, at = row.server.source_server_id, row.server.application_id, self._now()
        self._write(
            lambda w: w.record_step(
                sid, app, step, status, at=at, run_id=self._run_id, job_id=job_id, detail=detail
            )
        )

    def _app_rows(self, application_id: str) -> list[_Row]:
        return self._by_app.get(application_id, [])

    def _step(self, row: _Row, step: str, status: str) -> None:
        if self._writer is None:
            raise IllegalMove(f"{row.server.source_server_id}: a dry run never sends")
        self._writer.record_step(
            row.server.source_server_id,
            row.server.application_id,
            step,
            status,
            at=self._now(),
            run_id=self._run_id,
        )

    # -- events: the reconciler and read-backs -----------------------------------------------

    def observed(self, view: ServerView) -> None:
        """MGN's latest view of a server; convergence settles it."""
        row = self._rows.get(view.source_server_id)
        if row is None:
            return
        if row.fate in _WAITING and view.converged:
            row.view = view
            self._converged(row, Event.OBSERVED, row.ours or row.ambiguous, None)
        elif row.fate in _WAITING or row.fate in (F.SENDING, F.READY):
            row.view = view

    def expired(self, server_id: str) -> None:
        """The reconciler's deadline passed for this server."""
        row = self._rows[server_id]
        if row.fate in (F.ACCEPTED, F.CUTOVER_PENDING):
            self._move(row, Event.EXPIRED, F.TIMED_OUT, self._late_reason(row))

    def settle(self) -> None:
        """End of run: give every server not yet final its final state, with why (the stop
        that governs it: the run's, or an account error that stopped its target only)."""
        for row in self._rows.values():
            if row.fate in _CONVERGED:  # final: most rows of a good night, ~10 ms at 4,000
                continue
            stop = self._stop_of(row.server.source_server_id)
            stopped_why = stop.why()
            failed = stop.failure is not None  # its target stopped alone; the rest went on
            if failed and row.fate is F.UNCHECKED:
                row.reason = f"{stopped_why} before this server was read; rerun the wave"
            if row.fate is F.UNCHECKED:
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, row.reason)
            elif row.fate is F.READY:
                why = f"{stopped_why} before FinalizeCutover was sent; rerun the wave"
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, why)
            elif row.fate is F.SENDING:
                if row.ambiguous or row.attempts:
                    why = f"{stopped_why} while FinalizeCutover was in flight; rerun to confirm"
                    self._move(row, Event.SETTLED, F.UNCONFIRMED, why)
                else:
                    self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, stopped_why)
            elif row.fate in (F.ACCEPTED, F.TIMED_OUT) and row.view and row.view.converged:
                # MGN's last word is the 200's own record, no read after it: the columns decide.
                self._converged(row, Event.OBSERVED, row.ours or row.ambiguous, None)
            elif row.fate in (F.ACCEPTED, F.CUTOVER_PENDING) and stop.halted:
                # Polling stopped before the deadline (the reconciler expires rows itself).
                why = _stopped_waiting_reason(row, stop)
                self._move(row, Event.SETTLED, F.STOPPED_WAITING, why)
            elif row.fate in (F.ACCEPTED, F.CUTOVER_PENDING):
                unread = stopped_why if failed else None  # no longer polled: MGN unreadable
                self._move(row, Event.SETTLED, F.TIMED_OUT, self._late_reason(row, unread))
            elif row.fate is F.LAUNCH_READY and row.launch_attempts:
                why = f"not launched ({row.reason}); {stopped_why}; rerun the wave"
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, why)
            elif row.fate is F.LAUNCH_READY:
                why = f"{stopped_why} before StartCutover was sent; rerun the wave"
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, why)
            elif row.fate is F.LAUNCHING:
                why = f"{stopped_why} while StartCutover was in flight; a rerun checks MGN first"
                self._move(row, Event.SETTLED, F.UNCONFIRMED, why)
            elif row.fate in (F.LAUNCHED, F.VERIFIED):
                why = f"launched (job {row.launch_job_id}); {stopped_why} before it was finalized"
                self._move(row, Event.SETTLED, F.NOT_ATTEMPTED, why)
            elif row.fate is F.AWAITING_APPROVAL:
                why = f"not approved before the run ended ({stopped_why})"
                self._move(row, Event.SETTLED, F.NOT_APPROVED, why)
            elif row.fate is F.TIMED_OUT:
                row.reason = self._late_reason(row)  # from MGN's last word, read at the end
            elif row.fate is F.UNCONFIRMED and row.view is not None:
                row.reason = _unconfirmed_reason(row)
            if failed and row.fate is F.UNCONFIRMED and "account error" not in (row.reason or ""):
                row.reason = f"{row.reason}; {stopped_why}: MGN could no longer be read to confirm"

    def not_checked(self, why: str) -> None:
        """The pre-flight could not read these servers: say why they were never checked."""
        for row in self._rows.values():
            if row.fate is F.UNCHECKED:
                row.reason = why

    # -- the report ----------------------------------------------------------------------------

    def results(self) -> list[ServerResult]:
        """Every server of the wave as a report row, in plan order."""
        return [self._result(r) for r in self._rows.values()]

    def converged_results(self, seen: set[str]) -> list[ServerResult]:
        """Report rows of the converged servers not in `seen` (then added to it): rows the
        run can render while it waits for the others (`rowmemo`); nothing but archiving
        changes them any more."""
        fresh = [
            row
            for server_id, row in self._rows.items()
            if row.fate in _CONVERGED and server_id not in seen
        ]
        seen.update(row.server.source_server_id for row in fresh)
        return [self._result(row) for row in fresh]

    def exit_code(self, *, covered_only: bool) -> ExitCode:
        """0 only when every server (of the covered applications, or of the whole wave)
        converged and nothing stopped the run; the stop reason's code first, then 4 when an
        account error that stopped one target left a server of it undone.

        A dry run gives `plan`'s verdict (issue 21, on purpose): a server a real run would now
        finalize (or, with `--launch`, launch) counts as done, so a wholly ready wave exits 0
        and anything blocked, failed, unconfirmed or timed out exits 1."""
        if self._stop.exit_code is not None and self._stop.reason is not StopReason.WINDOW:
            return self._stop.exit_code
        rows: Iterable[_Row] = self._rows.values()
        if covered_only and self.covered is not None:
            covered = self.covered
            rows = [r for r in rows if self._result_application(r) in covered]
        # Only this run's own verdicts: a carried row (another run's) counts only if converged.
        would = (F.WOULD_FINALIZE, F.WOULD_LAUNCH) if self.dry_run else ()
        undone = [
            r
            for r in rows
            if r.fate not in would and self._result_outcome(r) not in CONVERGED_OUTCOMES
        ]
        if any(
            r.fate is not F.UNCOVERED
            and self._stop_of(r.server.source_server_id).failure is not None
            for r in undone
        ):
            return ExitCode.ACCOUNT
        return ExitCode.OK if not undone else ExitCode.NOT_CONVERGED

    @staticmethod
    def _result_application(row: _Row) -> str:
        """`_result(row).application_id`, without building the row."""
        if row.fate is F.UNCOVERED and row.carried is not None:
            return row.carried.application_id
        return row.server.application_id

    def _result_outcome(self, row: _Row) -> Outcome:
        """`_result(row).outcome`, without building the row."""
        if row.fate is F.UNCOVERED:
            return row.carried.outcome if row.carried is not None else Outcome.NOT_ATTEMPTED
        return self._outcome(row)

    def _result(self, row: _Row) -> ServerResult:
        """The row's report row: the one last built while the row has not changed since."""
        if row.result is None:
            row.result = self._build_result(row)
        return row.result

    def _build_result(self, row: _Row) -> ServerResult:
        server = row.server
        if row.fate is F.UNCOVERED:
            if row.carried is not None:
                return row.carried
            return ServerResult(
                server.source_server_id,
                server.application_id,
                application_name=self._names.get(server.application_id),
                outcome=Outcome.NOT_ATTEMPTED,
                reason="not in this run's --application subset, and no earlier run reported it",
            )
        view = row.view
        return ServerResult(
            source_server_id=server.source_server_id,
            application_id=server.application_id,
            application_name=self._names.get(server.application_id),
            name=view.name if view else None,
            outcome=self._outcome(row),
            reason=row.reason,
            lifecycle_state=view.lifecycle_state if view else None,
            replication_state=view.replication_state if view else None,
            first_boot=view.first_boot if view else None,
            ec2_instance_id=view.ec2_instance_id if view else None,
            attempts=row.prior_attempts + row.attempts,
            error_code=row.error_code,
            error_message=row.error_message,
            finalized_at=row.finalized_at if row.fate is F.FINALIZED else None,
            converged_at=row.converged_at,
            timeline=list(row.timeline),
            launch_job_id=row.launch_job_id,
            archived_at=row.archived_at,
            account_id=self._where.get(server.source_server_id, (None, None))[0],
            region=self._where.get(server.source_server_id, (None, None))[1],
        )

    @staticmethod
    def _outcome(row: _Row) -> Outcome:
        return OUTCOMES[row.fate]

    # -- the one place a server moves ----------------------------------------------------------

    def _move(self, row: _Row, event: Event, to: Fate, reason: str | None) -> None:
        allowed = TRANSITIONS.get((row.fate, event), frozenset())
        if to not in allowed:
            raise IllegalMove(
                f"{row.server.source_server_id}: {row.fate.value} --{event.value}--> {to.value}"
            )
        before = row.fate
        row.fate, row.reason = to, reason
        if to is not before and to in _TIMELINE:
            self._timeline(row, _TIMELINE[to], reason)
        if to is not before and to in FINAL:
            if to not in _CONVERGED:  # convergence has its own event (server_converged)
                log.log(
                    _FINAL_LOG_LEVELS.get(to, logging.WARNING),
                    "server_" + to.value,
                    sourceServerID=row.server.source_server_id,
                    applicationID=row.server.application_id,
                    reason=reason,
                )
            self._application_settled(row.server.application_id)

    def _application_settled(self, app_id: str) -> None:
        """Tell on_application once every server of `app_id` has a final state: `finalized`,
        `partially_cut_over` (a server cut over or its finalize accepted, another not
        converged: half the application is past the point of no return), `blocked` or
        `failed`."""
        if self._on_application is None or app_id in self._told:
            return
        rows = self._app_rows(app_id)
        if any(r.fate not in FINAL for r in rows):
            return
        self._told.add(app_id)
        if all(r.fate in _CONVERGED for r in rows):
            status, reason = "finalized", None
        else:
            cut = {id(r) for r in rows if _cut_over(r)}
            worst = next((r for r in rows if r.fate is F.BLOCKED), None)
            status = "blocked" if worst is not None else "failed"
            if cut:  # a sibling not sent (or not confirmed) is the one to act on
                status = "partially_cut_over"
                worst = next((r for r in rows if id(r) not in cut), None)
            worst = worst or next(r for r in rows if r.fate not in _CONVERGED)
            reason = f"{worst.server.source_server_id}: {worst.reason}"
        try:
            self._on_application(app_id, status, reason)
        except Exception:  # telling people must never change a server's fate
            log.exception("application_callback_failed", applicationID=app_id)

    def _converged(self, row: _Row, event: Event, ours: bool, note: str | None) -> None:
        """MGN shows CUTOVER + DISCONNECTED: FINALIZED if we sent it, else ALREADY_CUTOVER."""
        at = self._now()
        row.converged_at = at
        if ours:
            row.finalized_at = row.finalized_at or at
            self._move(row, event, F.FINALIZED, None)
        else:
            self._move(row, event, F.ALREADY_CUTOVER, note)
        sid, app = row.server.source_server_id, row.server.application_id
        log.info("server_converged", sourceServerID=sid, applicationID=app, ours=ours)
        self._write(
            lambda w: w.record_converged(
                sid, at=at, run_id=self._run_id, application_id=app, finalized=ours
            )
        )

    def _write(self, write: Callable[[Writer], None]) -> None:
        """Journal a result after the fact; a failure stops the run (exit 5), the ledger's
        in-memory state (what MGN said) stays and is reported."""
        if self._writer is None:
            return
        try:
            write(self._writer)
        except StateWriteError as err:
            log.error("journal_write_failed", error=str(err))
            self._stop.request(StopReason.LOCAL_STATE, str(err))

    def _timeline(self, row: _Row, event: str, detail: str | None) -> None:
        row.timeline.append({"at": self._now(), "event": event, "detail": detail})
        row.result = None  # the list changed in place: the report row is rebuilt

    @staticmethod
    def _error(row: _Row, err: MgnError | None) -> None:
        if err is not None:
            row.error_code, row.error_message = err.code, err.message

    @staticmethod
    def _fresher(old: ServerView | None, new: ServerView | None) -> ServerView | None:
        return new if new is not None else old

    @staticmethod
    def _late_reason(row: _Row, unread: str | None = None) -> str:
        """Why MGN has not confirmed it; `unread`: why MGN could no longer be read."""
        view = row.view
        shown = f"{view.lifecycle_state}/{view.replication_state}" if view else "nothing"
        if unread is not None:
            done = "finalize accepted" if row.ours or row.ambiguous else "cut over outside this run"
            return (
                f"{done}; {unread}: MGN could no longer be read to confirm it (it last showed "
                f"{shown}); rerun later: it only polls, never finalizes again"
            )
        if not (row.ours or row.ambiguous):
            return f"cut over outside this run; MGN still shows {shown}; rerun later to confirm"
        return (
            f"finalize accepted; MGN still shows {shown}; rerun later: "
            "it only polls, never finalizes again"
        )


# The level of `server_<fate>` when a server reaches a final fate other than convergence: a
# warning when someone must look at the server after the night, info when nothing went wrong
# (a dry run's verdict, a server outside tonight's subset, one a stop left unsent: the stop has
# its own warning). A final fate missing here is logged as a warning.
_FINAL_LOG_LEVELS: dict[Fate, int] = {
    F.UNCOVERED: logging.INFO,
    F.WOULD_FINALIZE: logging.INFO,
    F.WOULD_LAUNCH: logging.INFO,
    F.NOT_ATTEMPTED: logging.INFO,
    F.BLOCKED: logging.WARNING,
    F.HELD: logging.WARNING,
    F.UNCONFIRMED: logging.WARNING,
    F.UNRESOLVED: logging.WARNING,
    F.FAILED: logging.WARNING,
    F.TIMED_OUT: logging.WARNING,
    F.NOT_APPROVED: logging.WARNING,
    F.LAUNCH_FAILED: logging.WARNING,
    F.REVERTED: logging.WARNING,
}


def _refusal_reason(err: MgnError, attempts: int) -> str:
    if err.status == 404 or err.code == "ResourceNotFoundException":
        return f"not_found: MGN no longer knows the server ({err.message})"
    if isinstance(err, RetryableError):
        return f"retries_exhausted: {err.code} after {attempts} attempts"
    return f"{err.code}: {err.message}"


def _unconfirmed_reason(row: _Row) -> str:
    view = row.view
    shown = f"{view.lifecycle_state}/{view.replication_state}" if view else "nothing"
    base = row.reason or "the call's outcome is unknown"
    return f"{base}; MGN last showed {shown}"


def _cut_over(row: _Row) -> bool:
    """Whether the server is past the point of no return: converged, its finalize accepted
    (ours), or MGN shows it CUTOVER."""
    view = row.view
    shows_cutover = view is not None and view.lifecycle_state == CUTOVER
    return row.fate in _CONVERGED or row.ours or shows_cutover


def _stopped_waiting_reason(row: _Row, stop: Stop) -> str:
    """Why an accepted (or cut over) server is not confirmed: the run stopped polling before
    its --timeout (a signal, the journal, an account error), not MGN running late."""
    view = row.view
    shown = f"{view.lifecycle_state}/{view.replication_state}" if view else "nothing"
    done = "finalize accepted" if row.ours or row.ambiguous else "cut over outside this run"
    why = stop.why()
    if stop.reason is StopReason.SIGNAL and stop.detail:
        why = f"{why} by {stop.detail}"
    return (
        f"{done}; {why} before its --timeout, while MGN still showed {shown}; not timed out: "
        "rerun to confirm (it only polls, never finalizes again)"
    )


class ApprovalBook(Protocol):
    """Where approvals are kept: the wave's journal (either backend)."""

    def record_approval(self, application_id: str, *, run_id: str, by: str, at: str) -> None:
        """Keep the first approval of an application in one run."""


def record_approval(
    book: ApprovalBook, application_id: str, *, run_id: str, by: str, at: str
) -> None:
    """The one way a person's approval enters the journal (`mgn-cutover approve`, from another
    shell). It names the run it approves (the one waiting for it), and only that run reads it.
    It decides nothing: the running ledger reads it and moves the application's servers
    (APPROVE), writing their approval steps itself. Raises StateWriteError if it cannot be kept.
    """
    book.record_approval(application_id, run_id=run_id, by=by, at=at)
