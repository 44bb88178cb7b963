"""One place that stops a run: a single stop reason on one event.

Whoever sees a reason to stop (a signal, an account-wide error, a journal that cannot be written,
the cutover window closing) calls `Stop.request`; the first reason wins and later ones are kept
only in the log. The pool and the reconciler only *check* it:

| reason       | new FinalizeCutover | calls in flight          | reads and polls        |
|--------------|---------------------|--------------------------|------------------------|
| SIGNAL       | none                | awaited `grace_s`, then ambiguous | stop at once  |
| ACCOUNT      | none                | awaited `grace_s`, then ambiguous | stop at once  |
| LOCAL_STATE  | none                | awaited `grace_s`, then ambiguous | stop at once  |
| WINDOW       | none                | finish                   | go on until their deadline |

Notifications still queued at a halting stop get the same grace, counted from the stop
(`Stop.grace_left_s`), then are dropped and named in the report (`notify.Notifier.flush`).

A run spanning many (account, region) targets gives each one a *part* (`Stop.part`): an account
error requested on a part stops that part only (the table's ACCOUNT row, for that target's work),
every other reason goes to the whole run, and every stop of the run reaches every part. When
every part has failed, the run itself stops for ACCOUNT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Hashable
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from orchestrator.errors import ExitCode

T = TypeVar("T")
log = structlog.get_logger(__name__)

GRACE_S = 2.0  # how long a halting stop waits for calls already on the wire


class StopReason(StrEnum):
    """Why a run stopped before its natural end."""

    SIGNAL = "signal"
    ACCOUNT = "account_error"
    LOCAL_STATE = "local_state"
    WINDOW = "window_closed"


# Reasons that also stop reads, polls and waits (the window only stops sending).
HALTING = frozenset({StopReason.SIGNAL, StopReason.ACCOUNT, StopReason.LOCAL_STATE})

EXIT_CODES = {
    StopReason.SIGNAL: ExitCode.NOT_CONVERGED,
    StopReason.ACCOUNT: ExitCode.ACCOUNT,
    StopReason.LOCAL_STATE: ExitCode.LOCAL_STATE,
    StopReason.WINDOW: ExitCode.NOT_CONVERGED,
}


async def first_of(*waits: Awaitable[Any]) -> None:
    """Wait until the first of `waits` is done (a sleep, a wake-up event, a stop), then cancel
    the others and reap them."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_WHY = {
    StopReason.SIGNAL: "run interrupted",
    StopReason.LOCAL_STATE: "local state could not be written",
    StopReason.WINDOW: "window closed",
}


# An account error or a journal that cannot be written is an error (exit 4, 5); a signal or
# the window closing is a warning: nothing went wrong, the night is cut short.
_STOP_LOG_LEVELS = {
    StopReason.SIGNAL: logging.WARNING,
    StopReason.WINDOW: logging.WARNING,
    StopReason.ACCOUNT: logging.ERROR,
    StopReason.LOCAL_STATE: logging.ERROR,
}


class Stopped(Exception):
    """The run is stopping: the awaited work was abandoned (or never started)."""


