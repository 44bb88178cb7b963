"""The MGN operations: a validated request body in, a response body out, or an ApiError.

Emulator choices where MGN's behaviour is not published (see ../shared/MGN.md):
- FinalizeCutover accepts only CUTTING_OVER; CUTOVER itself is a ConflictException.
- A stuck server's FinalizeCutover answers 200 with the record as it would look finalized, but
  the true and visible records stay CUTTING_OVER with replication untouched.
- StartCutover and TerminateTargetInstances are all or nothing: if any ID is unknown, already in
  an active job or in the wrong state, the call is a ConflictException listing each refused
  server in `errors` (its `code` is the first refusal's). Then the job quotas (20 active jobs,
  200 servers across active jobs; ServiceQuotaExceededException, HTTP 402) are checked.
- StartCutover launches only READY_FOR_CUTOVER servers that replicate (lagDuration set).
  A failed launch leaves firstBoot UNKNOWN and no instance; the server stays CUTTING_OVER.
- TerminateTargetInstances is refused in TESTING, CUTTING_OVER and CUTOVER; its TERMINATE job
  completes at once and the servers lose their launchedInstance.
- ChangeServerLifeCycleState: READY_FOR_TEST from READY_FOR_CUTOVER or TESTING;
  READY_FOR_CUTOVER from READY_FOR_TEST, TESTING, CUTTING_OVER or CUTOVER (a revert); CUTOVER
  from CUTTING_OVER (replication untouched). Anything else, a server in an active job, or one
  that no longer replicates (no lagDuration) is a ConflictException.
- MarkAsArchived on an archived server is a no-op; DisconnectFromService refuses DISCONNECTED.
- Pagination tokens are opaque offsets; with no maxResults a page holds up to 1000 items.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from orchestrator.emulator import jobs, state
from orchestrator.emulator.errors import ApiError, conflict, validation_error
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, ServerRecord, Store

log = logging.getLogger(__name__)
Body = dict[str, Any]
DEFAULT_PAGE = 1000


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"mgn-emulator:{offset}".encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "mgn-emulator" or not number.isdigit():
            raise ValueError(token)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise validation_error(
            "Invalid pagination token",
            "fieldValidationFailed",
            [("nextToken", "Member must be a token this service returned")],
        ) from exc


def _page(items: Iterable[Body], body: Body) -> Body:
    offset = _decode_token(body.get("nextToken"))
    size = body.get("maxResults") or DEFAULT_PAGE
    everything = list(items)
    page = everything[offset : offset + size]
    out: Body = {"items": page}
    if offset + size < len(everything):
        out["nextToken"] = _encode_token(offset + size)
    return out


def describe_source_servers(store: Store, body: Body) -> Body:
    """DescribeSourceServers: visible snapshots, filtered, one page."""
    filters = body.get("filters") or {}
    ids = filters.get("sourceServerIDs") or None
    apps = filters.get("applicationIDs") or None
    app_set = frozenset(apps) if apps else None
    states = frozenset(filters.get("lifeCycleStates") or ()) or None
    types = frozenset(filters.get("replicationTypes") or ()) or None
    archived = filters.get("isArchived")

    def wanted(s: Body) -> bool:
        return (
            (app_set is None or s.get("applicationID") in app_set)
            and (states is None or s["lifeCycle"]["state"] in states)
            and (types is None or s.get("replicationType") in types)
            and (archived is None or s.get("isArchived", False) is archived)
        )

    found = store.visible_in(body.get("accountID"), ids, None if ids else apps)
    return _page((s for s in found if wanted(s)), body)


def finalize_cutover(store: Store, body: Body) -> Body:
    """FinalizeCutover: CUTTING_OVER -> CUTOVER on the true record (unless the server is stuck)."""
    rec = store.record(body.get("accountID"), body["sourceServerID"])
    new = state.finalized(rec.current, store.wall())
    if store.is_stuck(body["sourceServerID"], rec.stuck):
        return new
    store.publish(rec, new)
    return new


def _job_servers(
    store: Store,
    account_id: str | None,
    ids: list[str],
    action: str,
    refusal: Callable[[Body], str | None],
) -> list[ServerRecord]:
    """The records of a job request's servers; ConflictException refusing them all if any is
    unknown, already in an active job, or in the wrong state."""
    acct = store.account(account_id)
    refusals: list[dict[str, str]] = []
    records = []
    for sid in ids:
        if sid not in acct.servers:
            refusals.append(jobs.refusal(sid, "SOURCE_SERVER_NOT_FOUND", f"{sid} not found"))
            continue
        rec = store.record(account_id, sid)
        busy = store.active_job_of(account_id, rec)
        if busy is not None:
            message = f"Source server {sid} is already in active job {busy.job_id}"
            refusals.append(jobs.refusal(sid, "SOURCE_SERVER_IN_ACTIVE_JOB", message))
            continue
        reason = refusal(rec.current)
        if reason is not None:
            refusals.append(jobs.refusal(sid, "INVALID_LIFECYCLE_STATE", reason))
        records.append(rec)
    if refusals:
        raise jobs.refuse_all(action, refusals, len(ids))
    f = store.faults
    jobs.check_quotas(
        store.active_jobs(account_id), ids, f.max_active_jobs, f.max_active_job_servers
    )
    return records


def _new_job(
    store: Store,
    body: Body,
    job_id: str,
    job_type: str,
    initiated_by: str,
    runs: list[jobs.ServerRun],
) -> jobs.JobRecord:
    acct_id = body.get("accountID") or DEFAULT_ACCOUNT_ID
    return jobs.JobRecord(
        job_id=job_id,
        arn=f"arn:aws:mgn:{state.REGION}:{acct_id}:job/{job_id}",
        type=job_type,
        initiated_by=initiated_by,
        created_at=store.clock(),
        created_wall=store.wall(),
        servers=runs,
        tags=dict(body.get("tags") or {}),
    )


Planned = list[tuple[ServerRecord, list[Body], jobs.LaunchDraw]]


def start_cutover(store: Store, body: Body) -> Body | Awaitable[Body]:
    """StartCutover: a LAUNCH job over every listed server (HTTP 202), or refuse them all.

    With EC2 configured the job and the servers' CUTTING_OVER are in place at once, and the
    answer waits for RunInstances in a worker thread (the emulator keeps serving meanwhile;
    the launches stay PENDING until EC2 answered, then their timeline starts). An EC2 error
    fails the launches (launchStatus FAILED), as it would in MGN.
    """
    account_id = body.get("accountID")
    ids = list(dict.fromkeys(body["sourceServerIDs"]))
    records = _job_servers(store, account_id, ids, "start cutover", state.start_cutover_refusal)
    job = _new_job(store, body, store.new_id("mgnjob-"), "LAUNCH", "START_CUTOVER", [])
    job.stuck = store.is_stuck_job(job.job_id, ids) or any(r.stuck_job for r in records)
    f = store.faults
    planned: Planned = []
    for rec in records:
        own = rec.actions if rec.actions is not None else f.post_launch_actions
        actions = [dict(a) for a in own]
        draw = jobs.draw_launch(
            store.dice, f, actions, launch_fails=rec.launch_fails, boot_fails=rec.boot_fails
        )
        planned.append((rec, actions, draw))
        sid = rec.current["sourceServerID"]
        # PENDING until its plan is filled in (at once, or when EC2 answered).
        job.servers.append(jobs.ServerRun(sid, float("inf"), None))
        store.publish(rec, state.cutover_started(rec.current, job.job_id, job.created_wall))
        rec.job_id = job.job_id
    store.account(account_id).jobs[job.job_id] = job
    answer = {"job": job.view(job.created_at, state.iso, fresh=True)}
    launching = [d.launch_ok for _, _, d in planned].count(True)
    ec2 = store.ec2
    if ec2 is None or job.stuck or not launching:
        _fill(store, job, planned, [store.new_id("i-") for _ in range(launching)])
        return answer

    async def with_ec2() -> Body:
        not_booting = [d.boot_ok for _, _, d in planned if d.launch_ok]
        try:
            instance_ids = await asyncio.to_thread(ec2.run, account_id, job.job_id, not_booting)
        except ApiError as exc:
            log.warning("emulator_ec2_launch_failed", extra={"error": exc.message})
            failed = [(r, a, replace(d, launch_ok=False)) for r, a, d in planned]
            _fill(store, job, failed, [])
        else:
            _fill(store, job, planned, instance_ids)
        return answer

    return with_ec2()


def _fill(store: Store, job: jobs.JobRecord, planned: Planned, instance_ids: list[str]) -> None:
    """Plan each server's launch from now, the launching ones taking `instance_ids` in order."""
    now, f = store.clock(), store.faults
    ids = iter(instance_ids)
    for i, (rec, actions, draw) in enumerate(planned):
        instance_id = next(ids) if draw.launch_ok and not job.stuck else None
        sid = rec.current["sourceServerID"]
        run = jobs.plan_server(sid, now, draw, actions, instance_id, f.time_scale, job.stuck)
        job.servers[i] = run
        _schedule_launch(store, rec, job.job_id, run)


