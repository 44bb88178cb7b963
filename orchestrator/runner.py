"""One run of a wave: pre-flight -> finalize pool and reconciler side by side -> run record.

The caller holds the wave's lock and the journal. Every decision about a server is the ledger's
(`orchestrator.ledger`); this module only wires the parts together in one TaskGroup and makes
sure that every run that started ends with a record of every server of the wave, whatever
escapes: an account error (4), a journal that cannot be written (5), anything else (1, the
record marked incomplete).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator import collector, rowmemo
from orchestrator.config import Config
from orchestrator.errors import AccountError, ExitCode, MgnError, StateWriteError
from orchestrator.gateway import Gateway
from orchestrator.launcher import Approvals, Launcher, archive_converged, running
from orchestrator.ledger import Ledger
from orchestrator.limiter import Clock, Sleep
from orchestrator.outcome import RunRecord, ServerResult
from orchestrator.plan import Wave
from orchestrator.pool import FinalizePool
from orchestrator.reconciler import Reconciler
from orchestrator.report import prepare_rows
from orchestrator.state import RunJournal
from orchestrator.stop import Stop, Stopped, StopReason
from orchestrator.targets import Targets, by_target, gateway_for, resolved, target_in
from orchestrator.views import JobView

log = structlog.get_logger(__name__)

FINAL_READ_S = 10.0  # at most this long for the last read of unconfirmed servers
# Report rows of servers that are done are rendered every this often, this many at a time.
PREPARE_EVERY_S = 0.25
PREPARE_CHUNK = 50


class _Stamps:
    """The wall-clock time as text, made once per millisecond: a run stamps thousands a
    second (timelines, journal entries), and formatting a datetime each time showed up."""

    ms = -1
    text = ""
    second = -1
    second_text = ""

    @classmethod
    def now(cls) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != cls.ms:
            seconds, milli = divmod(ms, 1000)
            if seconds != cls.second:
                cls.second = seconds
                cls.second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            cls.ms, cls.text = ms, f"{cls.second_text}.{milli:03d}Z"
        return cls.text


def utc_now_iso() -> str:
    """The wall-clock time as ISO 8601 UTC, to the millisecond."""
    return _Stamps.now()


@dataclass
class RunState:
    """What a run knows while it runs: the progress display reads it, signals stop it."""

    wave: str
    dry_run: bool
    stop: Stop = field(default_factory=Stop)
    phase: str = "starting"
    ledger: Ledger | None = None
    reconciler: Reconciler | None = None  # the progress line's countdown reads its deadline
    warnings: list[str] = field(default_factory=list)  # loud ones, for the report

    def interrupt(self) -> None:
        """SIGINT/SIGTERM: nothing new is sent; reads stop; calls on the wire get a grace."""
        self.stop.request(StopReason.SIGNAL, "SIGINT/SIGTERM")


async def run_wave(
    wave: Wave,
    config: Config,
    gateway: Gateway | Targets,
    journal: RunJournal,
    state: RunState,
    *,
    covered: Iterable[str] | None = None,
    not_after: datetime | None = None,
    on_application: Callable[[str, str, str | None], None] | None = None,
    on_approval_awaited: Callable[[str], None] | None = None,
    run_id: str | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    now_iso: Callable[[], str] = utc_now_iso,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunRecord:
    """Run the wave once (or the `covered` applications of it) and return its record.

    The record covers the whole wave: servers outside `covered` keep the outcome of the wave's
    last record. When `not_after` passes, nothing new is sent (the reconciler goes on).
    `on_application(applicationID, status, reason)` hears of each application once it is
    settled. Raises StateWriteError only when the run's start cannot be journaled.
    """
    run_id = run_id or uuid.uuid4().hex
    stop = state.stop
    started_at = now_iso()
    journal.start_run(
        run_id,
        started_at=started_at,
        dry_run=state.dry_run,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    with bound_contextvars(wave=wave.name, run_id=run_id):
        carried: dict[str, ServerResult] = {}
        if covered is not None:
            last = journal.last_run_record()
            if last is not None and not (last.dry_run and not state.dry_run):
                carried = {r.source_server_id: r for r in last.servers}
        ledger = Ledger(
            wave,
            writer=None if state.dry_run else journal,
            run_id=run_id,
            stop=stop,
            now_iso=now_iso,
            entries=journal.entries(),
            covered=covered,
            carried=carried,
            application_gate=config.application_gate,
            read_settle_s=config.read_settle_s,
            on_application=on_application,
            require_approval=config.require_approval,
            where={
                sid: (t.account_id, t.region)
                for t, ids in resolved(config, wave).items()
                for sid in ids
            },
            stop_of=gateway.stop_of,
        )
        state.ledger = ledger
        # cpu_s: this process's CPU seconds so far (here and at run_finished): what the run
        # itself costs, apart from starting and writing the report (benchmarks/accounts.py).
        log.info(
            "run_started",
            servers=len(ledger.in_run()),
            dry_run=state.dry_run,
            cpu_s=round(time.process_time(), 3),
        )
        incomplete = False
        window = asyncio.ensure_future(_close_window(stop, not_after, wall, sleep))
        preparing = asyncio.ensure_future(_prepare_report(ledger, wave.name, started_at, sleep))
        try:
            await _execute(
                wave,
                config,
                gateway,
                ledger,
                state,
                clock,
                sleep,
                approvals=lambda: journal.approvals(run_id),  # this run's alone: never another's
                on_approval_awaited=on_approval_awaited or (lambda app: None),
            )
        except Exception as err:  # a bug must still leave a report of every server
            log.exception("run_internal_error")
            incomplete = True
            ledger.not_checked(f"run ended by an internal error: {type(err).__name__}")
        finally:
            window.cancel()
            preparing.cancel()
            await asyncio.gather(window, preparing, return_exceptions=True)
        state.phase = "report"
        ledger.settle()
        record = _record(wave, config, ledger, state, run_id, started_at, now_iso(), incomplete)
        record.config["journal"] = str(journal.path)  # which MGN's journal: said in the report
        try:
            journal.finish_run(run_id, record)
        except StateWriteError as err:
            log.error("journal_write_failed", error=str(err))
            stop.request(StopReason.LOCAL_STATE, str(err))
            record.exit_code = ExitCode.LOCAL_STATE
            record.stop_reason = StopReason.LOCAL_STATE.value
        log.info(
            "run_finished",
            exit_code=record.exit_code,
            stop_reason=record.stop_reason,
            cpu_s=round(time.process_time(), 3),
        )
        return record


async def _prepare_report(ledger: Ledger, wave: str, started_at: str, sleep: Sleep) -> None:
    """While the run waits on MGN, render the report rows of the servers that are done into
    the row memo (`rowmemo`), a few at a time between the run's own work: the report and the
    journal's record then render only what changed since. Without a memo, nothing."""
    memo = rowmemo.current()
    if memo is None:
        return
    seen: set[str] = set()
    try:
        while len(memo) < memo.max_rows:
            await sleep(PREPARE_EVERY_S)
            rows = ledger.converged_results(seen)
            for index in range(0, len(rows), PREPARE_CHUNK):
                prepare_rows(rows[index : index + PREPARE_CHUNK], wave, started_at)
                await asyncio.sleep(0)  # the sends and polls that are due go first
    except Exception:  # a bug here costs the report's time, never the run: say so, stop
        log.exception("report_prepare_failed")


