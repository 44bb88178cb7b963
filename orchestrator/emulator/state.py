"""A source server's JSON record and its lifecycle transitions.

Records are MGN's SourceServer JSON as DescribeSourceServers returns it. Once published in the
store a record is never mutated: every transition returns a new record (the store keeps older
ones as snapshots for the visibility lag). A refused transition raises ApiError(Conflict).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.emulator.errors import conflict

REGION = "us-east-1"
LIFECYCLE_STATES = (
    "NOT_READY",
    "READY_FOR_TEST",
    "TESTING",
    "READY_FOR_CUTOVER",
    "CUTTING_OVER",
    "CUTOVER",
    "DISCONNECTED",
    "DISCOVERED",
    "STOPPED",
    "PENDING_INSTALLATION",
)
FIRST_BOOT_STATES = ("WAITING", "SUCCEEDED", "UNKNOWN", "STOPPED")
# Replication a seeded server has when the fixture does not say.
DEFAULT_REPLICATION = {
    "NOT_READY": "INITIAL_SYNC",
    "DISCOVERED": "STOPPED",
    "STOPPED": "STOPPED",
    "PENDING_INSTALLATION": "INITIATING",
    "CUTOVER": "DISCONNECTED",
    "DISCONNECTED": "DISCONNECTED",
}
START_CUTOVER_FROM = frozenset({"READY_FOR_CUTOVER"})
TERMINATE_REFUSED_IN = frozenset({"TESTING", "CUTTING_OVER", "CUTOVER"})
ARCHIVE_FROM = frozenset({"CUTOVER", "DISCONNECTED"})
# ChangeServerLifeCycleState: target -> states it may be reached from (revert included); the
# server must also still be launchable (lagDuration set), so never after FinalizeCutover.
CHANGE_STATE_FROM = {
    "READY_FOR_TEST": frozenset({"READY_FOR_CUTOVER", "TESTING"}),
    "READY_FOR_CUTOVER": frozenset({"READY_FOR_TEST", "TESTING", "CUTTING_OVER", "CUTOVER"}),
    "CUTOVER": frozenset({"CUTTING_OVER"}),
}


def iso(ts: float) -> str:
    """A wall-clock time as MGN's ISO 8601 UTC string (second precision)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def jcopy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars), several times faster than deepcopy."""
    if type(value) is dict:
        return {k: jcopy(v) for k, v in value.items()}
    if type(value) is list:
        return [jcopy(v) for v in value]
    return value


def server_arn(account_id: str, server_id: str) -> str:
    """The source server's ARN."""
    return f"arn:aws:mgn:{REGION}:{account_id}:source-server/{server_id}"


def new_source_server(
    *,
    account_id: str,
    server_id: str,
    hostname: str,
    state: str,
    replication_state: str,
    added_ts: float,
    now_ts: float,
    application_id: str | None = None,
    first_boot: str | None = None,
    ec2_instance_id: str | None = None,
    job_id: str | None = None,
    archived: bool = False,
    disks: Sequence[Mapping[str, Any]] = (),
    tags: Mapping[str, str] | None = None,
    os_name: str = "Amazon Linux 2",
    cores: int = 2,
    ram_bytes: int = 8 * 2**30,
    lag_s: int = 1,
) -> dict[str, Any]:
    """A SourceServer record consistent with its lifecycle and replication states."""
    now = iso(now_ts)
    disk_list = [
        {"deviceName": str(d["deviceName"]), "bytes": int(d["totalStorageBytes"])} for d in disks
    ]
    server: dict[str, Any] = {
        "sourceServerID": server_id,
        "arn": server_arn(account_id, server_id),
        "isArchived": archived,
        "replicationType": "AGENT_BASED",
        "tags": dict(tags or {}),
        "lifeCycle": {
            "state": state,
            "addedToServiceDateTime": iso(added_ts),
            "firstByteDateTime": iso(added_ts + 60),
            "elapsedReplicationDuration": f"PT{max(1, int(now_ts - added_ts))}S",
            "lastSeenByServiceDateTime": now,
        },
        "sourceProperties": {
            "identificationHints": {"hostname": hostname, "fqdn": f"{hostname}.corp.example.com"},
            "os": {"fullString": os_name},
            "cpus": [{"cores": cores, "modelName": "Intel(R) Xeon(R) Platinum 8259CL"}],
            "ramBytes": ram_bytes,
            "disks": disk_list,
            "networkInterfaces": [
                {
                    "ips": [f"10.{len(hostname) % 250}.{sum(map(ord, hostname)) % 250}.10"],
                    "isPrimary": True,
                    "macAddress": "0a:1b:2c:3d:4e:5f",
                }
            ],
            "recommendedInstanceType": "m5.large",
            "lastUpdatedDateTime": now,
        },
        "dataReplicationInfo": _replication(replication_state, disks, now_ts, lag_s),
    }
    if application_id is not None:
        server["applicationID"] = application_id
    if first_boot is not None:
        launched: dict[str, Any] = {"firstBoot": first_boot}
        if ec2_instance_id is not None:
            launched["ec2InstanceID"] = ec2_instance_id
        if job_id is not None:
            launched["jobID"] = job_id
        server["launchedInstance"] = launched
        initiated: dict[str, Any] = {"apiCallDateTime": iso(now_ts - 600)}
        if job_id is not None:
            initiated["jobID"] = job_id
        server["lifeCycle"]["lastCutover"] = {"initiated": initiated}
    if state == "CUTOVER":
        finalized = {"apiCallDateTime": iso(now_ts - 300)}
        server["lifeCycle"].setdefault("lastCutover", {})["finalized"] = finalized
    return server


