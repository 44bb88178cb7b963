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
    JournalError,
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
from orchestrator.views import (
    CLOCK_SKEW_S,
    CUTOVER,
    CUTTING_OVER,
    SUCCEEDED,
    JobView,
    LaunchView,
    ServerView,
    iso_time_s,
)

log = structlog.get_logger(__name__)

MAX_SERVERS_PER_JOB = 200
MAX_SERVERS_IN_ACTIVE_JOBS = 200
MAX_ACTIVE_JOBS = 20
MAX_JOB_IDS_PER_CALL = 100
# Consecutive failed reads of the approvals before the run stops (exit 5): one tick each.
APPROVAL_READ_FAILURES = 3

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
    """What MGN shows of one launched server: verified, failed (why), cut over, or still going."""

    verified: bool = False
    failed: str | None = None
    notes: tuple[tuple[str, str | None], ...] = ()
    cutover: bool = False  # MGN shows CUTOVER: an earlier finalize went through


def shows_launch(view: ServerView | None, job_id: str | None) -> bool:
    """Whether a read of the server shows this launch (CUTTING_OVER, in this job as far as it
    says): only then are its first boot and instance this launch's. A read that still shows
    READY_FOR_CUTOVER after an accepted StartCutover is lag, not news."""
    if view is None or view.lifecycle_state != CUTTING_OVER:
        return False
    return job_id is None or view.last_cutover_job_id in (None, job_id)


