"""The MGN operations: a validated request body in, a response body out, or an ApiError.

Emulator choices where MGN's behaviour is not published (see ../shared/MGN.md):
- FinalizeCutover accepts only CUTTING_OVER; CUTOVER itself is a ConflictException.
- A stuck server's FinalizeCutover answers 200 with the record as it would look finalized, but
  the true and visible records stay CUTTING_OVER with replication untouched.
- StartCutover is all or nothing: if any ID is unknown or not READY_FOR_CUTOVER/READY_FOR_TEST,
  the call is a ConflictException listing each refused server in `errors`.
- ChangeServerLifeCycleState: READY_FOR_TEST from READY_FOR_CUTOVER or TESTING;
  READY_FOR_CUTOVER from READY_FOR_TEST, TESTING or CUTTING_OVER (a revert). CUTOVER, or the
  current state, is a ConflictException.
- MarkAsArchived on an archived server is a no-op; DisconnectFromService refuses DISCONNECTED.
- Pagination tokens are opaque offsets; with no maxResults a page holds up to 1000 items.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.emulator import state
from orchestrator.emulator.errors import conflict, validation_error
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, Store

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


def start_cutover(store: Store, body: Body) -> Body:
    """StartCutover: launch every listed server (HTTP 202) or refuse them all."""
    account_id = body.get("accountID")
    acct = store.account(account_id)
    ids = list(dict.fromkeys(body["sourceServerIDs"]))
    refusals: list[dict[str, str]] = []
    for sid in ids:
        rec = acct.servers.get(sid)
        reason = (
            "Source server not found" if rec is None else state.start_cutover_refusal(rec.current)
        )
        if reason is not None:
            refusals.append(
                {
                    "code": "INVALID_LIFECYCLE_STATE" if rec else "SOURCE_SERVER_NOT_FOUND",
                    "message": reason,
                    "resourceId": sid,
                    "resourceType": "SOURCE_SERVER",
                }
            )
    if refusals:
        raise conflict(
            refusals[0]["resourceId"],
            f"Cannot start cutover: {len(refusals)} of {len(ids)} source servers refused",
            refusals,
        )
    job_id = store.new_id("mgnjob-")
    now = store.wall()
    participants = []
    for sid in ids:
        rec = store.record(account_id, sid)
        instance_id = store.new_id("i-")
        store.publish(rec, state.cutover_started(rec.current, job_id, instance_id, now))
        store.schedule_boot(rec)
        participants.append(
            {"sourceServerID": sid, "launchStatus": "PENDING", "launchedEc2InstanceID": instance_id}
        )
    region, acct_id = state.REGION, account_id or DEFAULT_ACCOUNT_ID
    job: Body = {
        "jobID": job_id,
        "arn": f"arn:aws:mgn:{region}:{acct_id}:job/{job_id}",
        "type": "LAUNCH",
        "initiatedBy": "START_CUTOVER",
        "creationDateTime": state.iso(now),
        "status": "STARTED",
        "participatingServers": participants,
        "tags": dict(body.get("tags") or {}),
    }
    return {"job": job}


def _mutate(store: Store, body: Body, change: Callable[[Body], Body]) -> Body:
    rec = store.record(body.get("accountID"), body["sourceServerID"])
    new = change(rec.current)
    if new is not rec.current:
        store.publish(rec, new)
    return new


def change_server_life_cycle_state(store: Store, body: Body) -> Body:
    """ChangeServerLifeCycleState between READY_FOR_TEST and READY_FOR_CUTOVER (and reverts)."""
    target = body["lifeCycle"]["state"]
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


HANDLERS: dict[str, Callable[[Store, Body], Body]] = {
    "DescribeSourceServers": describe_source_servers,
    "FinalizeCutover": finalize_cutover,
    "StartCutover": start_cutover,
    "ChangeServerLifeCycleState": change_server_life_cycle_state,
    "MarkAsArchived": mark_as_archived,
    "DisconnectFromService": disconnect_from_service,
    "ListApplications": list_applications,
    "ListWaves": list_waves,
}