def _replication(
    state: str, disks: Sequence[Mapping[str, Any]], now_ts: float, lag_s: int
) -> dict[str, Any]:
    syncing = state in ("INITIAL_SYNC", "BACKLOG", "RESCAN", "INITIATING")
    gone = state == "DISCONNECTED"
    replicated: list[dict[str, Any]] = []
    for d in disks:
        total = 0 if gone else int(d["totalStorageBytes"])
        done = total // 2 if syncing else total
        replicated.append(
            {
                "deviceName": str(d["deviceName"]),
                "totalStorageBytes": total,
                "replicatedStorageBytes": done,
                "backloggedStorageBytes": total - done if state == "BACKLOG" else 0,
                "rescannedStorageBytes": 0,
            }
        )
    info: dict[str, Any] = {"dataReplicationState": state, "replicatedDisks": replicated}
    if not gone:
        info["lagDuration"] = f"PT{lag_s}S"
        info["lastSnapshotDateTime"] = iso(now_ts - 600)
    if syncing:
        info["etaDateTime"] = iso(now_ts + 3600)
    return info


def _zero_replication(info: dict[str, Any]) -> None:
    info["dataReplicationState"] = "DISCONNECTED"
    info.pop("lagDuration", None)
    info.pop("etaDateTime", None)
    for disk in info.get("replicatedDisks", []):
        for counter in (
            "totalStorageBytes",
            "replicatedStorageBytes",
            "backloggedStorageBytes",
            "rescannedStorageBytes",
        ):
            disk[counter] = 0


def state_of(server: Mapping[str, Any]) -> str:
    """The record's lifeCycle.state."""
    return str(server["lifeCycle"]["state"])


def finalized(server: Mapping[str, Any], now_ts: float) -> dict[str, Any]:
    """The record after FinalizeCutover; refused unless the server is CUTTING_OVER."""
    sid = server["sourceServerID"]
    current = state_of(server)
    if current != "CUTTING_OVER":
        raise conflict(
            sid, f"Cannot finalize cutover of source server {sid} in lifecycle state {current}"
        )
    out: dict[str, Any] = jcopy(server)
    out["lifeCycle"]["state"] = "CUTOVER"
    last = out["lifeCycle"].setdefault("lastCutover", {})
    last["finalized"] = {"apiCallDateTime": iso(now_ts)}
    _zero_replication(out["dataReplicationInfo"])
    return out


def cutover_started(server: Mapping[str, Any], job_id: str, now_ts: float) -> dict[str, Any]:
    """The record right after StartCutover: CUTTING_OVER, its job's instance not launched yet."""
    out: dict[str, Any] = jcopy(server)
    out["lifeCycle"]["state"] = "CUTTING_OVER"
    out["lifeCycle"]["lastCutover"] = {
        "initiated": {"apiCallDateTime": iso(now_ts), "jobID": job_id}
    }
    out["launchedInstance"] = {"firstBoot": "WAITING", "jobID": job_id}
    return out


