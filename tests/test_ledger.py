"""The ledger, table-driven: every transition, what it writes to the journal, what it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import pytest

from orchestrator.config import Config
from orchestrator.errors import ConflictError, ExitCode, NotFoundError, StateWriteError
from orchestrator.journal import JournalEntry
from orchestrator.ledger import TRANSITIONS, Event, Fate, IllegalMove, Ledger, _Row
from orchestrator.outcome import Outcome, ServerResult
from orchestrator.plan import Application, Server, Wave
from orchestrator.preflight import decide, decide_launch
from orchestrator.stop import Stop, StopReason
from orchestrator.views import ServerView

APP = "app-0000000000000000a"
OTHER = "app-0000000000000000b"
S1, S2, S3 = "s-00000000000000001", "s-00000000000000002", "s-00000000000000003"
WAVE = Wave(
    "w",
    (
        Application(APP, "payments", (Server(S1, APP), Server(S2, APP))),
        Application(OTHER, None, (Server(S3, OTHER),)),
    ),
)
CONFLICT = ConflictError("ConflictException", "wrong state", 409)
GONE = NotFoundError("ResourceNotFoundException", "gone", 404)


def view(state: str, repl: str = "CONTINUOUS", sid: str = S1, **kw: Any) -> ServerView:
    return ServerView(
        sid,
        application_id=APP,
        lifecycle_state=state,
        replication_state=repl,
        first_boot=kw.pop("first_boot", "SUCCEEDED"),
        archived=kw.pop("archived", False),
    )


READY = view("CUTTING_OVER")
DONE = view("CUTOVER", "DISCONNECTED")
HALF = view("CUTOVER", "CONTINUOUS")
WAITING = view("CUTTING_OVER", first_boot="WAITING")


def entry(status: str, attempts: int, finalized_at: str | None = None) -> JournalEntry:
    return JournalEntry(S1, APP, status, attempts, "t0", finalized_at, None, None, None, "r0")


@dataclass
class FakeWriter:
    """Records what the ledger writes; can be told to fail like a full disk."""

    writes: list[tuple[str, ...]] = field(default_factory=list)
    fail: bool = False

    def _record(self, *what: str) -> None:
        if self.fail:
            raise StateWriteError("journal: database or disk is full")
        self.writes.append(what)

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        self._record("intent", server_id)

    def record_accepted(self, server_id: str, *, at: str, run_id: str) -> None:
        self._record("accepted", server_id)

    def record_converged(
        self,
        server_id: str,
        *,
        at: str,
        run_id: str,
        application_id: str | None = None,
        finalized: bool = False,
    ) -> None:
        self._record("converged", server_id, "ours" if finalized else "not ours")

    def record_failed(self, server_id: str, *, code: str, message: str, run_id: str) -> None:
        self._record("failed", server_id, code)

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
        self._record(step, server_id, status)


class RecordingLedger(Ledger):
    """A ledger that remembers every move it made, so the table's coverage can be checked."""

    moves: ClassVar[list[tuple[Fate, Event, Fate]]] = []

    def _move(self, row: Any, event: Event, to: Fate, reason: str | None) -> None:
        before = row.fate
        super()._move(row, event, to, reason)
        RecordingLedger.moves.append((before, event, to))


def make(
    *,
    dry_run: bool = False,
    entries: dict[str, JournalEntry] | None = None,
    approval: bool = False,
) -> tuple[RecordingLedger, FakeWriter, Stop]:
    writer, stop = FakeWriter(), Stop()
    ledger = RecordingLedger(
        WAVE,
        writer=None if dry_run else writer,
        run_id="r1",
        stop=stop,
        now_iso=lambda: "t1",
        entries=entries,
        require_approval=approval,
    )
    return ledger, writer, stop