async def _close_window(
    stop: Stop, not_after: datetime | None, wall: Callable[[], datetime], sleep: Sleep
) -> None:
    """When the cutover window closes, nothing new is sent (calls in flight finish)."""
    if not_after is None:
        return
    await sleep(max(0.0, (not_after - wall()).total_seconds()))
    stop.request(StopReason.WINDOW, f"not_after {not_after.isoformat()} passed")


def _record(
    wave: Wave,
    config: Config,
    ledger: Ledger,
    state: RunState,
    run_id: str,
    started_at: str,
    finished_at: str,
    incomplete: bool,
) -> RunRecord:
    stop = state.stop
    wave_code = ledger.exit_code(covered_only=False)
    run_code = ledger.exit_code(covered_only=True)
    if incomplete:
        wave_code = max(wave_code, ExitCode.NOT_CONVERGED)
        run_code = max(run_code, ExitCode.NOT_CONVERGED)
    subset = ledger.covered is not None
    return RunRecord(
        wave=wave.name,
        dry_run=state.dry_run,
        started_at=started_at,
        finished_at=finished_at,
        exit_code=int(wave_code),
        interrupted=stop.reason is StopReason.SIGNAL,
        config=config.as_report_dict(),
        servers=ledger.results(),
        account_error=stop.account_error(),
        run_id=run_id,
        description=wave.description,
        stop_reason=stop.reason.value if stop.reason else None,
        incomplete=incomplete,
        covered_applications=sorted(ledger.covered) if subset and ledger.covered else None,
        run_exit_code=int(run_code) if subset else None,
        warnings=list(state.warnings),
    )


