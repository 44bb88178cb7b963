"""The night before the finalize (`run --launch`): StartCutover within MGN's job quotas, watch
the launch jobs, verify each server, wait for approvals, revert what failed.

Like the pool and the reconciler, the launcher only reports what MGN answered and showed; the
ledger decides (launched, verified, failed, held, reverted) and journals each step. One loop,
one tick every `poll_interval_s` (sooner when a job or an approval may have freed something):

    schedule   StartCutover for queued applications while the quotas allow: at most 200 servers
               per job, 200 servers across active jobs and 20 active jobs (per account and
               region); an application goes in one job where it fits. A quota refusal is waited
               out; an ambiguous answer (dropped, 5xx, timeout, 409) is resolved from
               DescribeJobs and each server's lastCutover before anything is sent again.
    watch      DescribeJobs for the active jobs and DescribeSourceServers (200 per call) for the
               servers launched: launch status, first boot, post-launch actions, optionally EC2
               status checks, within launch_timeout_s. A verified application goes to the
               finalize pool at once (no wave-wide barrier), or waits for `approve`.
    revert     with on_failure=revert, an application that failed: ChangeServerLifeCycleState to
               READY_FOR_CUTOVER once its jobs ended, then TerminateTargetInstances.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.config import Config
from orchestrator.errors import (
    AccountError,
    ConflictError,
    MgnError,
    RequestRejectedError,
    RetryableError,
    StateWriteError,
    ThrottledError,
)
from orchestrator.gateway import Gateway
from orchestrator.ledger import Ledger
from orchestrator.limiter import Clock, Sleep
from orchestrator.mgn import chunks
from orchestrator.stop import Stop, Stopped, StopReason, first_of
from orchestrator.views import CUTTING_OVER, SUCCEEDED, JobView, LaunchView, ServerView

log = structlog.get_logger(__name__)

MAX_SERVERS_PER_JOB = 200
MAX_SERVERS_IN_ACTIVE_JOBS = 200
MAX_ACTIVE_JOBS = 20
MAX_JOB_IDS_PER_CALL = 100

Approvals = Callable[[], dict[str, tuple[str, str]]]
_DOWN = frozenset({"stopped", "terminated", "stopping", "shutting-down"})


@dataclass
class _Quota:
    """MGN's job quotas as this run sees them: the active jobs and their servers."""

    active: dict[str, set[str]] = field(default_factory=dict)

    def free_servers(self) -> int:
        busy = sum(len(s) for s in self.active.values())
        return max(0, MAX_SERVERS_IN_ACTIVE_JOBS - busy)

    def free_jobs(self) -> int:
        return max(0, MAX_ACTIVE_JOBS - len(self.active))


@dataclass(frozen=True)
class Verdict:
    """What MGN shows of one launched server: verified, failed (why), or still going."""

    verified: bool = False
    failed: str | None = None
    notes: tuple[tuple[str, str | None], ...] = ()