def _of_job(server: Mapping[str, Any], job_id: str) -> bool:
    return bool(server.get("launchedInstance", {}).get("jobID") == job_id)


def instance_launched(
    server: Mapping[str, Any], job_id: str, instance_id: str | None
) -> dict[str, Any]:
    """The record once its job's launch ended: the instance's ID, or firstBoot UNKNOWN when the
    launch failed (no instance). A record no longer on that job is left as it is."""
    if not _of_job(server, job_id):
        return dict(server)
    out: dict[str, Any] = jcopy(server)
    if instance_id is None:
        out["launchedInstance"]["firstBoot"] = "UNKNOWN"
    else:
        out["launchedInstance"]["ec2InstanceID"] = instance_id
    return out


def booted(server: Mapping[str, Any], job_id: str, ok: bool = True) -> dict[str, Any]:
    """The record once the launched instance's first boot ended: SUCCEEDED, or STOPPED."""
    if not _of_job(server, job_id):
        return dict(server)
    out: dict[str, Any] = jcopy(server)
    out["launchedInstance"]["firstBoot"] = "SUCCEEDED" if ok else "STOPPED"
    return out


def launchable(server: Mapping[str, Any]) -> bool:
    """Whether MGN can still launch from this server: it replicates (lagDuration is set)."""
    return server.get("dataReplicationInfo", {}).get("lagDuration") is not None


def start_cutover_refusal(server: Mapping[str, Any]) -> str | None:
    """Why StartCutover cannot launch this server, or None when it can."""
    sid, current = server["sourceServerID"], state_of(server)
    if current not in START_CUTOVER_FROM:
        return f"Source server {sid} is in lifecycle state {current}, not READY_FOR_CUTOVER"
    if not launchable(server):
        return f"Source server {sid} is not replicating (no lagDuration): nothing to launch"
    return None


def terminate_refusal(server: Mapping[str, Any]) -> str | None:
    """Why TerminateTargetInstances cannot run for this server, or None when it can."""
    current = state_of(server)
    if current in TERMINATE_REFUSED_IN:
        return (
            f"Cannot terminate target instances of source server {server['sourceServerID']}"
            f" in lifecycle state {current}; revert it first"
        )
    return None


def instances_terminated(server: Mapping[str, Any]) -> dict[str, Any]:
    """The record after TerminateTargetInstances: no launched instance."""
    out: dict[str, Any] = jcopy(server)
    out.pop("launchedInstance", None)
    return out


def life_cycle_changed(server: Mapping[str, Any], target: str, now_ts: float) -> dict[str, Any]:
    """The record after ChangeServerLifeCycleState; refused outside CHANGE_STATE_FROM."""
    sid = server["sourceServerID"]
    current = state_of(server)
    if current not in CHANGE_STATE_FROM.get(target, frozenset()):
        raise conflict(
            sid, f"Cannot change source server {sid} from lifecycle state {current} to {target}"
        )
    if not launchable(server):
        raise conflict(
            sid,
            f"Cannot change source server {sid} to {target}: it no longer replicates"
            " (no lagDuration; finalized or disconnected)",
        )
    out: dict[str, Any] = jcopy(server)
    out["lifeCycle"]["state"] = target
    if current == "CUTTING_OVER":
        last = out["lifeCycle"].setdefault("lastCutover", {})
        last["reverted"] = {"apiCallDateTime": iso(now_ts)}
    return out


def archived(server: Mapping[str, Any]) -> dict[str, Any]:
    """The record after MarkAsArchived; refused unless CUTOVER or DISCONNECTED."""
    sid = server["sourceServerID"]
    current = state_of(server)
    if current not in ARCHIVE_FROM:
        raise conflict(sid, f"Cannot archive source server {sid} in lifecycle state {current}")
    out: dict[str, Any] = jcopy(server)
    out["isArchived"] = True
    return out


def disconnected(server: Mapping[str, Any]) -> dict[str, Any]:
    """The record after DisconnectFromService; refused when already DISCONNECTED."""
    sid = server["sourceServerID"]
    if state_of(server) == "DISCONNECTED":
        raise conflict(sid, f"Source server {sid} is already in lifecycle state DISCONNECTED")
    out: dict[str, Any] = jcopy(server)
    out["lifeCycle"]["state"] = "DISCONNECTED"
    _zero_replication(out["dataReplicationInfo"])
    return out