async def _execute(
    wave: Wave,
    config: Config,
    gateway: Gateway | Targets,
    ledger: Ledger,
    state: RunState,
    clock: Clock,
    sleep: Sleep,
    *,
    approvals: Approvals,
    on_approval_awaited: Callable[[str], None],
) -> None:
    """Pre-flight, (launcher,) pool and reconciler in one TaskGroup; then the last read of
    what is unsure, and archiving."""
    stop = state.stop
    reconciler = Reconciler(
        gateway.describe_cutover,
        poll_interval_s=config.poll_interval_s,
        timeout_s=config.reconcile_timeout_s,
        on_seen=ledger.observed,
        on_expired=ledger.expired,
        stop=stop,
        stop_of=gateway.stop_of,
        clock=clock,
        sleep=sleep,
    )
    state.reconciler = reconciler
    pool = FinalizePool(
        finalize=gateway.client.finalize,
        describe=gateway.describe,
        ledger=ledger,
        writes=gateway.writes,
        reads=gateway.reads,
        concurrency=config.concurrency,
        stop=stop,
        on_waiting=reconciler.add,
        stop_of=gateway.stop_of,
        sleep=sleep,
    )
    night = config.launch and not ledger.dry_run
    # One launcher (its own job-quota scheduler) per (account, region): MGN's quotas are there;
    # an account error stops that (account, region)'s part of the run only.
    launchers = {
        target: Launcher(
            gateway=night_gw,
            ledger=ledger,
            config=config,
            stop=stop if target is None else night_gw.stop,
            submit=pool.submit,
            approvals=approvals,
            on_approval_awaited=on_approval_awaited,
            on_waiting=reconciler.add,
            clock=clock,
            sleep=sleep,
        )
        for target, night_gw in by_target(gateway).items()
    }

    def hand_over(launch: list[str], watch: list[str]) -> None:
        """Give each launcher the servers of its (account, region)."""
        for target, launcher in launchers.items():
            mine = [s for s in launch if target_in(gateway, s) == target]
            watched = [s for s in watch if target_in(gateway, s) == target]
            if mine or watched:
                launcher.add(mine, watched)

    async def feed() -> None:
        state.phase = "preflight"
        servers = ledger.in_run()
        part_wave = wave if len(servers) == len(wave.servers) else _narrow(wave, ledger)
        sent = polled = launched = 0
        try:
            busy: dict[str, str] = {}
            if config.launch:
                for launcher in launchers.values():
                    part = launcher.gateway.stop  # its (account, region)'s part of the stop
                    try:
                        busy.update(launcher.busy(await recent_jobs(launcher.gateway, part)))
                    except AccountError as err:
                        if part is stop:
                            raise
                        part.request(StopReason.ACCOUNT, str(err))  # that target alone
            async for checks in gateway.preflight(part_wave, config, busy):
                work = ledger.checked(checks)
                for server_id in work.poll:
                    reconciler.add(server_id)
                polled += len(work.poll)
                if not ledger.dry_run and not stop.sends_stopped:
                    state.phase = "launch" if night else "finalize"
                    pool.submit(work.send)
                    sent += len(work.send)
                    if night:
                        hand_over(work.launch, work.watch)
                        launched += len(work.launch)
            log.info(
                "preflight_done", finalize=sent, poll=polled, launch=launched, **ledger.tally()
            )
        except Stopped:
            ledger.not_checked(f"pre-flight stopped ({stop.reason}) before this server was read")
        except AccountError as err:
            stop.request(StopReason.ACCOUNT, str(err))
            ledger.not_checked(f"pre-flight did not complete (account error: {err.code})")
        except MgnError as err:  # reads kept failing, or an answer botocore could not parse
            log.error("preflight_failed", error_code=err.code, error=err.message)
            ledger.not_checked(f"pre-flight failed, not sent: {err}")
        finally:
            collector.preflight_done()
            if night:
                for launcher in launchers.values():
                    launcher.close()
            else:
                pool.close()

    async def launch() -> None:
        try:
            await asyncio.gather(*(launcher.run() for launcher in launchers.values()))
        finally:
            pool.close()

    async def finalize() -> None:
        await pool.run()
        state.phase = "reconcile"
        reconciler.close()
        collector.sends_done()

    async with asyncio.TaskGroup() as group:
        group.create_task(feed())
        if night:
            group.create_task(launch())
        group.create_task(finalize())
        if not ledger.dry_run:
            group.create_task(reconciler.run())
        else:
            reconciler.close()
    await _final_read(gateway, ledger, stop)
    if config.archive and not ledger.dry_run:
        state.phase = "archive"
        await archive_converged(lambda sid: gateway_for(gateway, sid), ledger, gateway.stop_of)


async def recent_jobs(gateway: Gateway, stop: Stop) -> list[JobView]:
    """Launch jobs of the last day: the ones still running hold quota and their servers."""
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    jobs: list[JobView] = await stop.guard(
        gateway.reads.call(lambda: gateway.client.describe_jobs(from_date=since))
    )
    return jobs


async def busy_servers(gateway: Gateway | Targets, stop: Stop) -> dict[str, str]:
    """Servers in launch jobs still running, in every (account, region): `plan --launch`."""
    busy: dict[str, str] = {}
    for night_gw in by_target(gateway).values():
        busy.update(running(await recent_jobs(night_gw, stop)))
    return busy


def _narrow(wave: Wave, ledger: Ledger) -> Wave:
    covered = ledger.covered or frozenset()
    return replace(
        wave, applications=tuple(a for a in wave.applications if a.application_id in covered)
    )


async def _final_read(gateway: Gateway | Targets, ledger: Ledger, stop: Stop) -> None:
    """Read the full record of every server MGN has not confirmed, so the report shows MGN's
    last word (a stale read, a late convergence). Skipped when the run halted."""
    unsure = ledger.waiting()
    if not unsure or stop.halted:
        return
    try:
        views = await asyncio.wait_for(gateway.read(unsure), FINAL_READ_S)
    except (MgnError, Stopped, TimeoutError) as err:
        log.warning("final_read_failed", error=str(err))
        return
    except AccountError as err:
        stop.request(StopReason.ACCOUNT, str(err))
        return
    for view in views.values():
        ledger.observed(view)
