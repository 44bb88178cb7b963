"""Launch and terminate jobs: what each participating server goes through, and when.

StartCutover draws, per server, from the store's seeded dice: how long its launch and first boot
take (emulated seconds; divided by `time_scale` they become clock seconds), whether either
fails, and each post-launch action's duration and outcome. Nothing runs in the background: a
job's JSON is computed from that plan and the clock whenever it is read, and the server records
get the same moments as scheduled events (store.py). One server's timeline from t0:

    launchStatus PENDING [t0, t0 + launch/4) -> IN_PROGRESS -> LAUNCHED | FAILED at t0 + launch
    firstBoot    WAITING until launched + boot -> SUCCEEDED | STOPPED
    post-launch actions, one after another from the boot: IN_PROGRESS -> SUCCESS | FAILED

A job is PENDING while all its servers are, STARTED until the last server is done, then
COMPLETED. A stuck job's launches never leave IN_PROGRESS: it stays STARTED, holding its
quota, for good. Active jobs count against the account's quotas (check_quotas).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.emulator.errors import ApiError, conflict

if TYPE_CHECKING:
    from orchestrator.emulator.faults import Faults

SSM_DOCUMENT_NAME = re.compile(r"^([A-Za-z0-9/:_\.-])+$")
# Post-launch action keys: SsmDocument's own, plus the emulator's `fail` and `seconds`.
ACTION_KEYS = frozenset(
    {
        "actionName",
        "ssmDocumentName",
        "mustSucceedForCutover",
        "timeoutSeconds",
        "ssmDocumentType",
        "fail",
        "seconds",
    }
)
NOT_BOOTED = "The launched instance did not boot (firstBoot STOPPED)"


def check_actions(actions: Any, where: str) -> list[str]:
    """Problems with a list of post-launch action specs (empty when valid)."""
    if not isinstance(actions, list | tuple):
        return [f"{where}: expected a list of post-launch actions"]
    out: list[str] = []
    for i, spec in enumerate(actions):
        at = f"{where}[{i}]"
        if not isinstance(spec, Mapping):
            out.append(f"{at}: expected a mapping")
            continue
        out += [f"{at}.{k}: unknown key" for k in sorted(set(spec) - ACTION_KEYS)]
        name, doc = spec.get("actionName"), spec.get("ssmDocumentName")
        if not isinstance(name, str) or not 0 < len(name) <= 256:
            out.append(f"{at}.actionName: required, 1-256 characters, got {name!r}")
        if not isinstance(doc, str) or not 3 <= len(doc) <= 172 or not SSM_DOCUMENT_NAME.match(doc):
            out.append(f"{at}.ssmDocumentName: 3-172 of [A-Za-z0-9/:_.-], got {doc!r}")
        for key in ("mustSucceedForCutover", "fail"):
            if key in spec and not isinstance(spec[key], bool):
                out.append(f"{at}.{key}: expected true or false, got {spec[key]!r}")
        timeout = spec.get("timeoutSeconds")
        if timeout is not None and (type(timeout) is not int or timeout < 1):
            out.append(f"{at}.timeoutSeconds: expected an integer >= 1, got {timeout!r}")
        seconds = spec.get("seconds")
        if seconds is not None and (
            not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0
        ):
            out.append(f"{at}.seconds: expected a number >= 0, got {seconds!r}")
        if spec.get("ssmDocumentType", "AUTOMATION") not in ("AUTOMATION", "COMMAND"):
            out.append(f"{at}.ssmDocumentType: AUTOMATION or COMMAND")
    return out


@dataclass
class ActionRun:
    """One post-launch action of one server: when it runs and how it ends."""

    document: dict[str, Any]
    document_type: str
    start_at: float
    end_at: float
    ok: bool
    reason: str | None

    def view(self, now: float) -> dict[str, Any] | None:
        if now < self.start_at:
            return None
        out: dict[str, Any] = {
            "ssmDocument": dict(self.document),
            "ssmDocumentType": self.document_type,
            "executionStatus": "IN_PROGRESS",
        }
        if now >= self.end_at:
            out["executionStatus"] = "SUCCESS" if self.ok else "FAILED"
            if self.reason:
                out["failureReason"] = self.reason
        return out


@dataclass
class ServerRun:
    """One participating server's plan: launch, first boot and post-launch actions."""

    server_id: str
    in_progress_at: float
    # None: the launch never ends (a stuck job).
    launched_at: float | None
    launch_ok: bool = True
    instance_id: str | None = None
    boot_at: float | None = None
    boot_ok: bool = True
    actions: list[ActionRun] = field(default_factory=list)
    # A TERMINATE job's participant: TERMINATED once the job ran.
    terminate: bool = False

    def done_at(self) -> float | None:
        if self.launched_at is None:
            return None
        ends = [self.launched_at]
        if self.launch_ok and self.boot_at is not None:
            ends.append(self.boot_at)
        ends += [a.end_at for a in self.actions]
        return max(ends)

    def view(self, now: float, fresh: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"sourceServerID": self.server_id, "launchStatus": "PENDING"}
        if fresh or now < self.in_progress_at:
            return out
        if self.terminate:
            out["launchStatus"] = "TERMINATED"
            if self.instance_id:
                out["launchedEc2InstanceID"] = self.instance_id
            return out
        if self.launched_at is None or now < self.launched_at:
            out["launchStatus"] = "IN_PROGRESS"
            return out
        if not self.launch_ok:
            out["launchStatus"] = "FAILED"
            return out
        out["launchStatus"] = "LAUNCHED"
        if self.instance_id:
            out["launchedEc2InstanceID"] = self.instance_id
        statuses = [v for v in (a.view(now) for a in self.actions) if v is not None]
        if statuses:
            out["postLaunchActionsStatus"] = {"postLaunchActionsLaunchStatusList": statuses}
        return out


