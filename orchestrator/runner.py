"""One run of a wave: pre-flight -> finalize pool with the reconciler alongside -> run record.

The caller holds the wave's lock and the journal. Resume rules come from the journal: a server
whose finalize was accepted by an earlier run is only polled, never finalized again; one with an
intent but no result was described by the pre-flight and is finalized only if still CUTTING_OVER.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator.config import Config
from orchestrator.errors import AccountError, MgnError
from orchestrator.gateway import Gateway
from orchestrator.journal import Journal, JournalEntry
from orchestrator.limiter import Clock, Sleep
from orchestrator.outcome import CONVERGED_OUTCOMES, Outcome, RunRecord, ServerResult
from orchestrator.plan import Wave
from orchestrator.pool import FinalizePool, apply_view
from orchestrator.preflight import Check, Decision, ServerView, preflight_stream, read_views
from orchestrator.reconciler import Reconciler

log = structlog.get_logger(__name__)


def utc_now_iso() -> str:
    """The wall-clock time as ISO 8601 UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RunState:
    """What a run knows while it runs; the progress display reads it."""

    wave: str
    dry_run: bool
    results: dict[str, ServerResult] = field(default_factory=dict)
    phase: str = "starting"
    interrupted: bool = False
    account_error: AccountError | None = None
    pool: FinalizePool | None = None

    def stop(self) -> None:
        """SIGINT/SIGTERM: start nothing new; in-flight calls finish."""
        self.interrupted = True
        if self.pool is not None:
            self.pool.stop()

    def stopping(self) -> bool:
        return self.interrupted or self.account_error is not None


def exit_code_for(results: list[ServerResult], state: RunState) -> int:
    """0 every server converged (or would be finalized, in a dry run); 4 account; else 1."""
    if state.account_error is not None:
        return 4
    if state.interrupted:
        return 1
    ok = CONVERGED_OUTCOMES | ({Outcome.WOULD_FINALIZE} if state.dry_run else set())
    return 0 if all(r.outcome in ok for r in results) else 1


def _resume(
    check: Check, entry: JournalEntry | None, result: ServerResult, dry_run: bool
) -> str | None:
    """Decide a server's work from pre-flight + journal: 'finalize', 'poll' or None (settled)."""
    view = check.view
    if entry is not None and (entry.status in ("accepted", "converged") or entry.finalized_at):
        # Finalized by an earlier run of this wave: never again; confirm it by polling.
        result.outcome = Outcome.FINALIZED
        result.finalized_at = entry.finalized_at or entry.intent_at
        result.attempts = entry.attempts
        if view is not None and view.converged:
            result.converged_at = entry.converged_at
            return None
        return None if dry_run else "poll"
    if (
        entry is not None
        and entry.status == "intent"
        and check.decision is Decision.ALREADY_CUTOVER
    ):
        # Our earlier call went through but the run died before recording it.
        result.outcome = Outcome.FINALIZED
        result.finalized_at = entry.intent_at
        result.attempts = entry.attempts
        return None if (view and view.converged) or dry_run else "poll"
    if check.decision is Decision.FINALIZE:
        result.outcome = Outcome.WOULD_FINALIZE if dry_run else Outcome.NOT_ATTEMPTED
        result.attempts = entry.attempts if entry else 0
        return None if dry_run else "finalize"
    if check.decision is Decision.ALREADY_CUTOVER:
        result.outcome = Outcome.ALREADY_CUTOVER
        result.reason = check.reason
        return None if (view and view.converged) or dry_run else "poll"
    result.outcome = Outcome.BLOCKED
    result.reason = check.reason
    return None


@dataclass
class Triage:
    """What the run will do with one part of the wave, from pre-flight + journal."""

    finalize: list[str] = field(default_factory=list)
    poll: list[str] = field(default_factory=list)
    prior_intent: set[str] = field(default_factory=set)