class Stop:
    """The run's stop reason and the events tasks wait on. No loop is bound at construction."""

    def __init__(self, *, parent: Stop | None = None, name: str = "") -> None:
        """`parent`, `name`: this is a part of `parent`'s run (use `parent.part(key)`)."""
        self.reason: StopReason | None = None
        self.detail: str = ""
        self.failure: str | None = None  # a part's own account error, if one stopped it
        self.halted_at: float | None = None  # time.monotonic() when a halting stop came
        self._parent, self._name = parent, name
        self._parts: dict[Hashable, Stop] = {}
        self._sends: asyncio.Event | None = None
        self._halt: asyncio.Event | None = None
        self._guarded: set[asyncio.Task[Any]] = set()  # tasks awaiting work under guard()
        self._cancelled_by_halt: set[asyncio.Task[Any]] = set()

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._sends is None or self._halt is None:
            self._sends, self._halt = asyncio.Event(), asyncio.Event()
            if self.reason is not None:
                self._sends.set()
                if self.reason in HALTING:
                    self._halt.set()
        return self._sends, self._halt

    def part(self, key: Hashable) -> Stop:
        """The stop of one part of this run (an (account, region)), made on first use."""
        found = self._parts.get(key)
        if found is None:
            found = self._parts[key] = Stop(parent=self, name=str(key))
            if self.reason is not None:
                found._apply(self.reason, self.detail)
        return found

    def failures(self) -> dict[Hashable, str]:
        """Each part an account error stopped, with the error."""
        return {k: p.failure for k, p in self._parts.items() if p.failure is not None}

    def why(self) -> str:
        """Why the work this stop governs ended early, for report rows ("run ended" while it
        has not stopped)."""
        if self.reason is None:
            return "run ended"
        if self.reason is StopReason.ACCOUNT:
            return f"account error ({self.detail})"
        return _WHY[self.reason]

    def account_error(self) -> str | None:
        """The account error that stopped the run, else the parts' (each named), else None."""
        if self.reason is StopReason.ACCOUNT:
            return self.detail
        failed = self.failures()
        return "; ".join(f"{key}: {why}" for key, why in failed.items()) or None

    def request(self, reason: StopReason, detail: str = "") -> None:
        """Stop for `reason` unless already stopping for another one. On a part, only an
        account error stays in the part; any other reason stops the whole run."""
        parent = self._parent
        if parent is None:
            self._apply(reason, detail)
        elif reason is not StopReason.ACCOUNT:
            parent.request(reason, detail)
        elif self.failure is None:
            self.failure = detail
            self._apply(reason, detail)
            parent._part_failed()

    def _part_failed(self) -> None:
        """Every part failed: the run has nothing left to do anywhere (exit 4)."""
        failed = self.failures()
        if len(failed) < len(self._parts):
            return
        detail = next(iter(failed.values())) if len(failed) == 1 else self.account_error()
        self._apply(StopReason.ACCOUNT, detail or "")

    def _apply(self, reason: StopReason, detail: str) -> None:
        where = {"part": self._name} if self._parent is not None else {}
        if self.reason is not None:
            if not (reason in HALTING and self.reason not in HALTING):
                log.info("stop_also", reason=reason.value, detail=detail, **where)
                return
            # The window closed earlier; a signal now must still halt the reads.
            self.reason, self.detail = reason, detail or self.detail
            if self._halt is not None:
                self._halt.set()
            log.info("stop_also", reason=reason.value, detail=detail, **where)
        else:
            self.reason, self.detail = reason, detail
            event = "part_stopping" if self._parent is not None else "run_stopping"
            log.log(_STOP_LOG_LEVELS[reason], event, reason=reason.value, detail=detail, **where)
            if self._sends is not None and self._halt is not None:
                self._sends.set()
                if reason in HALTING:
                    self._halt.set()
        if reason in HALTING:
            if self.halted_at is None:
                self.halted_at = time.monotonic()
            self._halt_guarded()
        for part in self._parts.values():
            part._apply(reason, detail)

    @property
    def sends_stopped(self) -> bool:
        """Nothing new may be sent."""
        return self.reason is not None

    @property
    def halted(self) -> bool:
        """Reads, polls and waits stop too."""
        return self.reason in HALTING

    def grace_left_s(self, grace_s: float = GRACE_S) -> float | None:
        """Seconds left of the grace that began when the run halted; None while it has not."""
        if self.halted_at is None:
            return None
        return max(0.0, self.halted_at + grace_s - time.monotonic())

    @property
    def exit_code(self) -> ExitCode | None:
        return EXIT_CODES[self.reason] if self.reason is not None else None

    async def wait_sends_stopped(self) -> None:
        await self._events()[0].wait()

    async def wait_halted(self) -> None:
        await self._events()[1].wait()

    async def guard(self, work: Awaitable[T]) -> T:
        """Await `work` in this task unless a halting stop comes first; then cancel it and
        raise Stopped. (No task of its own: an answer reaches its reader without extra hops.)"""
        if self.halted:
            if asyncio.iscoroutine(work):
                work.close()
            raise Stopped()
        me = asyncio.current_task()
        assert me is not None
        self._guarded.add(me)
        try:
            return await work
        except asyncio.CancelledError:
            if me in self._cancelled_by_halt:
                self._cancelled_by_halt.discard(me)
                me.uncancel()
                raise Stopped() from None
            raise
        finally:
            self._guarded.discard(me)
            self._cancelled_by_halt.discard(me)

    def _halt_guarded(self) -> None:
        """A halting stop: cancel every task awaiting guarded work (it raises Stopped)."""
        for task in list(self._guarded):
            if task not in self._cancelled_by_halt:
                self._cancelled_by_halt.add(task)
                task.cancel()