@dataclass
class JobRecord:
    """A LAUNCH or TERMINATE job; its JSON is computed from its plan at read time."""

    job_id: str
    arn: str
    type: str
    initiated_by: str
    created_at: float
    created_wall: float
    servers: list[ServerRun]
    tags: dict[str, str] = field(default_factory=dict)
    stuck: bool = False

    @property
    def end_at(self) -> float | None:
        """Clock time the job completes; None when it never does."""
        if self.stuck:
            return None
        ends = [s.done_at() for s in self.servers]
        if any(e is None for e in ends):
            return None
        return max([self.created_at, *(e for e in ends if e is not None)])

    def active(self, now: float) -> bool:
        end = self.end_at
        return end is None or now < end

    def status(self, now: float) -> str:
        if not self.active(now):
            return "COMPLETED"
        if all(now < s.in_progress_at for s in self.servers):
            return "PENDING"
        return "STARTED"

    def view(self, now: float, iso: Callable[[float], str], fresh: bool = False) -> dict[str, Any]:
        """The Job JSON at clock time `now`; `fresh` gives it as its creating call answers."""
        status = "PENDING" if fresh else self.status(now)
        out: dict[str, Any] = {
            "jobID": self.job_id,
            "arn": self.arn,
            "type": self.type,
            "initiatedBy": self.initiated_by,
            "creationDateTime": iso(self.created_wall),
            "status": status,
            "participatingServers": [s.view(now, fresh) for s in self.servers],
            "tags": dict(self.tags),
        }
        end = self.end_at
        if status == "COMPLETED" and end is not None:
            out["endDateTime"] = iso(self.created_wall + (end - self.created_at))
        return out


@dataclass(frozen=True)
class LaunchDraw:
    """What the dice decided for one server's launch (durations in clock seconds)."""

    launch_s: float
    boot_s: float
    launch_ok: bool
    boot_ok: bool
    actions: tuple[tuple[float, bool], ...]