def judge(launch: LaunchView | None, view: ServerView | None, *, job_done: bool = True) -> Verdict:
    """The verdict on one launched server from its job's report and its source server record.

    Verified: launch LAUNCHED (or, with no job report, an instance), first boot SUCCEEDED,
    every post-launch action marked must-succeed SUCCESS, and the job COMPLETED (`job_done`): a
    job lists an action only once it has started, so until the job ends an action not yet
    listed may still be one that must succeed. Failed: launch FAILED, first boot STOPPED, a
    must-succeed action FAILED, or the server left CUTTING_OVER some other way.
    """
    notes: list[tuple[str, str | None]] = []
    instance = (launch.ec2_instance_id if launch else None) or (
        view.ec2_instance_id if view else None
    )
    launched = (launch is not None and launch.launch_status == "LAUNCHED") or (
        launch is None and instance is not None
    )
    if launch is not None and launch.launch_status in ("FAILED", "TERMINATED"):
        return Verdict(failed=f"launch_failed: MGN's launch status is {launch.launch_status}")
    if launched:
        notes.append(("launched", instance))
    first_boot = view.first_boot if view else None
    if first_boot == "STOPPED":
        return Verdict(failed="first_boot: STOPPED", notes=tuple(notes))
    if view is not None and view.lifecycle_state not in (CUTTING_OVER, None):
        return Verdict(failed=f"wrong_state: MGN shows {view.lifecycle_state} after the launch")
    if first_boot == SUCCEEDED:
        notes.append(("first_boot", SUCCEEDED))
    pending_actions = False
    for action in launch.actions if launch else ():
        if action.status == "FAILED":
            why = action.failure_reason or "no reason given"
            if action.must_succeed:
                return Verdict(
                    failed=f"post_launch_action: {action.name} FAILED ({why})", notes=tuple(notes)
                )
            notes.append(("post_launch_action", f"{action.name} FAILED, not required ({why})"))
        elif action.status != "SUCCESS" and action.must_succeed:
            pending_actions = True
        elif action.status == "SUCCESS":
            notes.append(("post_launch_action", f"{action.name} SUCCESS"))
    done = launched and first_boot == SUCCEEDED and not pending_actions and job_done
    return Verdict(verified=done, notes=tuple(notes))


def running(jobs: Sequence[JobView]) -> dict[str, str]:
    """The servers of the jobs still running, with each one's job ID."""
    return {p.source_server_id: job.job_id for job in jobs if job.active for p in job.servers}