def judge(
    launch: LaunchView | None,
    view: ServerView | None,
    *,
    job: JobView | None = None,
    job_id: str | None = None,
    job_done: bool = True,
) -> Verdict:
    """The verdict on one launched server from its job's report and its source server record.

    Verified: launch LAUNCHED (or, with no job report, an instance), first boot SUCCEEDED,
    every post-launch action marked must-succeed SUCCESS, and the job COMPLETED (`job_done`): a
    job lists an action only once it has started, so until the job ends an action not yet
    listed may still be one that must succeed. Failed only on MGN's own word: launch FAILED or
    TERMINATED, a job (`job`, as DescribeJobs shows it) that ended without launching it, first
    boot STOPPED, a must-succeed action FAILED. A read that does not show this launch yet
    (READY_FOR_CUTOVER while the job runs or lists it launched) is lag: still going, and
    launch_timeout_s decides. CUTOVER is convergence (an earlier run's finalize), never failure.
    """
    notes: list[tuple[str, str | None]] = []
    if view is not None and view.lifecycle_state == CUTOVER:
        return Verdict(cutover=True)
    status = launch.launch_status if launch is not None else None
    if status in ("FAILED", "TERMINATED"):
        return Verdict(failed=f"launch_failed: MGN's launch status is {status}")
    if job is not None and not job.active and status != "LAUNCHED":
        return Verdict(
            failed=f"launch_failed: job {job.job_id} ended without launching it "
            f"(launch status {status or 'not listed'})"
        )
    current = view if shows_launch(view, job_id) else None
    instance = (launch.ec2_instance_id if launch else None) or (
        current.ec2_instance_id if current else None
    )
    launched = status == "LAUNCHED" or (launch is None and instance is not None)
    if launched:
        notes.append(("launched", instance))
    first_boot = current.first_boot if current else None
    if first_boot == "STOPPED":
        return Verdict(failed="first_boot: STOPPED", notes=tuple(notes))
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
        on_waiting: Callable[[str], None] = lambda server_id: None,
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
        self._on_waiting = on_waiting  # a server to poll until MGN shows DISCONNECTED
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
        self._older_jobs: set[str] = set()  # jobs that existed before this run launched
        self._mine: set[str] = set()  # the servers of this launcher's (account, region)
        self._retry_at: float | None = None  # StartCutover backs off until then
        self._unclear_attempts = 0  # StartCutover answers in a row that were unclear
        self._reads_failing_since: float | None = None  # watch reads failing since then
        self._approval_read_failures = 0

    def add(self, launch: Sequence[str], watch: Sequence[str]) -> None:
        """Queue servers to launch (whole applications) and servers already launched."""
        by_app: dict[str, list[str]] = {}
        for sid in launch:
            by_app.setdefault(self._ledger.application_of(sid), []).append(sid)
        self._queue.extend(by_app.values())
        self._mine.update(launch)
        self._mine.update(watch)
        self._wake.set()

    def busy(self, jobs: Sequence[JobView]) -> dict[str, str]:
        """Servers in jobs still running (found before the first launch): they count against
        the quotas and are not launched. Every job seen here is older than any launch of this
        run: none is ever taken for one (`_resolve`)."""
        self._older_jobs.update(job.job_id for job in jobs)
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
                if not await self._watch_or_give_up():
                    return
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
            await self._nap(self._next_nap_s())

    def _next_nap_s(self) -> float:
        delay = self._config.poll_interval_s
        if self._retry_at is not None and self._queue:
            delay = min(delay, max(0.0, self._retry_at - self._clock()))
        return delay

    async def _watch_or_give_up(self) -> bool:
        """One watch tick. Reads that fail after their retries skip the tick (the servers are
        judged on the next good read, never on a failed one); failing for longer than
        `server_deadline_s` ends this (account, region)'s night, each server said why."""
        try:
            await self._watch()
        except (RetryableError, ConflictError, RequestRejectedError) as err:
            now = self._clock()
            if self._reads_failing_since is None:
                self._reads_failing_since = now
            failing_s = now - self._reads_failing_since
            if failing_s <= self._config.server_deadline_s:
                log.warning("launch_watch_read_failed", error_code=err.code, error=err.message)
                return True
            why = (
                f"MGN's reads kept failing for {failing_s:.0f}s ({err.code}): this account and "
                "region's launches were left unwatched; rerun the wave (it watches, never "
                "launches again)"
            )
            log.error("launch_watch_abandoned", error_code=err.code, error=err.message)
            self._ledger.launch_abandoned(sorted(self._mine), why)
            return False
        self._reads_failing_since = None
        return True

    def _idle(self) -> bool:
        return (
            not self._queue
            and not self._watched()
            and not self._awaiting()
            and not self._pending_reverts()
        )

    def _watched(self) -> list[tuple[str, str | None, float | None]]:
        return [w for w in self._ledger.watched() if w[0] in self._mine]

    def _awaiting(self) -> list[str]:
        mine = {self._ledger.application_of(s) for s in self._mine}
        return [a for a in self._ledger.awaiting_approval() if a in mine]

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
        self._expire_queued()
        if self._retry_at is not None:
            if self._clock() < self._retry_at:
                return  # backing off after an unclear StartCutover
            self._retry_at = None
        while self._queue and not self._stop.sends_stopped and self._refused_at is None:
            if self._retry_at is not None:
                return
            batch = self._next_batch()
            if not batch:
                return  # wait for a job to end
            await self._start(batch)

    def _expire_queued(self) -> None:
        """launch_timeout_s runs from a server's first StartCutover: an application re-queued
        (quota, throttling, unclear answers) for longer than that is not launched."""
        now, limit = self._clock(), self._config.launch_timeout_s
        keep: list[list[str]] = []
        for app in self._queue:
            first = [t for t in (self._ledger.first_launch_at(s) for s in app) if t is not None]
            if first and now - min(first) > limit:
                why = f"launch_timeout: not launched within {limit:g}s of its first StartCutover"
                self._ledger.launch_expired(app, why)
            else:
                keep.append(app)
        self._queue = keep

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
        sent_at = self._wall()  # before the intent: a launch job of this attempt is newer
        ledger.launch_started(batch, self._clock())
        try:
            await self._stop.guard(self._gw.reads.limiter.acquire())
            job = await self._stop.guard(self._gw.client.start_cutover(batch))
        except asyncio.CancelledError:
            raise
        except Stopped:
            await self._resolve(batch, sent_at, "stopped while StartCutover was out", None)
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
        except AccountError as err:
            # Refused before MGN did anything (403, uninitialized): not a possible launch.
            self._requeue(batch, f"{err.code}: MGN refused StartCutover before launching")
            raise
        except (RetryableError, ConflictError) as err:
            log.warning("start_cutover_unclear", error_code=err.code, servers=len(batch))
            await self._resolve(batch, sent_at, f"{err.code} on StartCutover", err)
        except MgnError as err:
            ledger.launch_refused(batch, err)
        else:
            job_id = job.job_id if job is not None else None
            if job_id is None:
                await self._resolve(batch, sent_at, "StartCutover answered without a job", None)
                return
            self._unclear_attempts = 0
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

    async def _resolve(
        self, batch: list[str], sent_at: datetime, why: str, err: MgnError | None
    ) -> None:
        """An answer we cannot trust: find out from MGN which servers did join a launch job
        before anything is sent again. Only this attempt's evidence counts: a LAUNCH job
        initiated by StartCutover, created since the intent was journaled, that lists the
        server, or the server's `lastCutover.initiated` since then (never an older job, a
        revert's TERMINATE job, a test launch). Never launches a server twice; re-sends back
        off and stop at `max_attempts` (then the servers are unconfirmed: a rerun reads first).
        """
        since = sent_at - timedelta(seconds=CLOCK_SKEW_S)
        try:
            jobs = await self._stop.guard(
                self._gw.reads.call(lambda: self._gw.client.describe_jobs(from_date=_iso(since)))
            )
            views = await self._gw.read(batch)
        except (Stopped, MgnError) as read_err:
            log.warning("start_cutover_unresolved", error=str(read_err), servers=len(batch))
            return  # they stay LAUNCHING: reported unconfirmed, a rerun checks MGN first
        found: dict[str, str] = {}
        for job in jobs:
            if job.job_id in self._older_jobs or not _launched_by_start_cutover(job, since):
                continue
            for part in job.servers:
                if part.source_server_id in batch:
                    found[part.source_server_id] = job.job_id
        for sid in batch:
            view = views.get(sid)
            job_id = view.last_cutover_job_id if view is not None else None
            if sid in found or view is None or job_id is None or job_id in self._older_jobs:
                continue
            initiated = iso_time_s(view.last_cutover_initiated_at)
            ours = initiated is not None and initiated >= since.timestamp()
            if view.lifecycle_state == CUTTING_OVER and ours:
                found[sid] = job_id
        for job_id in sorted(set(found.values())):
            self._accepted([s for s in batch if found.get(s) == job_id], job_id)
        rest = [s for s in batch if s not in found]
        if not rest:
            self._unclear_attempts = 0
            return
        if err is None:  # stopped, or no job in a 2xx answer: nothing more is sent for them
            self._requeue(rest, f"{why}; MGN shows no launch job for them: queued again")
            return
        self._unclear_attempts += 1
        attempts = max(self._ledger.launch_attempts(s) for s in rest)
        if attempts >= self._config.max_attempts:
            self._ledger.launch_unclear(
                rest,
                f"retries_exhausted: {why} after {attempts} attempts and MGN shows no launch "
                "job for them; a rerun reads MGN before it launches anything",
            )
            return
        policy, hint = self._gw.reads.policy, err if isinstance(err, RetryableError) else None
        delay = policy.delay_s(self._unclear_attempts, hint, self._gw.reads.rng)
        self._retry_at = self._clock() + delay
        self._requeue(rest, f"{why}; MGN shows no launch job for them: sent again in {delay:.1f}s")

    # -- watch ---------------------------------------------------------------------------------

    async def _watch(self) -> None:
        watched = self._watched()
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
            view = views.get(sid)
            verdict = judge(launch, view, job=known, job_id=in_job, job_done=job_done)
            if verdict.cutover and view is not None:
                if self._ledger.launch_observed(sid, view):
                    self._on_waiting(sid)
                continue
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
        waiting = self._awaiting()
        if not waiting:
            return
        now = self._clock()
        try:
            given = self._approvals()
        except JournalError as err:
            # Retried on the next tick; a journal that stays unreadable stops the run (exit 5).
            self._approval_read_failures += 1
            log.warning(
                "approvals_read_failed", error=str(err), failures=self._approval_read_failures
            )
            if self._approval_read_failures >= APPROVAL_READ_FAILURES:
                self._stop.request(StopReason.LOCAL_STATE, f"the approvals cannot be read: {err}")
            return
        self._approval_read_failures = 0
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
        """Revert the servers MGN shows CUTTING_OVER (read first: one it shows CUTOVER was
        finalized and is never reverted); each row then shows MGN's record after the revert."""
        before = await self._gw.read(servers)
        after: dict[str, ServerView | None] = {}
        reverted: list[str] = []
        for sid in servers:
            seen = before.get(sid)
            if seen is not None and seen.lifecycle_state == CUTOVER:
                self._ledger.note(sid, "revert_skipped", "MGN shows CUTOVER: never reverted")
                continue
            self._ledger.revert_started(sid)
            try:
                after[sid] = await self._stop.guard(
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
                self._ledger.reverted(sid, done, after.get(sid))


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


def _launched_by_start_cutover(job: JobView, since: datetime) -> bool:
    """A LAUNCH job that StartCutover created at or after `since`."""
    created = iso_time_s(job.created)
    return (
        job.type == "LAUNCH"
        and job.initiated_by == "START_CUTOVER"
        and created is not None
        and created >= since.timestamp()
    )