def draw_launch(
    rng: random.Random,
    faults: Faults,
    actions: Iterable[Mapping[str, Any]],
    *,
    launch_fails: bool = False,
    boot_fails: bool = False,
) -> LaunchDraw:
    """Draw one server's launch; every number is drawn whatever the rates, so the sequence of
    draws (and so a seeded run) does not depend on them."""
    scale = faults.time_scale
    launch_s = rng.uniform(*faults.launch_s) / scale
    boot_s = rng.uniform(*faults.boot_range()) / scale
    launch_ok = rng.random() >= faults.launch_failure_rate and not launch_fails
    boot_ok = rng.random() >= faults.boot_failure_rate and not boot_fails
    outcomes = []
    for spec in actions:
        seconds = rng.uniform(*faults.action_s)
        ok = rng.random() >= faults.action_failure_rate and not spec.get("fail", False)
        if spec.get("seconds") is not None:
            seconds = float(spec["seconds"])
        outcomes.append((seconds, ok))
    return LaunchDraw(launch_s, boot_s, launch_ok, boot_ok, tuple(outcomes))


def plan_server(
    server_id: str,
    now: float,
    draw: LaunchDraw,
    actions: Sequence[Mapping[str, Any]],
    instance_id: str | None,
    time_scale: float,
    stuck: bool,
) -> ServerRun:
    """The server's run inside a new LAUNCH job, from its draw."""
    run = ServerRun(server_id, now + draw.launch_s / 4, None, draw.launch_ok, instance_id)
    if stuck:
        return run
    run.launched_at = now + draw.launch_s
    if not draw.launch_ok:
        run.instance_id = None
        return run
    run.boot_at = run.launched_at + draw.boot_s
    run.boot_ok = draw.boot_ok
    at = run.boot_at
    for spec, (seconds, ok) in zip(actions, draw.actions, strict=True):
        document = {
            k: spec[k]
            for k in ("actionName", "ssmDocumentName", "mustSucceedForCutover", "timeoutSeconds")
            if k in spec
        }
        doc_type = str(spec.get("ssmDocumentType", "AUTOMATION"))
        if not draw.boot_ok:
            run.actions.append(ActionRun(document, doc_type, at, at, False, NOT_BOOTED))
            continue
        timeout = spec.get("timeoutSeconds")
        reason = None if ok else f"SSM document {spec['ssmDocumentName']} failed (emulated)"
        if timeout is not None and seconds > timeout:
            seconds, ok = float(timeout), False
            reason = f"SSM document {spec['ssmDocumentName']} timed out after {timeout} seconds"
        end = at + seconds / time_scale
        run.actions.append(ActionRun(document, doc_type, at, end, ok, reason))
        at = end
    return run


def check_quotas(
    active: list[JobRecord], server_ids: list[str], max_jobs: int, max_servers: int
) -> None:
    """ServiceQuotaExceededException when a new job over `server_ids` would break a quota."""
    if len(active) + 1 > max_jobs:
        raise _quota(
            f"Concurrent jobs quota reached: {len(active)} of {max_jobs} jobs are active",
            "emulator-concurrent-jobs",
            max_jobs,
        )
    busy = sum(len(j.servers) for j in active)
    if busy + len(server_ids) > max_servers:
        raise _quota(
            f"Servers in active jobs quota exceeded: {busy} active + {len(server_ids)} requested"
            f" > {max_servers}",
            "emulator-servers-in-active-jobs",
            max_servers,
        )


def _quota(message: str, code: str, value: int) -> ApiError:
    return ApiError(
        "ServiceQuotaExceededException",
        message,
        code="SERVICE_QUOTA_EXCEEDED",
        quotaCode=code,
        serviceCode="mgn",
        quotaValue=value,
        resourceType="JOB",
    )


def refusal(server_id: str, code: str, message: str) -> dict[str, str]:
    """One entry of a ConflictException's `errors` list."""
    return {
        "code": code,
        "message": message,
        "resourceId": server_id,
        "resourceType": "SOURCE_SERVER",
    }


def refuse_all(action: str, refusals: list[dict[str, str]], total: int) -> ApiError:
    """The ConflictException refusing a whole job request, listing each refused server."""
    first = refusals[0]
    err = conflict(
        first["resourceId"],
        f"Cannot {action}: {len(refusals)} of {total} source servers refused: {first['message']}",
        refusals,
    )
    err.fields["code"] = first["code"]
    return err