class Launcher:
    """Launches, watches and verifies; hands each verified (approved) application to `submit`."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        ledger: Ledger,
        config: Config,
        stop: Stop,
        submit: Callable[[list[str]], None],
        approvals: Approvals,
        on_approval_awaited: Callable[[str], None] = lambda app: None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gw = self.gateway = gateway
        self._ledger = ledger
        self._config = config
        self._stop = stop
        self._submit = submit
        self._approvals = approvals
        self._on_approval_awaited = on_approval_awaited
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._queue: list[list[str]] = []  # applications waiting for StartCutover, plan order
        self._quota = _Quota()
        self._closed = False
        self._wake = asyncio.Event()
        self._awaiting_since: dict[str, float] = {}
        self._reverting: set[str] = set()  # applications whose revert is done or underway
        self._refused_at: float | None = None  # when MGN last refused a job on a quota
        self._max_batch = MAX_SERVERS_PER_JOB  # smaller once MGN shows a lower quota
        self._failed_at: dict[str, float] = {}  # application -> when its revert was due

    def add(self, launch: Sequence[str], watch: Sequence[str]) -> None:
        """Queue servers to launch (whole applications) and servers already launched."""
        by_app: dict[str, list[str]] = {}
        for sid in launch:
            by_app.setdefault(self._ledger.application_of(sid), []).append(sid)
        self._queue.extend(by_app.values())
        self._wake.set()

    def busy(self, jobs: Sequence[JobView]) -> dict[str, str]:
        """Servers in jobs still running (found before the first launch): they count against
        the quotas and are not launched."""
        for job in jobs:
            if job.active:
                self._quota.active[job.job_id] = {p.source_server_id for p in job.servers}
        return running(jobs)

    def close(self) -> None:
        """Nothing more will be added: end once everything added is settled."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Launch, watch, verify until done, or the run stops sending."""
        while not self._stop.sends_stopped:
            try:
                await self._schedule()
                await self._watch()
                self._tend_approvals()
                await self._revert_failed()
            except Stopped:
                return
            except AccountError as err:
                self._stop.request(StopReason.ACCOUNT, str(err))
                return
            except StateWriteError:
                return  # the ledger has stopped the run
            if self._closed and self._idle():
                return
            await self._nap(self._config.poll_interval_s)

    def _idle(self) -> bool:
        return (
            not self._queue
            and not self._ledger.watched()
            and not self._ledger.awaiting_approval()
            and not self._pending_reverts()
        )

    async def _nap(self, delay_s: float) -> None:
        self._wake.clear()
        await first_of(self._sleep(delay_s), self._wake.wait(), self._stop.wait_sends_stopped())

    # -- schedule ------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        if self._refused_at is not None:
            # MGN refused on a quota we cannot see whole: wait for a job to end, or a while.
            if self._clock() - self._refused_at < 4 * self._config.poll_interval_s:
                return
            self._refused_at = None
        while self._queue and not self._stop.sends_stopped and self._refused_at is None:
            batch = self._next_batch()
            if not batch:
                return  # wait for a job to end
            await self._start(batch)

    def _next_batch(self) -> list[str]:
        """Whole applications, in plan order, for one job: MGN frees a job's slots only when
        its last server is done, so jobs stay small (one application) unless the 20-job quota
        would leave server slots idle; then applications share a job, up to the free slots."""
        free_jobs = self._quota.free_jobs()
        if free_jobs == 0:
            return []
        room = min(self._max_batch, self._quota.free_servers())
        target = -(-room // free_jobs)  # the slots each free job must carry to fill them all
        batch: list[str] = []
        while self._queue and len(batch) + len(self._queue[0]) <= room:
            batch += self._queue.pop(0)
            if len(batch) >= target:
                break
        oversized = bool(self._queue) and len(self._queue[0]) > self._max_batch
        if not batch and oversized and room == self._max_batch:
            # Larger than a job can hold (a plan beyond MGN's 200 per application): split it.
            head = self._queue[0]
            batch, self._queue[0] = head[:room], head[room:]
        return batch

    async def _start(self, batch: list[str]) -> None:
        ledger = self._ledger
        ledger.launch_started(batch, self._clock())
        sent_at = self._wall()
        try:
            await self._stop.guard(self._gw.reads.limiter.acquire())
            job = await self._stop.guard(self._gw.client.start_cutover(batch))
        except asyncio.CancelledError:
            raise
        except Stopped:
            await self._resolve(batch, sent_at, "stopped while StartCutover was out")
            raise
        except ThrottledError as err:
            self._gw.reads.limiter.on_throttle()
            self._requeue(batch, f"throttled ({err.code}); waited out")
            self._refused_at = self._clock()
        except RequestRejectedError as err:
            if err.code == "ServiceQuotaExceededException":
                self._requeue(batch, "job quota reached; waiting for a launch job to end")
                self._refused_at = self._clock()
                if not self._quota.active:
                    # Nothing of ours holds the quota: MGN's is lower than we assumed (or
                    # others use it). Send smaller jobs from now on, at once.
                    self._max_batch = max(1, len(batch) // 2)
                    self._refused_at = None
            else:
                ledger.launch_refused(batch, err)
        except (RetryableError, ConflictError) as err:
            log.warning("start_cutover_unclear", error_code=err.code, servers=len(batch))
            await self._resolve(batch, sent_at, f"{err.code} on StartCutover")
        except MgnError as err:
            ledger.launch_refused(batch, err)
        else:
            job_id = job.job_id if job is not None else None
            if job_id is None:
                await self._resolve(batch, sent_at, "StartCutover answered without a job")
                return
            self._accepted(batch, job_id)

    def _accepted(self, batch: Sequence[str], job_id: str) -> None:
        self._ledger.launch_accepted(batch, job_id)
        self._quota.active.setdefault(job_id, set()).update(batch)
        log.info("launch_job_started", jobID=job_id, servers=len(batch))

    def _requeue(self, batch: list[str], why: str) -> None:
        self._ledger.launch_deferred(batch, why)
        by_app: dict[str, list[str]] = {}
        for sid in batch:
            by_app.setdefault(self._ledger.application_of(sid), []).append(sid)
        self._queue[:0] = list(by_app.values())
        log.info("launch_deferred", servers=len(batch), reason=why)

    async def _resolve(self, batch: list[str], sent_at: datetime, why: str) -> None:
        """An answer we cannot trust: find out from MGN which servers did join a launch job
        before anything is sent again. Never launches a server twice."""
        try:
            jobs = await self._stop.guard(
                self._gw.reads.call(
                    lambda: self._gw.client.describe_jobs(
                        from_date=_iso(sent_at - timedelta(minutes=5))
                    )
                )
            )
            views = await self._gw.read(batch)
        except (Stopped, MgnError) as err:
            log.warning("start_cutover_unresolved", error=str(err), servers=len(batch))
            return  # they stay LAUNCHING: reported unconfirmed, a rerun checks MGN first
        found: dict[str, str] = {}
        for job in jobs:
            for part in job.servers:
                if part.source_server_id in batch:
                    found[part.source_server_id] = job.job_id
        for sid in batch:
            view = views.get(sid)
            launched = view is not None and view.lifecycle_state == CUTTING_OVER
            if sid not in found and launched and view is not None and view.last_cutover_job_id:
                found[sid] = view.last_cutover_job_id
        for job_id in sorted(set(found.values())):
            self._accepted([s for s in batch if found.get(s) == job_id], job_id)
        rest = [s for s in batch if s not in found]
        if rest:
            self._requeue(rest, f"{why}; MGN shows no launch job for them: queued again")

    # -- watch ---------------------------------------------------------------------------------

    async def _watch(self) -> None:
        watched = self._ledger.watched()
        job_ids = sorted({j for _, j, _ in watched if j} | set(self._quota.active))
        jobs: dict[str, JobView] = {}
        for batch in chunks(job_ids, MAX_JOB_IDS_PER_CALL):
            for job in await self._stop.guard(
                self._gw.reads.call(functools.partial(self._gw.client.describe_jobs, batch))
            ):
                jobs[job.job_id] = job
        for job in jobs.values():  # an earlier run's job still running holds quota too
            if job.active and job.job_id not in self._quota.active:
                self._quota.active[job.job_id] = {p.source_server_id for p in job.servers}
        for active_id in list(self._quota.active):
            seen = jobs.get(active_id)
            if seen is not None and not seen.active:
                del self._quota.active[active_id]
                self._refused_at = None  # a slot freed: try again
                self._wake.set()
        if not watched:
            return
        views = await self._gw.read([sid for sid, _, _ in watched])
        now = self._clock()
        verified: list[tuple[str, ServerView | None]] = []
        for sid, in_job, _ in watched:
            known = jobs.get(in_job) if in_job else None
            parts = known.servers if known else ()
            launch = next((p for p in parts if p.source_server_id == sid), None)
            # A job we cannot see (none recorded) cannot hold back actions we know nothing of.
            job_done = known is None if in_job is None else known is not None and not known.active
            verdict = judge(launch, views.get(sid), job_done=job_done)
            for event, detail in verdict.notes:
                self._ledger.note(sid, event, detail)
            since = self._ledger.watching_since(sid, now)
            if verdict.failed is not None:
                self._ledger.launch_failed(sid, verdict.failed)
            elif verdict.verified:
                verified.append((sid, views.get(sid)))
            elif now - since > self._config.launch_timeout_s:
                shown = _shown(launch, views.get(sid))
                why = f"launch_timeout: not verified within {self._config.launch_timeout_s:g}s"
                self._ledger.launch_failed(sid, f"{why} ({shown})")
        if self._config.verify_instances and verified:
            verified = await self._check_instances(verified)
        for sid, view in verified:
            ready = self._ledger.verified(sid, view)
            if ready:
                log.info("application_verified", servers=len(ready))
                self._submit(ready)

    async def _check_instances(
        self, verified: list[tuple[str, ServerView | None]]
    ) -> list[tuple[str, ServerView | None]]:
        """Keep the servers whose instance runs and passes both EC2 status checks; fail the
        others whose instance EC2 reports impaired or stopped (still initializing: wait)."""
        ids = [v.ec2_instance_id for _, v in verified if v is not None and v.ec2_instance_id]
        status: dict[str, dict[str, str]] = {}
        for batch in chunks(ids, 100):
            status.update(await self._gw.instance_status(batch))
        keep = []
        for sid, view in verified:
            iid = view.ec2_instance_id if view else None
            st = status.get(iid or "")
            if st is None:
                continue  # not reported yet: the timeout decides
            if (st["state"], st["system"], st["instance"]) == ("running", "ok", "ok"):
                keep.append((sid, view))
            elif st["state"] in _DOWN or "impaired" in (st["system"], st["instance"]):
                self._ledger.launch_failed(
                    sid,
                    f"instance_unhealthy: {iid} state={st['state']} "
                    f"system_status={st['system']} instance_status={st['instance']}",
                )
        return keep

    # -- approvals -----------------------------------------------------------------------------

    def _tend_approvals(self) -> None:
        waiting = self._ledger.awaiting_approval()
        if not waiting:
            return
        now = self._clock()
        given = self._approvals()
        for app in waiting:
            if app not in self._awaiting_since:
                self._awaiting_since[app] = now
                self._on_approval_awaited(app)
            if app in given:
                by, at = given[app]
                ready = self._ledger.approved(app, by, at)
                log.info("application_approved", applicationID=app, by=by)
                self._submit(ready)
            elif now - self._awaiting_since[app] > self._config.approve_timeout_s:
                self._ledger.approval_expired(app, self._config.approve_timeout_s)

    # -- revert --------------------------------------------------------------------------------

    def _pending_reverts(self) -> list[str]:
        if self._config.on_failure != "revert":
            return []
        return [a for a in self._ledger.failed_applications() if a not in self._reverting]

    async def _revert_failed(self) -> None:
        now = self._clock()
        for app in self._pending_reverts():
            servers = self._ledger.to_revert(app)
            in_jobs = {s for ids in self._quota.active.values() for s in ids}
            failed_at = self._failed_at.setdefault(app, now)
            waited_out = now - failed_at > self._config.launch_timeout_s
            if any(s in in_jobs for s in servers) and not waited_out:
                continue  # MGN refuses a revert while a launch job runs: wait for it (bounded)
            self._reverting.add(app)
            await self._revert(servers)

    async def _revert(self, servers: list[str]) -> None:
        reverted: list[str] = []
        for sid in servers:
            self._ledger.revert_started(sid)
            try:
                await self._stop.guard(
                    self._gw.reads.call(functools.partial(self._gw.client.revert_to_ready, sid))
                )
            except (ConflictError, RequestRejectedError, RetryableError) as err:
                self._ledger.revert_failed(sid, err)
            else:
                reverted.append(sid)
        detail = "READY_FOR_CUTOVER"
        for batch in chunks(reverted, MAX_SERVERS_PER_JOB):
            try:
                await self._stop.guard(
                    self._gw.reads.call(
                        functools.partial(self._gw.client.terminate_instances, batch)
                    )
                )
                done = f"{detail}; its launched instance terminated"
            except (ConflictError, RequestRejectedError, RetryableError) as err:
                done = f"{detail}; TerminateTargetInstances refused: {err}"
            for sid in batch:
                self._ledger.reverted(sid, done)


async def archive_converged(
    gateway_of: Callable[[str], Gateway], ledger: Ledger, stop_of: Callable[[str], Stop]
) -> None:
    """`--archive`: MarkAsArchived each server MGN shows CUTOVER + DISCONNECTED (through the
    gateway of its account and region), unless the stop that governs it (the run's, or its
    target's part) has stopped sending; an account error stops that part only."""
    for sid in ledger.to_archive():
        gateway, stop = gateway_of(sid), stop_of(sid)
        if stop.sends_stopped:
            continue
        try:
            ledger.archive_started(sid)
        except StateWriteError:
            return
        try:
            await stop.guard(gateway.reads.call(functools.partial(gateway.client.archive, sid)))
        except Stopped:
            continue
        except AccountError as err:
            stop.request(StopReason.ACCOUNT, str(err))
        except MgnError as err:
            ledger.archive_failed(sid, err)
        else:
            ledger.archived(sid)


def _shown(launch: LaunchView | None, view: ServerView | None) -> str:
    status = launch.launch_status if launch else "no job report"
    boot = view.first_boot if view else "unknown"
    return f"launch {status}, first boot {boot}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