def check(ledger: Ledger, first: ServerView | None, second: ServerView | None = None) -> None:
    """The pre-flight's verdicts on application APP (S2 ready unless told otherwise)."""
    second = second or view("CUTTING_OVER", sid=S2)
    servers = WAVE.applications[0].servers
    ledger.checked([decide(s, v, Config()) for s, v in zip(servers, (first, second), strict=True)])


LAUNCHABLE = ServerView(
    S1,
    application_id=APP,
    lifecycle_state="READY_FOR_CUTOVER",
    replication_state="CONTINUOUS",
    archived=False,
    lag_s=5.0,
)


def night(
    ledger: Ledger, first: ServerView | None = None, second: ServerView | None = None
) -> None:
    """The launch pre-flight's verdicts on application APP (both launchable unless told)."""
    first = first or LAUNCHABLE
    second = second or replace(LAUNCHABLE, source_server_id=S2)
    servers = WAVE.applications[0].servers
    config = Config(launch=True)
    ledger.checked(
        [decide_launch(s, v, config, {}) for s, v in zip(servers, (first, second), strict=True)]
    )


def launch(ledger: Ledger, *ids: str) -> None:
    ledger.launch_started(list(ids or (S1, S2)), 0.0)
    ledger.launch_accepted(list(ids or (S1, S2)), "mgnjob-1")


def verify(ledger: Ledger, *ids: str) -> None:
    for sid in ids or (S1, S2):
        ledger.verified(sid, None)


def send(ledger: Ledger, sid: str = S1) -> None:
    assert ledger.may_send(sid)
    ledger.sending(sid)


Op = Callable[[Ledger], None]


@dataclass(frozen=True)
class Case:
    name: str
    ops: list[Op]
    fate: Fate
    outcome: Outcome
    writes: list[tuple[str, ...]]
    entries: dict[str, JournalEntry] | None = None
    dry_run: bool = False
    reason: str | None = None  # a part of the final reason
    approval: bool = False