def _triage(
    checks: list[Check],
    entries: dict[str, JournalEntry],
    state: RunState,
    record_converged: Callable[[ServerResult], None],
) -> Triage:
    work = Triage()
    for check in checks:
        result = state.results[check.source_server_id]
        result.reason = None
        apply_view(result, check.view)
        entry = entries.get(check.source_server_id)
        todo = _resume(check, entry, result, state.dry_run)
        if todo == "finalize":
            work.finalize.append(check.source_server_id)
            if entry is not None and entry.attempts > 0:
                # Sent before without a recorded acceptance: it may have gone through.
                work.prior_intent.add(check.source_server_id)
        elif todo == "poll":
            work.poll.append(check.source_server_id)
        elif result.outcome is Outcome.FINALIZED and entry and entry.status != "converged":
            record_converged(result)
    return work


async def run_wave(
    wave: Wave,
    config: Config,
    gateway: Gateway,
    journal: Journal,
    state: RunState,
    *,
    run_id: str | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    now_iso: Callable[[], str] = utc_now_iso,
) -> RunRecord:
    """Run the wave once and return its record.

    The pre-flight streams its verdicts application by application; each wholly ready
    application goes to the finalize pool at once, while later ones are still being read.
    Raises JournalError when the journal cannot record an intent.
    """
    run_id = run_id or uuid.uuid4().hex
    started_at = now_iso()
    journal.start_run(
        run_id,
        started_at=started_at,
        dry_run=state.dry_run,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    with bound_contextvars(wave=wave.name, run_id=run_id):
        log.info("run_started", servers=len(wave.servers), dry_run=state.dry_run)
        for server in wave.servers:
            state.results[server.source_server_id] = ServerResult(
                server.source_server_id, server.application_id, reason="not checked"
            )
        entries = journal.entries()
        execution = None
        if not state.dry_run:
            execution = Execution(config, gateway, journal, state, run_id, clock, sleep, now_iso)

        def record_converged(result: ServerResult) -> None:
            result.converged_at = result.converged_at or now_iso()
            journal.record_converged(
                result.source_server_id,
                at=result.converged_at,
                run_id=run_id,
                application_id=result.application_id,
            )

        state.phase = "preflight"
        not_checked = "pre-flight did not complete (account error)"
        tally = Triage()
        stream = preflight_stream(wave, config, gateway.describe, gateway.instance_status)
        try:
            async for checks in stream:
                work = _triage(checks, entries, state, record_converged)
                tally.finalize += work.finalize
                tally.poll += work.poll
                if execution is not None and not state.stopping():
                    execution.submit(work)
        except AccountError as err:
            state.account_error = err
            if execution is not None:
                execution.pool.abort(err)
        except MgnError as err:  # reads kept failing, or an answer botocore could not parse
            log.error("preflight_failed", error_code=err.code, error=err.message)
            not_checked = f"pre-flight failed, not sent: {err}"
        log.info(
            "preflight_done",
            finalize=len(tally.finalize),
            poll=len(tally.poll),
            blocked=sum(r.outcome is Outcome.BLOCKED for r in state.results.values()),
        )
        if execution is not None:
            await execution.finish()
        state.phase = "report"
        for result in state.results.values():
            if result.reason == "not checked":
                result.reason = not_checked
            elif result.outcome is Outcome.NOT_ATTEMPTED and result.reason is None:
                result.reason = "run stopped before FinalizeCutover was sent; rerun the wave"
        results = sorted(
            state.results.values(), key=lambda r: (r.application_id, r.source_server_id)
        )
        record = RunRecord(
            wave=wave.name,
            dry_run=state.dry_run,
            started_at=started_at,
            finished_at=now_iso(),
            exit_code=exit_code_for(results, state),
            interrupted=state.interrupted,
            config=config.as_report_dict(),
            servers=results,
            account_error=str(state.account_error) if state.account_error else None,
        )
        journal.finish_run(run_id, record)
        log.info("run_finished", exit_code=record.exit_code, interrupted=state.interrupted)
        return record


class Execution:
    """The finalize pool and the reconciler beside it, fed as the pre-flight decides."""

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        journal: Journal,
        state: RunState,
        run_id: str,
        clock: Clock,
        sleep: Sleep,
        now_iso: Callable[[], str],
    ) -> None:
        self.config, self.gateway, self.journal, self.state = config, gateway, journal, state
        self.run_id, self.now_iso = run_id, now_iso
        self.reconciler = Reconciler(
            gateway.describe_cutover,
            poll_interval_s=config.poll_interval_s,
            timeout_s=config.reconcile_timeout_s,
            on_converged=self._converged,
            on_timed_out=self._timed_out,
            clock=clock,
            sleep=sleep,
        )
        self.pool = FinalizePool(
            finalize=gateway.client.finalize,
            describe_one=gateway.describe_one,
            limiter=gateway.finalize_limiter,
            policy=gateway.policy,
            concurrency=config.concurrency,
            journal=journal,
            reconciler=self.reconciler,
            results=state.results,
            run_id=run_id,
            now_iso=now_iso,
            clock=clock,
            sleep=sleep,
            rng=gateway.rng,
        )
        state.pool = self.pool
        if state.interrupted:
            self.pool.stop()
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            await self.reconciler.run(
                should_stop=lambda: self.state.stopping() or self.pool.stopping()
            )
        except AccountError as err:  # account-wide: stop the pool too
            self.pool.abort(err)

    def submit(self, work: Triage) -> None:
        """Hand over one part of the wave: finalize some servers, poll others."""
        self.state.phase = "finalize"
        for server_id in work.poll:
            self.reconciler.add(server_id)
        self.pool.submit(work.finalize, work.prior_intent)

    async def finish(self) -> None:
        """Wait for the pool, then for the reconciler; settle whatever is left unconfirmed.

        Raises JournalError when the pool stopped because the journal failed.
        """
        pool, reconciler = self.pool, self.reconciler
        try:
            await pool.join()
            self.state.phase = "reconcile"
            reconciler.close()
            await self._watcher
        finally:
            self.state.account_error = self.state.account_error or pool.account_error
            if not self._watcher.done():
                self._watcher.cancel()
                await asyncio.gather(self._watcher, return_exceptions=True)
        if pool.journal_error is not None:
            raise pool.journal_error
        for server_id in reconciler.expire_all():
            result = self.state.results[server_id]
            result.outcome = Outcome.TIMED_OUT
            result.reason = (
                "stopped before MGN confirmed the finalize; rerun to confirm (it only polls)"
            )
        await _refresh_unconfirmed(
            self.gateway, self.state.results, self.config.reconcile_timeout_s
        )

    def _converged(self, view: ServerView) -> None:
        result = self.state.results[view.source_server_id]
        apply_view(result, view)
        result.converged_at = self.now_iso()
        self.journal.record_converged(
            view.source_server_id,
            at=result.converged_at,
            run_id=self.run_id,
            application_id=result.application_id,
        )
        log.info(
            "server_converged",
            sourceServerID=view.source_server_id,
            applicationID=result.application_id,
        )

    def _timed_out(self, server_id: str, view: ServerView | None) -> None:
        result = self.state.results[server_id]
        apply_view(result, view)
        result.outcome = Outcome.TIMED_OUT
        result.reason = None  # written once MGN's full record is read back
        log.warning(
            "server_timed_out", sourceServerID=server_id, applicationID=result.application_id
        )


async def _refresh_unconfirmed(
    gateway: Gateway, results: dict[str, ServerResult], timeout_s: float
) -> None:
    """Read the full record of every timed-out server, so the report shows MGN's last word."""
    late = [r for r in results.values() if r.outcome is Outcome.TIMED_OUT]
    if not late:
        return
    try:
        views = await read_views([r.source_server_id for r in late], gateway.describe)
    except MgnError as err:
        log.warning("final_read_failed", error_code=err.code, error=err.message)
        views = {}
    for result in late:
        apply_view(result, views.get(result.source_server_id))
        if result.reason is None:
            result.reason = (
                f"finalize accepted; MGN still shows {result.lifecycle_state}/"
                f"{result.replication_state} after {timeout_s:g}s"
            )