def _schedule_launch(store: Store, rec: ServerRecord, job_id: str, run: jobs.ServerRun) -> None:
    if run.launched_at is None:
        return
    instance_id = run.instance_id if run.launch_ok else None
    store.schedule(rec, run.launched_at, lambda s: state.instance_launched(s, job_id, instance_id))
    if run.launch_ok and run.boot_at is not None:
        ok = run.boot_ok
        store.schedule(rec, run.boot_at, lambda s: state.booted(s, job_id, ok))


def terminate_target_instances(store: Store, body: Body) -> Body:
    """TerminateTargetInstances: a TERMINATE job; launched instances gone (HTTP 202)."""
    account_id = body.get("accountID")
    ids = list(dict.fromkeys(body["sourceServerIDs"]))
    records = _job_servers(
        store, account_id, ids, "terminate target instances", state.terminate_refusal
    )
    now = store.clock()
    runs = []
    instances = []
    for rec in records:
        instance_id = rec.current.get("launchedInstance", {}).get("ec2InstanceID")
        if instance_id:
            instances.append(instance_id)
        sid = rec.current["sourceServerID"]
        runs.append(jobs.ServerRun(sid, now, now, instance_id=instance_id, terminate=True))
    if store.ec2 is not None:
        store.ec2.terminate(account_id, instances)
    job = _new_job(store, body, store.new_id("mgnjob-"), "TERMINATE", "TERMINATE", runs)
    for rec in records:
        store.publish(rec, state.instances_terminated(rec.current))
        rec.job_id = job.job_id
    store.account(account_id).jobs[job.job_id] = job
    return {"job": job.view(now, state.iso, fresh=True)}