CASES = [
    Case(
        "ready, run ended before sending",
        [lambda lg: check(lg, READY)],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="before FinalizeCutover",
    ),
    Case(
        "dry run: would finalize, writes nothing",
        [lambda lg: check(lg, READY)],
        Fate.WOULD_FINALIZE,
        Outcome.WOULD_FINALIZE,
        [],
        dry_run=True,
    ),
    Case(
        "blocked by the pre-flight",
        [lambda lg: check(lg, WAITING)],
        Fate.BLOCKED,
        Outcome.BLOCKED,
        [],
        reason="first_boot: WAITING",
    ),
    Case(
        "blocked by the gate",
        [lambda lg: check(lg, READY, view("TESTING", sid=S2))],
        Fate.BLOCKED,
        Outcome.BLOCKED,
        [],
        reason=f"application_gate: {S2} wrong_state",
    ),
    Case(
        "dry run: blocked by the gate",
        [lambda lg: check(lg, READY, view("TESTING", sid=S2))],
        Fate.BLOCKED,
        Outcome.BLOCKED,
        [],
        dry_run=True,
        reason="application_gate",
    ),
    Case(
        "found converged, never ours",
        [lambda lg: check(lg, DONE)],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("converged", S1, "not ours")],
    ),
    Case(
        "found converged and archived: done, not blocked",
        [lambda lg: check(lg, view("CUTOVER", "DISCONNECTED", archived=True))],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("converged", S1, "not ours")],
    ),
    Case(
        "converged after an earlier run's accepted finalize",
        [lambda lg: check(lg, DONE)],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("converged", S1, "ours")],
        entries={S1: entry("accepted", 1, "t0")},
    ),
    Case(
        "converged after an earlier unanswered intent",
        [lambda lg: check(lg, DONE)],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("converged", S1, "ours")],
        entries={S1: entry("intent", 1)},
    ),
    Case(
        "dry run: converged after our earlier run, nothing written",
        [lambda lg: check(lg, DONE)],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [],
        dry_run=True,
        entries={S1: entry("accepted", 1, "t0")},
    ),
    Case(
        "accepted earlier, not yet confirmed: polled, never resent",
        [lambda lg: check(lg, READY)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [],
        entries={S1: entry("accepted", 1, "t0")},
        reason="finalize accepted",
    ),
    Case(
        "dry run after a timed-out run: not finalized, not converged",
        [lambda lg: check(lg, READY)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [],
        dry_run=True,
        entries={S1: entry("accepted", 1, "t0")},
    ),
    Case(
        "an earlier intent and MGN shows CUTOVER: ours, waiting for DISCONNECTED",
        [lambda lg: check(lg, HALF), lambda lg: lg.observed(DONE)],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("converged", S1, "ours")],
        entries={S1: entry("intent", 2)},
    ),
    Case(
        "cut over elsewhere, replication catches up",
        [lambda lg: check(lg, HALF), lambda lg: lg.observed(DONE)],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("converged", S1, "not ours")],
    ),
    Case(
        "cut over elsewhere, never disconnected",
        [lambda lg: check(lg, HALF), lambda lg: lg.expired(S1)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [],
        reason="cut over outside this run",
    ),
    Case(
        "cut over elsewhere, the run ended first",
        [lambda lg: check(lg, HALF)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [],
        reason="cut over outside this run",
    ),
    Case(
        "sent, 200, converged",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.answered(S1, DONE),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("intent", S1), ("accepted", S1), ("converged", S1, "ours")],
    ),
    Case(
        "sent, 200, never confirmed",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.answered(S1, None),
            lambda lg: lg.expired(S1),
        ],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [("intent", S1), ("accepted", S1)],
    ),
    Case(
        "timed out, then the last read shows it converged",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.answered(S1, None),
            lambda lg: lg.expired(S1),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("intent", S1), ("accepted", S1), ("converged", S1, "ours")],
    ),
    Case(
        "accepted, run ended before confirmation",
        [lambda lg: check(lg, READY), send, lambda lg: lg.answered(S1, None)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [("intent", S1), ("accepted", S1)],
    ),
    Case(
        "409, read back converged, not ours",
        [lambda lg: check(lg, READY), send, lambda lg: lg.refused(S1, CONFLICT, DONE)],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("intent", S1), ("converged", S1, "not ours")],
    ),
    Case(
        "dropped, retried, 409, read back CUTOVER: ours",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.ambiguous(S1),
            send,
            lambda lg: lg.refused(S1, CONFLICT, HALF),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("intent", S1), ("intent", S1), ("accepted", S1), ("converged", S1, "ours")],
    ),
    Case(
        "409, read back CUTOVER, not ours: done elsewhere",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.refused(S1, CONFLICT, HALF),
            lambda lg: lg.observed(DONE),
        ],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("intent", S1), ("converged", S1, "not ours")],
    ),
    Case(
        "409 while MGN still shows CUTTING_OVER: unresolved, never accepted",
        [lambda lg: check(lg, READY), send, lambda lg: lg.refused(S1, CONFLICT, READY)],
        Fate.UNRESOLVED,
        Outcome.UNCONFIRMED,
        [("intent", S1), ("failed", S1, "ConflictException")],
        reason="CUTTING_OVER",
    ),
    Case(
        "dropped, retried, 409 while reads still show CUTTING_OVER: polled, not held",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.ambiguous(S1),
            send,
            lambda lg: lg.refused(S1, CONFLICT, READY),
            lambda lg: lg.observed(DONE),
            lambda lg: send(lg, S2),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("intent", S1), ("intent", S1), ("converged", S1, "ours"), ("intent", S2)],
    ),
    Case(
        "unresolved, then the last read shows it converged: done, but not by our call",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.refused(S1, CONFLICT, READY),
            lambda lg: lg.observed(DONE),
        ],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [("intent", S1), ("failed", S1, "ConflictException"), ("converged", S1, "not ours")],
    ),
    Case(
        "409 in another state: failed with the state",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.refused(S1, CONFLICT, view("READY_FOR_CUTOVER")),
        ],
        Fate.FAILED,
        Outcome.FAILED,
        [("intent", S1), ("failed", S1, "ConflictException")],
        reason="wrong_state: MGN refused it and shows READY_FOR_CUTOVER",
    ),
    Case(
        "409 after a drop, not readable: unconfirmed",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.ambiguous(S1),
            send,
            lambda lg: lg.refused(S1, CONFLICT, None),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("intent", S1), ("intent", S1)],
    ),
    Case(
        "404: failed",
        [lambda lg: check(lg, READY), send, lambda lg: lg.refused(S1, GONE, None)],
        Fate.FAILED,
        Outcome.FAILED,
        [("intent", S1), ("failed", S1, GONE.code)],
        reason="not_found",
    ),
    Case(
        "ambiguous, given up, then MGN shows it converged: finalized by this run",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.unconfirmed(S1, None, "dropped"),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [("intent", S1), ("converged", S1, "ours")],
    ),
    Case(
        "ambiguous, given up, never shown",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.unconfirmed(S1, None, "dropped"),
            lambda lg: lg.observed(READY),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("intent", S1)],
        reason="CUTTING_OVER",
    ),
    Case(
        "a sibling refused before it was sent: held",
        [
            lambda lg: check(lg, READY),
            lambda lg: send(lg, S2),
            lambda lg: lg.refused(S2, GONE, None),
            lambda lg: lg.may_send(S1),
        ],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [("intent", S2), ("failed", S2, GONE.code)],
        reason=f"application_gate: {S2} was refused",
    ),
    Case(
        "a sibling refused while it was retrying after a drop: unconfirmed",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.ambiguous(S1),
            lambda lg: send(lg, S2),
            lambda lg: lg.refused(S2, GONE, None),
            lambda lg: lg.may_send(S1),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("intent", S1), ("intent", S2), ("failed", S2, GONE.code)],
    ),
    Case(
        "a sibling refused while it was backing off, never applied: held",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: send(lg, S2),
            lambda lg: lg.refused(S2, GONE, None),
            lambda lg: lg.may_send(S1),
        ],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [("intent", S1), ("intent", S2), ("failed", S2, GONE.code)],
    ),
    Case(
        "stopped before sending",
        [lambda lg: check(lg, READY), lambda lg: lg.stopped(S1, "run interrupted")],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="run interrupted",
    ),
    Case(
        "stopped between attempts after a drop",
        [
            lambda lg: check(lg, READY),
            send,
            lambda lg: lg.ambiguous(S1),
            lambda lg: lg.stopped(S1, "run interrupted"),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("intent", S1)],
        reason="rerun to confirm",
    ),
    Case(
        "stopped between attempts after a 429",
        [lambda lg: check(lg, READY), send, lambda lg: lg.stopped(S1, "run interrupted")],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [("intent", S1)],
    ),
    Case(
        "the run ended with a call on the wire",
        [lambda lg: check(lg, READY), send],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("intent", S1)],
        reason="in flight",
    ),
    Case(
        "never checked: the pre-flight failed",
        [lambda lg: lg.not_checked("pre-flight failed, not sent: boom")],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="pre-flight failed",
    ),
    # The night before the finalize (run --launch).
    Case(
        "launchable, the run ended first",
        [night],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="before StartCutover",
    ),
    Case(
        "dry run: would launch", [night], Fate.WOULD_LAUNCH, Outcome.WOULD_LAUNCH, [], dry_run=True
    ),
    Case(
        "a lagging sibling blocks the launch",
        [lambda lg: night(lg, None, replace(LAUNCHABLE, source_server_id=S2, lag_s=900.0))],
        Fate.BLOCKED,
        Outcome.BLOCKED,
        [],
        reason=f"application_gate: {S2} replication_lag",
    ),
    Case(
        "dry run: a lagging sibling blocks the launch",
        [lambda lg: night(lg, None, replace(LAUNCHABLE, source_server_id=S2, lag_s=900.0))],
        Fate.BLOCKED,
        Outcome.BLOCKED,
        [],
        dry_run=True,
    ),
    Case(
        "launched, verified, finalized",
        [
            night,
            launch,
            verify,
            send,
            lambda lg: lg.answered(S1, None),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("intent", S1),
            ("accepted", S1),
            ("converged", S1, "ours"),
        ],
    ),
    Case(
        "quota refused: queued again, then the run ended",
        [
            night,
            lambda lg: lg.launch_started([S1], 0.0),
            lambda lg: lg.launch_deferred([S1], "job quota"),
        ],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [("launch", S1, "intent")],
    ),
    Case(
        "StartCutover refused for good",
        [night, lambda lg: lg.launch_started([S1], 0.0), lambda lg: lg.launch_refused([S1], GONE)],
        Fate.LAUNCH_FAILED,
        Outcome.FAILED,
        [("launch", S1, "intent"), ("launch", S1, "failed")],
        reason="launch_refused",
    ),
    Case(
        "StartCutover unclear until its retries ran out: unconfirmed, never sent again",
        [
            night,
            lambda lg: lg.launch_started([S1, S2], 0.0),
            lambda lg: lg.launch_unclear([S1, S2], "retries_exhausted: 500 on StartCutover"),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("launch", S1, "intent"), ("launch", S2, "intent")],
        reason="retries_exhausted",
    ),
    Case(
        "StartCutover unclear, queued again, then its retries ran out",
        [
            night,
            lambda lg: lg.launch_started([S1], 0.0),
            lambda lg: lg.launch_deferred([S1], "500 on StartCutover; sent again"),
            lambda lg: lg.launch_unclear([S1], "retries_exhausted: 500 on StartCutover"),
        ],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("launch", S1, "intent")],
        reason="retries_exhausted",
    ),
    Case(
        "queued longer than launch_timeout_s since its first StartCutover: failed",
        [
            night,
            lambda lg: lg.launch_started([S1], 0.0),
            lambda lg: lg.launch_deferred([S1], "job quota"),
            lambda lg: lg.launch_expired([S1], "launch_timeout: not launched within 3s"),
        ],
        Fate.LAUNCH_FAILED,
        Outcome.FAILED,
        [("launch", S1, "intent"), ("launch", S1, "failed")],
        reason="launch_timeout",
    ),
    Case(
        "CUTOVER read while its launch is watched: converged, not failed",
        [night, launch, lambda lg: lg.launch_observed(S1, DONE)],
        Fate.ALREADY_CUTOVER,
        Outcome.ALREADY_CUTOVER,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("converged", S1, "not ours"),
        ],
    ),
    Case(
        "CUTOVER read after it was verified, an earlier finalize of ours: polled, never reverted",
        [night, launch, lambda lg: verify(lg, S1), lambda lg: lg.launch_observed(S1, HALF)],
        Fate.TIMED_OUT,
        Outcome.TIMED_OUT,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
        ],
        entries={S1: entry("intent", 1)},
    ),
    Case(
        "StartCutover unanswered when the run ended",
        [night, lambda lg: lg.launch_started([S1], 0.0)],
        Fate.UNCONFIRMED,
        Outcome.UNCONFIRMED,
        [("launch", S1, "intent")],
        reason="StartCutover was in flight",
    ),
    Case(
        "boot failed: failed, its launched sibling held, both reverted",
        [
            night,
            launch,
            lambda lg: lg.launch_failed(S1, "first_boot: STOPPED"),
            lambda lg: (lg.revert_started(S1), lg.reverted(S1, "terminated")),
            lambda lg: (lg.revert_started(S2), lg.reverted(S2, "terminated")),
        ],
        Fate.REVERTED,
        Outcome.REVERTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("launch", S1, "failed"),
            ("revert", S1, "intent"),
            ("revert", S1, "done"),
            ("revert", S2, "intent"),
            ("revert", S2, "done"),
        ],
        reason="first_boot: STOPPED",
    ),
    Case(
        "verified, then its own instance check failed",
        [
            night,
            launch,
            lambda lg: verify(lg, S1),
            lambda lg: lg.launch_failed(S1, "instance_unhealthy"),
        ],
        Fate.LAUNCH_FAILED,
        Outcome.FAILED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("launch", S1, "failed"),
        ],
    ),
    Case(
        "verified, waiting for a sibling that failed: held",
        [
            night,
            launch,
            lambda lg: verify(lg, S1),
            lambda lg: lg.launch_failed(S2, "first_boot: STOPPED"),
        ],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("launch", S2, "failed"),
        ],
        reason="application_gate",
    ),
    Case(
        "queued while a sibling's job failed: held",
        [night, lambda lg: launch(lg, S2), lambda lg: lg.launch_failed(S2, "launch_failed")],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [("launch", S2, "intent"), ("launch", S2, "accepted"), ("launch", S2, "failed")],
    ),
    Case(
        "in the same StartCutover as a sibling that failed first: held on acceptance",
        [
            night,
            lambda lg: lg.launch_started([S1, S2], 0.0),
            lambda lg: lg.launch_accepted([S2], "mgnjob-1"),
            lambda lg: lg.launch_failed(S2, "first_boot: STOPPED"),
            lambda lg: lg.launch_accepted([S1], "mgnjob-1"),
        ],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S2, "accepted"),
            ("launch", S2, "failed"),
            ("launch", S1, "accepted"),
        ],
    ),
    Case(
        "verified, the run ended before its application was",
        [night, launch, lambda lg: verify(lg, S1)],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
        ],
        reason="launched (job mgnjob-1)",
    ),
    Case(
        "already launched by an earlier run: watched, the run ended",
        [lambda lg: night(lg, view("CUTTING_OVER", first_boot="WAITING"))],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="launched",
    ),
    Case(
        "already launched, its sibling blocked: held",
        [lambda lg: night(lg, view("CUTTING_OVER"), view("TESTING", sid=S2))],
        Fate.HELD,
        Outcome.NOT_ATTEMPTED,
        [],
        reason="application_gate",
    ),
    Case(
        "approved by a person, then finalized",
        [
            night,
            launch,
            verify,
            lambda lg: lg.approved(APP, "alice", "t2"),
            send,
            lambda lg: lg.answered(S1, None),
            lambda lg: lg.observed(DONE),
        ],
        Fate.FINALIZED,
        Outcome.FINALIZED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("approval", S1, "intent"),
            ("approval", S2, "intent"),
            ("approval", S1, "done"),
            ("approval", S2, "done"),
            ("intent", S1),
            ("accepted", S1),
            ("converged", S1, "ours"),
        ],
        approval=True,
    ),
    Case(
        "approved, the run ended before it was sent",
        [night, launch, verify, lambda lg: lg.approved(APP, "alice", "t2")],
        Fate.NOT_ATTEMPTED,
        Outcome.NOT_ATTEMPTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("approval", S1, "intent"),
            ("approval", S2, "intent"),
            ("approval", S1, "done"),
            ("approval", S2, "done"),
        ],
        approval=True,
    ),
    Case(
        "never approved in time, then reverted",
        [
            night,
            launch,
            verify,
            lambda lg: lg.approval_expired(APP, 60.0),
            lambda lg: (lg.revert_started(S1), lg.reverted(S1, "terminated")),
        ],
        Fate.REVERTED,
        Outcome.REVERTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("approval", S1, "intent"),
            ("approval", S2, "intent"),
            ("approval", S1, "failed"),
            ("approval", S2, "failed"),
            ("revert", S1, "intent"),
            ("revert", S1, "done"),
        ],
        approval=True,
        reason="not approved within 60s",
    ),
    Case(
        "waiting for approval when the run ended",
        [night, launch, verify],
        Fate.NOT_APPROVED,
        Outcome.NOT_ATTEMPTED,
        [
            ("launch", S1, "intent"),
            ("launch", S2, "intent"),
            ("launch", S1, "accepted"),
            ("launch", S2, "accepted"),
            ("approval", S1, "intent"),
            ("approval", S2, "intent"),
        ],
        approval=True,
        reason="not approved before the run",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transition(case: Case) -> None:
    """Each row: the events in order give this fate, this report outcome, these writes."""
    ledger, writer, _ = make(dry_run=case.dry_run, entries=case.entries, approval=case.approval)
    for op in case.ops:
        op(ledger)
    ledger.settle()
    assert ledger.fate(S1) is case.fate
    row = next(r for r in ledger.results() if r.source_server_id == S1)
    assert row.outcome is case.outcome
    assert writer.writes == case.writes
    if case.reason is not None:
        assert case.reason in (row.reason or ""), row.reason
    _consistent(row)


def _consistent(row: ServerResult) -> None:
    """A row never contradicts its columns."""
    converged_columns = (row.lifecycle_state, row.replication_state) == ("CUTOVER", "DISCONNECTED")
    converged_outcome = row.outcome in (Outcome.FINALIZED, Outcome.ALREADY_CUTOVER)
    assert converged_columns == converged_outcome, row


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_report_rows_kept_between_events_are_never_stale(case: Case) -> None:
    """The ledger keeps each server's report row until the server changes (the rows of
    servers done early are the very objects the report gets at the end): after every event
    of every case, the kept rows equal rows built afresh, and an unchanged row is kept."""
    ledger, _, _ = make(dry_run=case.dry_run, entries=case.entries, approval=case.approval)
    ledger.results()
    noted = [lambda lg: lg.note(S1, "first_boot_seen", "by the test")]  # the timeline alone
    for op in [*noted, *case.ops, *noted, lambda lg: lg.settle()]:
        op(ledger)
        kept = ledger.results()
        assert kept == [ledger._build_result(row) for row in ledger._rows.values()]
        again = ledger.results()
        assert all(a is b for a, b in zip(again, kept, strict=True))  # kept, not rebuilt


def test_a_row_made_fast_is_the_row_the_dataclass_makes() -> None:
    """`_Row.new` (the ledger's start, without `__setattr__`) sets every field to the
    dataclass's default, and each row gets its own timeline."""
    server = Server("s-1234567890abcdef0", "app-1234567890abcdef0")
    fast, slow = _Row.new(server), _Row(server)
    assert [getattr(fast, f.name) for f in fields(_Row)] == [
        getattr(slow, f.name) for f in fields(_Row)
    ]
    other = _Row.new(server)
    other.timeline.append({"event": "checked"})
    assert fast.timeline == [] and fast.result is None


def test_the_table_is_exercised_in_full() -> None:
    """Every (state, event) pair the transition table allows is taken by some case above."""
    RecordingLedger.moves.clear()
    for case in CASES:
        ledger, _, _ = make(dry_run=case.dry_run, entries=case.entries, approval=case.approval)
        for op in case.ops:
            op(ledger)
        ledger.settle()
    taken = {(before, event) for before, event, _ in RecordingLedger.moves}
    missing = set(TRANSITIONS) - taken
    # Observed from a state MGN can only leave by converging: covered through TIMED_OUT etc.
    assert missing == set(), sorted(missing)


def test_moves_outside_the_table_raise() -> None:
    """An answer for a server that was never sent is a bug, not a silent change."""
    ledger, _, _ = make()
    check(ledger, READY)
    with pytest.raises(IllegalMove):
        ledger.answered(S1, None)


def test_a_dry_run_never_sends() -> None:
    """A dry-run ledger refuses to journal an intent."""
    ledger, _, _ = make(dry_run=True)
    check(ledger, READY)
    with pytest.raises(IllegalMove):
        ledger.sending(S1)


def test_an_intent_that_cannot_be_written_is_not_sent_and_stops_the_run() -> None:
    """StateWriteError on the intent: raised to the pool (it must not send), the server is
    not_attempted and the run stops with exit 5."""
    ledger, writer, stop = make()
    check(ledger, READY)
    writer.fail = True
    assert ledger.may_send(S1)
    with pytest.raises(StateWriteError):
        ledger.sending(S1)
    assert ledger.fate(S1) is Fate.NOT_ATTEMPTED
    assert stop.reason is StopReason.LOCAL_STATE
    assert ledger.exit_code(covered_only=False) is ExitCode.LOCAL_STATE


def test_a_result_that_cannot_be_written_keeps_what_mgn_said_and_stops_the_run() -> None:
    """The 200 arrived but the journal fails: the ledger still says accepted; exit 5."""
    ledger, writer, stop = make()
    check(ledger, READY)
    send(ledger)
    writer.fail = True
    ledger.answered(S1, None)
    assert ledger.fate(S1) is Fate.ACCEPTED
    assert stop.reason is StopReason.LOCAL_STATE


@pytest.mark.parametrize(
    ("views", "dry_run", "stop", "code"),
    [
        ((DONE, DONE, DONE), False, None, ExitCode.OK),
        ((DONE, DONE, DONE), True, None, ExitCode.OK),
        ((READY, READY, READY), True, None, ExitCode.OK),  # would_finalize: go, as `plan`
        ((READY, READY, DONE), False, None, ExitCode.NOT_CONVERGED),
        ((DONE, DONE, DONE), False, StopReason.ACCOUNT, ExitCode.ACCOUNT),
        ((DONE, DONE, DONE), False, StopReason.LOCAL_STATE, ExitCode.LOCAL_STATE),
        ((DONE, DONE, DONE), False, StopReason.SIGNAL, ExitCode.NOT_CONVERGED),
    ],
)
def test_exit_codes(
    views: tuple[ServerView, ...], dry_run: bool, stop: StopReason | None, code: ExitCode
) -> None:
    """0 only when every server converged and nothing stopped the run (a dry run: or would be
    finalized, `plan`'s verdict); the stop reason's own code otherwise."""
    ledger, _, run_stop = make(dry_run=dry_run)
    first, second, third = (
        ServerView(
            s,
            application_id=a,
            lifecycle_state=v.lifecycle_state,
            replication_state=v.replication_state,
            first_boot="SUCCEEDED",
            archived=False,
        )
        for s, a, v in zip((S1, S2, S3), (APP, APP, OTHER), views, strict=True)
    )
    check(ledger, first, second)
    ledger.checked([decide(WAVE.applications[1].servers[0], third, Config())])
    if stop is not None:
        run_stop.request(stop, "test")
    ledger.settle()
    assert ledger.exit_code(covered_only=False) is code


def test_a_subset_keeps_the_other_applications_last_rows() -> None:
    """Outside --application, servers keep their carried row; the subset's own exit code is
    its own, the wave's counts every server."""
    carried = ServerResult(S3, OTHER, outcome=Outcome.BLOCKED, reason="first_boot: WAITING")
    writer, stop = FakeWriter(), Stop()
    ledger = Ledger(
        WAVE,
        writer=writer,
        run_id="r2",
        stop=stop,
        now_iso=lambda: "t",
        covered=[APP],
        carried={S3: carried},
    )
    assert [s.source_server_id for s in ledger.in_run()] == [S1, S2]
    check(ledger, DONE, view("CUTOVER", "DISCONNECTED", sid=S2))
    ledger.settle()
    rows = {r.source_server_id: r for r in ledger.results()}
    assert rows[S3] is carried
    assert rows[S1].application_name == "payments"
    assert ledger.exit_code(covered_only=True) is ExitCode.OK
    assert ledger.exit_code(covered_only=False) is ExitCode.NOT_CONVERGED
