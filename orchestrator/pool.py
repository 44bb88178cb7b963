"""The finalize pool: FinalizeCutover for every ready server, concurrently, under a rate limit.

Each server's failure is caught in one place (`_finalize_one`), recorded, and the pool goes on;
an account-wide error stops the pool (nothing more is sent) and the rest are `not_attempted`.
The journal records the intent before every call and the result after it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator.errors import (
    AccountError,
    ConflictError,
    JournalError,
    MgnError,
    RetryableError,
)
from orchestrator.journal import Journal
from orchestrator.limiter import Clock, RateLimiter, Sleep
from orchestrator.outcome import Outcome, ServerResult
from orchestrator.preflight import ServerView, parse_server
from orchestrator.reconciler import Reconciler
from orchestrator.retry import RetryPolicy, Stopped, call_with_retries

log = structlog.get_logger(__name__)

Finalize = Callable[[str], Awaitable[dict[str, Any]]]
DescribeOne = Callable[[str], Awaitable[ServerView | None]]


def apply_view(result: ServerResult, view: ServerView | None) -> None:
    """Copy MGN's latest view of a server into its report row."""
    if view is None:
        return
    result.name = view.name or result.name
    result.lifecycle_state = view.lifecycle_state
    result.replication_state = view.replication_state
    result.first_boot = view.first_boot
    result.ec2_instance_id = view.ec2_instance_id


