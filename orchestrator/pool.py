"""The finalize pool: FinalizeCutover for every ready server, concurrently, under a rate limit.

The pool sends and reports what MGN answered; the ledger decides what each answer means (one
place, `_finalize_one`, catches every per-server failure and reports it as an event). Before each
attempt it asks the ledger whether the server may still be sent (its application may be held)
and has the ledger journal the intent. Once the run stops, nothing new is sent: servers waiting
for a slot, a rate-limit token or a backoff stop at once; calls on the wire are awaited
`GRACE_S` when the run halts, then abandoned as ambiguous. A server's own stop (`stop_of`, its
(account, region)'s part of the run's stop) does the same for that target's servers only.

Servers handed over wait in a queue per rate limiter (per (account, region)); at most
`concurrency` of each queue are active at a time (started, not done, not backing off), so a
wave of 40,000 servers has a few thousand tasks alive, not 80,000; an account waiting for its
rate slots never keeps another account's servers from starting, and a server backing off
never keeps a sibling from being sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator.errors import (
    AccountError,
    ConflictError,
    MgnError,
    MisattributedError,
    RetryableError,
    StateWriteError,
    ThrottledError,
)
from orchestrator.ledger import POLLED, Ledger
from orchestrator.limiter import RateLimiter, Sleep
from orchestrator.retry import Retrier
from orchestrator.stop import GRACE_S, Stop, Stopped, StopReason
from orchestrator.views import ServerView

log = structlog.get_logger(__name__)

Finalize = Callable[[str], Awaitable[ServerView | None]]
Describe = Callable[[Sequence[str]], Awaitable[list[ServerView]]]
# One retrier for every server, or each server's own (its (account, region)'s limiter).
PerServer = Retrier | Callable[[str], Retrier]


class _Settled(Exception):
    """The ledger has settled this server (its application is held, or a 409 was decided)."""


class _AbandonedOnWire(Exception):
    """The run halted while this server's call was on the wire, and the grace passed."""