def _epoch(text: str | None, default: float) -> float:
    if not text:
        return default
    return datetime.fromisoformat(text).timestamp()


def describe_jobs(store: Store, body: Body) -> Body:
    """DescribeJobs: the account's jobs as of now, filtered by jobIDs and creation dates."""
    acct = store.accounts.get(body.get("accountID") or DEFAULT_ACCOUNT_ID)
    filters = body.get("filters") or {}
    wanted = frozenset(filters.get("jobIDs") or ()) or None
    try:
        since = _epoch(filters.get("fromDate"), float("-inf"))
        until = _epoch(filters.get("toDate"), float("inf"))
    except ValueError as exc:
        raise validation_error(
            f"Invalid date filter: {exc}", "fieldValidationFailed", [("filters", str(exc))]
        ) from exc
    now = store.clock()
    found = [] if acct is None else list(acct.jobs.values())
    items = (
        j.view(now, state.iso)
        for j in found
        if (wanted is None or j.job_id in wanted) and since <= int(j.created_wall) <= until
    )
    return _page(items, body)


def _mutate(store: Store, body: Body, change: Callable[[Body], Body]) -> Body:
    rec = store.record(body.get("accountID"), body["sourceServerID"])
    new = change(rec.current)
    if new is not rec.current:
        store.publish(rec, new)
    return new