class FinalizePool:
    """Runs FinalizeCutover for a set of servers; hands accepted ones to the reconciler."""

    def __init__(
        self,
        *,
        finalize: Finalize,
        describe_one: DescribeOne,
        limiter: RateLimiter,
        policy: RetryPolicy,
        concurrency: int,
        journal: Journal,
        reconciler: Reconciler,
        results: dict[str, ServerResult],
        run_id: str,
        now_iso: Callable[[], str],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        prior_intent: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self._finalize = finalize
        # Servers an earlier run sent FinalizeCutover to without recording the answer.
        self._prior_intent = set(prior_intent)
        self._tasks: list[asyncio.Task[None]] = []
        self._describe_one = describe_one
        self._limiter = limiter
        self._policy = policy
        self._sem = asyncio.Semaphore(concurrency)
        self._journal = journal
        self._reconciler = reconciler
        self._results = results
        self._run_id = run_id
        self._now_iso = now_iso
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.account_error: AccountError | None = None
        self.journal_error: JournalError | None = None
        self.interrupted = False
        # Per server: its retry loop, and whether a FinalizeCutover of it is on the wire now.
        self._retrying: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._in_flight: set[str] = set()

    def stop(self) -> None:
        """Start nothing new; calls in flight finish, waits for a slot or a retry end now."""
        self.interrupted = True
        self._cancel_waiting()

    def abort(self, err: AccountError) -> None:
        """An account-wide error seen elsewhere (pre-flight, reconciler): stop like on our own."""
        if self.account_error is None:
            self.account_error = err
            self._cancel_waiting()

    def _cancel_waiting(self) -> None:
        # Only loops parked in a limiter slot, a backoff or the semaphore: never a sent call.
        for server_id, retrying in self._retrying.items():
            if server_id not in self._in_flight:
                retrying.cancel()

    def stopping(self) -> bool:
        return self.interrupted or self.account_error is not None

    async def run(self, server_ids: Sequence[str]) -> None:
        """Finalize every server in `server_ids`; returns when each has an outcome."""
        self.submit(server_ids)
        await self.join()

    def submit(self, server_ids: Sequence[str], prior_intent: Iterable[str] = ()) -> None:
        """Start finalizing more servers (the pre-flight hands them over application by
        application); `prior_intent`: those an earlier run sent without a recorded answer."""
        self._prior_intent.update(prior_intent)
        self._tasks.extend(asyncio.ensure_future(self._finalize_one(s)) for s in server_ids)

    async def join(self) -> None:
        """Wait until every submitted server has an outcome."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending)

    async def _finalize_one(self, server_id: str) -> None:
        result = self._results[server_id]
        with bound_contextvars(sourceServerID=server_id, applicationID=result.application_id):
            ambiguous = server_id in self._prior_intent

            async def attempt() -> dict[str, Any]:
                nonlocal ambiguous
                self._in_flight.add(server_id)  # before any await: stop() must not cancel it
                try:
                    self._journal.record_intent(
                        server_id, result.application_id, at=self._now_iso(), run_id=self._run_id
                    )
                    result.attempts += 1
                    return await self._finalize(server_id)
                except RetryableError as err:
                    ambiguous = ambiguous or err.ambiguous
                    if self.stopping():  # stopped while this call was out: no backoff, no retry
                        raise Stopped() from err
                    log.info("finalize_retry", error_code=err.code, attempt=result.attempts)
                    raise
                finally:
                    self._in_flight.discard(server_id)

            try:
                response = await self._with_retries(server_id, attempt)
            except asyncio.CancelledError:
                raise
            except Stopped:
                self._not_attempted(result)
            except ConflictError as err:
                await self._after_conflict(result, err, ambiguous)
            except AccountError as err:
                if self.account_error is None:
                    self.account_error = err
                    log.error("account_error_stop", error_code=err.code, error=str(err))
                    self._cancel_waiting()
                self._failed(result, err.code, str(err), f"account_error: {err.code}")
            except RetryableError as err:
                reason = f"retries_exhausted: {err.code} after {result.attempts} attempts"
                self._failed(result, err.code, err.message, reason)
            except MgnError as err:
                self._failed(result, err.code, err.message, f"{err.code}: {err.message}")
            except JournalError as err:
                # Without a durable intent nothing may be sent: stop the whole pool.
                self.journal_error = self.journal_error or err
                self.interrupted = True
                result.outcome, result.reason = Outcome.FAILED, f"journal_error: {err}"
            except Exception as err:  # one server's bug must not sink the wave
                log.exception("finalize_internal_error")
                self._failed(result, type(err).__name__, str(err), "internal_error")
            else:
                self._accepted(result, parse_server(response) if response else None)

    async def _with_retries(
        self, server_id: str, attempt: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """call_with_retries as a task that stopping may cancel while it waits.

        Raises Stopped when the pool stopped while this server waited, else what the call raises.
        """
        retrying = asyncio.ensure_future(
            call_with_retries(
                attempt,
                policy=self._policy,
                limiter=self._limiter,
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
                should_stop=self.stopping,
                gate=self._sem,
            )
        )
        self._retrying[server_id] = retrying
        try:
            return await retrying
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if retrying.cancelled() and self.stopping() and not (me and me.cancelling()):
                raise Stopped() from None
            raise
        finally:
            del self._retrying[server_id]

    def _accepted(
        self,
        result: ServerResult,
        view: ServerView | None,
        outcome: Outcome = Outcome.FINALIZED,
        reason: str | None = None,
    ) -> None:
        at = self._now_iso()
        self._journal.record_accepted(result.source_server_id, at=at, run_id=self._run_id)
        result.finalized_at = result.finalized_at or at
        result.outcome = outcome
        result.reason = reason
        apply_view(result, view)
        log.info("finalize_accepted", attempts=result.attempts)
        self._reconciler.add(result.source_server_id)

    async def _after_conflict(
        self, result: ServerResult, err: ConflictError, ambiguous: bool
    ) -> None:
        """MGN refused on state: describe the server to learn whether it is in fact done."""
        try:
            view = await call_with_retries(
                lambda: self._describe_one(result.source_server_id),
                policy=self._policy,
                limiter=self._limiter,
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
            )
        except asyncio.CancelledError:
            raise
        except MgnError as describe_err:
            self._failed(result, err.code, err.message, f"conflict: {describe_err}")
            return
        apply_view(result, view)
        state = view.lifecycle_state if view else None
        if state in ("CUTOVER", "CUTTING_OVER"):
            # CUTOVER: finalized already. CUTTING_OVER: a stale read, since MGN just refused on
            # state (its reads lag its writes). Either way never send it again: only poll.
            if ambiguous:  # our own earlier attempt may have gone through
                self._accepted(result, view)
            else:
                why = "finalized outside this run (MGN answered ConflictException)"
                self._accepted(result, view, Outcome.ALREADY_CUTOVER, why)
            return
        self._failed(result, err.code, err.message, f"wrong_state: MGN shows {state}")

    def _failed(self, result: ServerResult, code: str, message: str, reason: str) -> None:
        result.outcome = Outcome.FAILED
        result.reason = reason
        result.error_code = code
        result.error_message = message
        if result.attempts:
            self._journal.record_failed(
                result.source_server_id,
                code=code,
                message=message,
                at=self._now_iso(),
                run_id=self._run_id,
            )
        log.warning("finalize_failed", reason=reason, error_code=code, attempts=result.attempts)

    def _not_attempted(self, result: ServerResult) -> None:
        why = "account error" if self.account_error else "run interrupted"
        result.outcome = Outcome.NOT_ATTEMPTED
        if result.attempts:
            result.reason = f"{why} after {result.attempts} failed attempts; rerun the wave"
        else:
            result.reason = f"{why} before FinalizeCutover was sent"