class FinalizePool:
    """Runs FinalizeCutover for the servers handed to it; reports every answer to the ledger."""

    def __init__(
        self,
        *,
        finalize: Finalize,
        describe: Describe,
        ledger: Ledger,
        writes: PerServer,
        reads: PerServer,
        concurrency: int,
        stop: Stop,
        on_waiting: Callable[[str], None],
        stop_of: Callable[[str], Stop] | None = None,
        grace_s: float = GRACE_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`on_waiting`: called for each server the reconciler must now watch; `stop_of`: the
        stop that governs a server (its target's part of `stop`; `stop` itself by default)."""
        self._finalize = finalize
        self._describe = describe
        self._ledger = ledger
        self._writes = _per_server(writes)
        self._reads = _per_server(reads)
        self._sem = asyncio.Semaphore(concurrency)
        self._stop = stop
        self._stop_of = stop_of or (lambda _server_id: stop)
        self._watchers: dict[Stop, asyncio.Future[None]] = {}
        self._on_waiting = on_waiting
        self._grace_s = grace_s
        self._sleep = sleep
        # Per rate limiter: the servers not started yet (with the context they were handed
        # over in), and how many of its servers are active (started, not done, not backing off).
        self._queued: dict[RateLimiter | None, deque[tuple[str, contextvars.Context]]] = {}
        self._active: dict[RateLimiter | None, int] = {}
        self._active_per_limiter = concurrency
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None  # a bug escaped a server's task
        self._intake_closed = False
        self._more = asyncio.Event()
        # Per server: its retry loop, and its FinalizeCutover if one is on the wire now.
        self._retrying: dict[str, asyncio.Future[None]] = {}
        self._wire: dict[str, asyncio.Future[ServerView | None]] = {}
        # Applications with a 409 being read back (nothing more of them is sent meanwhile).
        self._deciding: dict[str, int] = {}
        self._decided = asyncio.Event()
        self._reading_back: set[str] = set()

    def submit(self, server_ids: Sequence[str]) -> None:
        """Finalize more servers (the pre-flight hands them over per application): each is
        started once its rate limiter has fewer than `concurrency` servers active."""
        context = contextvars.copy_context()
        limiters = []
        for server_id in server_ids:
            limiter = self._limiter_of(server_id)
            self._queued.setdefault(limiter, deque()).append((server_id, context))
            limiters.append(limiter)
        for limiter in dict.fromkeys(limiters):
            self._start(limiter)
        self._more.set()

    def _limiter_of(self, server_id: str) -> RateLimiter | None:
        try:
            return self._writes(server_id).limiter
        except AccountError:  # its target is blocked: its own task meets it and reports it
            return None

    def _start(self, limiter: RateLimiter | None) -> None:
        """Start the limiter's queued servers while it has room; once sends stopped, settle
        them instead (what a server waiting for a slot would have become)."""
        queue = self._queued.get(limiter)
        while queue and self._failure is None:
            if self._stop_of(queue[0][0]).sends_stopped:
                self._settle_unstarted(queue.popleft()[0])
                continue
            if self._active.get(limiter, 0) >= self._active_per_limiter:
                return
            server_id, context = queue.popleft()
            loop = asyncio.get_running_loop()
            # Its own copy: each task binds its server to the log context.
            task = loop.create_task(self._finalize_one(server_id), context=context.copy())
            self._active[limiter] = self._active.get(limiter, 0) + 1
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, limiter))

    def _done(self, limiter: RateLimiter | None, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._active[limiter] -= 1
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
        self._start(limiter)
        self._more.set()

    def pause(self, limiter: RateLimiter) -> None:
        """A server of `limiter` starts backing off: it is not active until `resume`."""
        self._active[limiter] -= 1
        self._start(limiter)

    def resume(self, limiter: RateLimiter) -> None:
        """The server's backoff is over: active again (the bound may be passed briefly)."""
        self._active[limiter] += 1

    def _settle_unstarted(self, server_id: str) -> None:
        self._ledger.stopped(server_id, self._stop_of(server_id).why())
        if self._ledger.fate(server_id) in POLLED:
            self._on_waiting(server_id)

    def _settle_queued(self) -> None:
        for limiter in list(self._queued):
            self._start(limiter)

    def close(self) -> None:
        """Nothing more will be submitted: `run` returns once the submitted are done."""
        self._intake_closed = True
        self._more.set()

    async def run(self) -> None:
        """Work until the intake is closed and every submitted server has been reported."""
        self._watch(self._stop)
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                idle = not self._tasks and not any(self._queued.values())
                if idle and self._intake_closed:
                    return
                self._more.clear()
                await self._more.wait()
        except asyncio.CancelledError:
            self._queued.clear()  # never started: settled with the run
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        finally:
            watchers = list(self._watchers.values())
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    def _watch(self, stop: Stop) -> None:
        """Watch `stop` (the run's, or one target's part of it) once."""
        if stop not in self._watchers:
            self._watchers[stop] = asyncio.ensure_future(self._watch_stop(stop))

    async def _watch_stop(self, stop: Stop) -> None:
        """Once `stop` stops: release every waiting server it governs; once it halts: give
        their calls on the wire `grace_s`, then abandon them."""

        def governed(server_id: str) -> bool:
            return stop is self._stop or self._stop_of(server_id) is stop

        await stop.wait_sends_stopped()
        self._cancel_waiting(governed)
        self._settle_queued()  # each queued server settles if its own stop has stopped
        await stop.wait_halted()
        self._cancel_waiting(governed)
        wire = {sid: call for sid, call in self._wire.items() if governed(sid)}
        if wire:
            grace = asyncio.ensure_future(self._sleep(self._grace_s))
            calls = asyncio.ensure_future(asyncio.wait(list(wire.values())))
            try:
                await asyncio.wait({grace, calls}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                grace.cancel()
                calls.cancel()
                await asyncio.gather(grace, calls, return_exceptions=True)
        for call in wire.values():
            call.cancel()

    def _cancel_waiting(self, governed: Callable[[str], bool]) -> None:
        # Only loops parked in a limiter slot, a backoff or the semaphore: never a sent call.
        for server_id, retrying in self._retrying.items():
            busy = server_id in self._wire or server_id in self._reading_back
            if not busy and governed(server_id):
                retrying.cancel()

    async def _finalize_one(self, server_id: str) -> None:
        ledger = self._ledger
        app_id = ledger.application_of(server_id)
        stop = self._stop_of(server_id)
        self._watch(stop)
        with bound_contextvars(sourceServerID=server_id, applicationID=app_id):
            retrying = asyncio.ensure_future(self._attempts(server_id))
            self._retrying[server_id] = retrying
            try:
                await retrying
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if not retrying.cancelled() or not stop.sends_stopped:
                    raise
                if me is not None and me.cancelling():
                    raise
                ledger.stopped(server_id, stop.why())
            finally:
                del self._retrying[server_id]
            if ledger.fate(server_id) in POLLED:
                self._on_waiting(server_id)

    async def _attempts(self, server_id: str) -> None:
        """Every attempt of one server, and what came of them reported to the ledger.

        Reports happen in this task with no await between the last answer and the report, so a
        sibling waiting for a slot can never be sent before a refusal holds its application.
        """
        ledger = self._ledger
        stop = self._stop_of(server_id)
        try:
            writes = self._writes(server_id)
            view = await writes.call(
                lambda: self._attempt(server_id),
                gate=self._sem,
                backoff=_BackingOff(self, writes.limiter),
            )
        except asyncio.CancelledError:
            raise
        except (_Settled, StateWriteError):
            pass  # the ledger has settled it
        except Stopped:
            ledger.stopped(server_id, stop.why())
        except _AbandonedOnWire:
            why = f"{stop.why()} while FinalizeCutover was on the wire"
            ledger.unconfirmed(server_id, None, why)
        except AccountError as err:
            stop.request(StopReason.ACCOUNT, str(err))
            ledger.stopped(server_id, f"account error: {err}")
        except RetryableError as err:
            if ledger.is_ambiguous(server_id):
                why = f"retries_exhausted: {err.code}; an attempt may have gone through"
                ledger.unconfirmed(server_id, err, why)
            else:
                ledger.refused(server_id, err, None)
        except MisattributedError as err:
            # Not this server's answer: it may have gone through, so it is read, never resent.
            ledger.unconfirmed(server_id, err, f"{err.message}; MGN is read to decide")
        except MgnError as err:
            ledger.refused(server_id, err, None)
        except Exception as err:  # one server's bug must not sink the wave
            log.exception("finalize_internal_error")
            ledger.unconfirmed(server_id, None, f"internal error: {type(err).__name__}")
        else:
            ledger.answered(server_id, view)

    async def _attempt(self, server_id: str) -> ServerView | None:
        """One FinalizeCutover, sent only if the ledger still allows it, its intent journaled.

        Raises _Settled when the ledger has settled the server (held, or a 409 decided),
        _AbandonedOnWire, Stopped, or what the call raised.
        """
        ledger = self._ledger
        app_id = ledger.application_of(server_id)
        stop = self._stop_of(server_id)
        while self._deciding.get(app_id):  # a sibling's 409 is being read back: wait for it
            await self._decided.wait()
        if not ledger.may_send(server_id):
            raise _Settled()
        await ledger.sending_soon(server_id)  # the intent, journaled before the call
        if stop.sends_stopped:  # stopped while the intent was being written
            raise Stopped()
        if not ledger.may_send(server_id):  # a sibling was refused meanwhile
            raise _Settled()
        call = asyncio.ensure_future(self._finalize(server_id))
        self._wire[server_id] = call
        try:
            return await call
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if call.cancelled() and not (me and me.cancelling()):
                raise _AbandonedOnWire() from None
            raise
        except ConflictError as err:
            await self._decide_conflict(server_id, app_id, err)
            raise _Settled() from err
        except RetryableError as err:
            if _ambiguous(err):  # it may have reached MGN and taken effect
                ledger.ambiguous(server_id)
            if stop.sends_stopped:  # stopped while this call was out: no retry
                if ledger.is_ambiguous(server_id):
                    raise _AbandonedOnWire() from err
                raise Stopped() from err
            log.info("finalize_retry", error_code=err.code)
            raise
        finally:
            self._wire.pop(server_id, None)

    async def _decide_conflict(self, server_id: str, app_id: str, err: ConflictError) -> None:
        """MGN refused on state: read the server back before anything more of its application
        is sent, then let the ledger decide (accepted, done elsewhere, unresolved, failed)."""
        self._deciding[app_id] = self._deciding.get(app_id, 0) + 1
        self._reading_back.add(server_id)
        try:
            readback = await self._read_back(server_id)
            self._ledger.refused(server_id, err, readback)
        finally:
            self._reading_back.discard(server_id)
            self._deciding[app_id] -= 1
            if not self._deciding[app_id]:
                del self._deciding[app_id]
            self._decided.set()
            self._decided = asyncio.Event()

    async def _read_back(self, server_id: str) -> ServerView | None:
        """After a ConflictException: MGN's view of the server, or None if it cannot be read."""
        stop = self._stop_of(server_id)
        try:
            reads = self._reads(server_id)
            views = await stop.guard(reads.call(lambda: self._describe([server_id])))
        except asyncio.CancelledError:
            raise
        except AccountError as err:
            stop.request(StopReason.ACCOUNT, str(err))
            return None
        except (MgnError, Stopped) as err:
            log.warning("conflict_read_back_failed", error=str(err))
            return None
        return next((v for v in views if v.source_server_id == server_id), None)


class _BackingOff:
    """Held while a server backs off between attempts: it is not active then, so another
    server of its limiter may start."""

    def __init__(self, pool: FinalizePool, limiter: RateLimiter) -> None:
        self._pool, self._limiter = pool, limiter

    async def __aenter__(self) -> None:
        self._pool.pause(self._limiter)

    async def __aexit__(self, *exc: object) -> None:
        self._pool.resume(self._limiter)


def _per_server(retrier: PerServer) -> Callable[[str], Retrier]:
    if isinstance(retrier, Retrier):
        return lambda _server_id: retrier
    return retrier


def _ambiguous(err: RetryableError) -> bool:
    """Whether a failed FinalizeCutover may still have taken effect: a dropped connection or
    timeout after sending, or a 5xx (MGN may have applied it before failing); never a 429 or
    a connection that was never made."""
    if isinstance(err, ThrottledError):
        return False
    return err.ambiguous or err.code != "ConnectionError"
