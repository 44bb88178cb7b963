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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
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


class Stopped(Exception):
    """The run is stopping: the awaited work was abandoned (or never started)."""


class Stop:
    """The run's stop reason and the events tasks wait on. No loop is bound at construction."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.detail: str = ""
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

    def request(self, reason: StopReason, detail: str = "") -> None:
        """Stop for `reason` unless the run is already stopping for another one."""
        if self.reason is not None:
            if reason in HALTING and self.reason not in HALTING:
                # The window closed earlier; a signal now must still halt the reads.
                self.reason, self.detail = reason, detail or self.detail
                if self._halt is not None:
                    self._halt.set()
                self._halt_guarded()
            log.info("stop_also", reason=reason.value, detail=detail)
            return
        self.reason, self.detail = reason, detail
        log.warning("run_stopping", reason=reason.value, detail=detail)
        if self._sends is not None and self._halt is not None:
            self._sends.set()
            if reason in HALTING:
                self._halt.set()
        if reason in HALTING:
            self._halt_guarded()

    @property
    def sends_stopped(self) -> bool:
        """Nothing new may be sent."""
        return self.reason is not None

    @property
    def halted(self) -> bool:
        """Reads, polls and waits stop too."""
        return self.reason in HALTING

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