def change_server_life_cycle_state(store: Store, body: Body) -> Body:
    """ChangeServerLifeCycleState to READY_FOR_TEST, READY_FOR_CUTOVER (a revert) or CUTOVER;
    refused while the server is in an active job or no longer launchable."""
    target = body["lifeCycle"]["state"]
    account_id = body.get("accountID")
    rec = store.record(account_id, body["sourceServerID"])
    busy = store.active_job_of(account_id, rec)
    if busy is not None:
        sid = body["sourceServerID"]
        raise conflict(sid, f"Source server {sid} is in active job {busy.job_id}")
    now = store.wall()
    return _mutate(store, body, lambda s: state.life_cycle_changed(s, target, now))


def mark_as_archived(store: Store, body: Body) -> Body:
    """MarkAsArchived: only from CUTOVER or DISCONNECTED."""
    return _mutate(store, body, lambda s: s if s.get("isArchived") else state.archived(s))


def disconnect_from_service(store: Store, body: Body) -> Body:
    """DisconnectFromService: replication and lifecycle DISCONNECTED, storage zeroed."""
    return _mutate(store, body, state.disconnected)


def _progress(store: Store, account_id: str | None, app_ids: Iterable[str]) -> tuple[int, str]:
    states = [s["lifeCycle"]["state"] for s in store.visible_in(account_id, None, app_ids)]
    if states and all(s == "CUTOVER" for s in states):
        return len(states), "COMPLETED"
    if any(s in ("CUTTING_OVER", "CUTOVER", "TESTING") for s in states):
        return len(states), "IN_PROGRESS"
    return len(states), "NOT_STARTED"


def list_applications(store: Store, body: Body) -> Body:
    """ListApplications, filtered by applicationIDs, waveIDs and isArchived."""
    account_id = body.get("accountID")
    filters = body.get("filters") or {}
    app_ids = frozenset(filters.get("applicationIDs") or ()) or None
    wave_ids = frozenset(filters.get("waveIDs") or ()) or None
    archived = filters.get("isArchived")
    items = []
    for app in store.account(account_id).applications.values():
        if (
            (app_ids is None or app["applicationID"] in app_ids)
            and (wave_ids is None or app.get("waveID") in wave_ids)
            and (archived is None or app.get("isArchived", False) is archived)
        ):
            total, progress = _progress(store, account_id, [app["applicationID"]])
            status = {
                "healthStatus": "HEALTHY",
                "progressStatus": progress,
                "totalSourceServers": total,
                "lastUpdateDateTime": state.iso(store.wall()),
            }
            items.append({**app, "applicationAggregatedStatus": status})
    return _page(items, body)


def list_waves(store: Store, body: Body) -> Body:
    """ListWaves, filtered by waveIDs and isArchived."""
    account_id = body.get("accountID")
    acct = store.account(account_id)
    filters = body.get("filters") or {}
    wave_ids = frozenset(filters.get("waveIDs") or ()) or None
    archived = filters.get("isArchived")
    items = []
    for wave in acct.waves.values():
        if (wave_ids is None or wave["waveID"] in wave_ids) and (
            archived is None or wave.get("isArchived", False) is archived
        ):
            apps = [a for a, v in acct.applications.items() if v.get("waveID") == wave["waveID"]]
            _, progress = _progress(store, account_id, apps)
            status = {
                "healthStatus": "HEALTHY",
                "progressStatus": progress,
                "totalApplications": len(apps),
                "lastUpdateDateTime": state.iso(store.wall()),
            }
            items.append({**wave, "waveAggregatedStatus": status})
    return _page(items, body)


def list_managed_accounts(store: Store, body: Body) -> Body:
    """ListManagedAccounts: every account the emulator holds data for, the management one too."""
    accounts = sorted({DEFAULT_ACCOUNT_ID, *store.accounts})
    return _page(({"accountId": a} for a in accounts), body)


HANDLERS: dict[str, Callable[[Store, Body], Body | Awaitable[Body]]] = {
    "DescribeSourceServers": describe_source_servers,
    "FinalizeCutover": finalize_cutover,
    "StartCutover": start_cutover,
    "ChangeServerLifeCycleState": change_server_life_cycle_state,
    "MarkAsArchived": mark_as_archived,
    "DisconnectFromService": disconnect_from_service,
    "ListApplications": list_applications,
    "ListWaves": list_waves,
    "DescribeJobs": describe_jobs,
    "TerminateTargetInstances": terminate_target_instances,
    "ListManagedAccounts": list_managed_accounts,
}
