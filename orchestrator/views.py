"""MGN's answers as the run reads them: one server, launch job or server's names, read
defensively (an odd value becomes `None` plus a problem, never an exception), and the enum
values botocore's MGN model allows.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import botocore.session

from orchestrator.answers import PROBLEM_KEY

_MODEL: list[Any] = []  # the MGN service model a client already loaded (loading one costs ~1 s)


def use_model(model: Any) -> None:
    """Read the enums from this (already loaded) botocore MGN service model."""
    if not _MODEL:
        _MODEL.append(model)


@functools.cache
def _enum(shape_name: str) -> frozenset[str]:
    """The values botocore's MGN model allows for an enum shape (the model is read once)."""
    if not _MODEL:
        _MODEL.append(botocore.session.get_session().get_service_model("mgn"))
    return frozenset(_MODEL[0].shape_for(shape_name).enum)


def lifecycle_states() -> frozenset[str]:
    """`lifeCycle.state` values (LifeCycleState in botocore's model)."""
    return _enum("LifeCycleState")


def replication_states() -> frozenset[str]:
    """`dataReplicationInfo.dataReplicationState` values (DataReplicationState)."""
    return _enum("DataReplicationState")


def first_boot_values() -> frozenset[str]:
    """`launchedInstance.firstBoot` values (FirstBoot)."""
    return _enum("FirstBoot")


# The few values our decisions name; each is checked against the model when a view is parsed.
CUTTING_OVER, CUTOVER, DISCONNECTED, SUCCEEDED, READY_FOR_CUTOVER = (
    "CUTTING_OVER",
    "CUTOVER",
    "DISCONNECTED",
    "SUCCEEDED",
    "READY_FOR_CUTOVER",
)


@dataclass(frozen=True, slots=True)  # one kept per server
class ServerView:
    """What MGN says of one server, read defensively: odd answers become `None` plus a problem."""

    source_server_id: str
    application_id: str | None = None
    name: str | None = None
    lifecycle_state: str | None = None
    replication_state: str | None = None
    first_boot: str | None = None
    ec2_instance_id: str | None = None
    archived: bool | None = None
    problem: str | None = None
    # For the launch pre-flight: replication lag in seconds (None: not replicating), any
    # replication error, and the job of the last StartCutover.
    lag_s: float | None = None
    replication_error: str | None = None
    last_cutover_job_id: str | None = None
    # lifeCycle.lastCutover: when MGN says the last StartCutover and FinalizeCutover were called.
    last_cutover_initiated_at: str | None = None
    last_cutover_finalized_at: str | None = None

    @property
    def converged(self) -> bool:
        """MGN shows the cutover as finished: CUTOVER and replication DISCONNECTED."""
        return self.lifecycle_state == CUTOVER and self.replication_state == DISCONNECTED


def text(value: Any) -> str | None:
    """A non-empty string from an answer, else None."""
    return value if isinstance(value, str) and value else None


def mapping(value: Any) -> dict[str, Any]:
    """An object from an answer, else an empty one."""
    return value if isinstance(value, dict) else {}


def parse_server(item: dict[str, Any]) -> ServerView | None:
    """Read one SourceServer answer; None when it has no usable sourceServerID."""
    server_id = text(item.get("sourceServerID"))
    if server_id is None:
        return None
    life = mapping(item.get("lifeCycle"))
    repl = mapping(item.get("dataReplicationInfo"))
    launched = mapping(item.get("launchedInstance"))
    hints = mapping(mapping(item.get("sourceProperties")).get("identificationHints"))
    tags = mapping(item.get("tags"))
    state = text(life.get("state"))
    replication = text(repl.get("dataReplicationState"))
    first_boot = text(launched.get("firstBoot"))
    archived = item.get("isArchived")
    problems = [str(item[PROBLEM_KEY])] if item.get(PROBLEM_KEY) else []
    if launched.get("firstBoot") is not None and first_boot is None:
        problems.append(f"firstBoot is not a string: {launched.get('firstBoot')!r}")
    if state not in lifecycle_states():
        problems.append(f"unknown lifecycle state {state!r}")
    if replication is not None and replication not in replication_states():
        problems.append(f"unknown replication state {replication!r}")
    if first_boot is not None and first_boot not in first_boot_values():
        problems.append(f"unknown firstBoot {first_boot!r}")
    if archived is not None and not isinstance(archived, bool):
        problems.append(f"isArchived is not a boolean: {archived!r}")
    repl_error = mapping(repl.get("dataReplicationError"))
    last_cutover = mapping(life.get("lastCutover"))
    initiated = mapping(last_cutover.get("initiated"))
    finalized = mapping(last_cutover.get("finalized"))
    return ServerView(
        source_server_id=server_id,
        application_id=text(item.get("applicationID")),
        name=text(hints.get("hostname")) or text(tags.get("Name")),
        lifecycle_state=state,
        replication_state=replication,
        first_boot=first_boot,
        ec2_instance_id=text(launched.get("ec2InstanceID")),
        archived=archived if isinstance(archived, bool) else None,
        problem="; ".join(problems) or None,
        lag_s=iso_duration_s(text(repl.get("lagDuration"))),
        replication_error=text(repl_error.get("error")),
        last_cutover_job_id=text(initiated.get("jobID")),
        last_cutover_initiated_at=text(initiated.get("apiCallDateTime")),
        last_cutover_finalized_at=text(finalized.get("apiCallDateTime")),
    )


# When MGN's times are compared with ours, MGN's clock may differ from ours by this much.
CLOCK_SKEW_S = 10.0


def iso_time_s(moment: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time (MGN's apiCallDateTime, a journal time); None if
    absent or unreadable. A time without an offset is UTC."""
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


_DURATION = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def iso_duration_s(text: str | None) -> float | None:
    """Seconds in an ISO 8601 duration such as MGN's lagDuration (`PT1M30S`); None if absent
    or unreadable."""
    if not text:
        return None
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400
        + parts.get("h", 0) * 3600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
    )


@dataclass(frozen=True)
class ActionView:
    """One post-launch action of one server, as a launch job reports it."""

    name: str
    must_succeed: bool
    status: str | None  # IN_PROGRESS | SUCCESS | FAILED
    failure_reason: str | None = None


@dataclass(frozen=True)
class LaunchView:
    """One server's part in a launch job."""

    source_server_id: str
    launch_status: str | None  # PENDING | IN_PROGRESS | LAUNCHED | FAILED | TERMINATED
    ec2_instance_id: str | None
    actions: tuple[ActionView, ...] = ()


@dataclass(frozen=True)
class JobView:
    """A launch job as DescribeJobs or StartCutover reports it."""

    job_id: str
    status: str | None  # PENDING | STARTED | COMPLETED
    servers: tuple[LaunchView, ...] = ()
    created: str | None = None
    type: str | None = None  # LAUNCH | TERMINATE
    initiated_by: str | None = None  # START_CUTOVER | START_TEST | TERMINATE | DIAGNOSTIC ...

    @property
    def active(self) -> bool:
        return self.status != "COMPLETED"


def parse_job(item: dict[str, Any]) -> JobView | None:
    """Read one Job answer; None when it has no usable jobID."""
    job_id = text(item.get("jobID"))
    if job_id is None:
        return None
    servers = []
    for raw in item.get("participatingServers") or []:
        part = mapping(raw)
        sid = text(part.get("sourceServerID"))
        if sid is None:
            continue
        actions = []
        plan = mapping(part.get("postLaunchActionsStatus"))
        for raw_action in plan.get("postLaunchActionsLaunchStatusList") or []:
            action = mapping(raw_action)
            doc = mapping(action.get("ssmDocument"))
            actions.append(
                ActionView(
                    name=text(doc.get("actionName")) or text(doc.get("ssmDocumentName")) or "?",
                    must_succeed=doc.get("mustSucceedForCutover") is True,
                    status=text(action.get("executionStatus")),
                    failure_reason=text(action.get("failureReason")),
                )
            )
        servers.append(
            LaunchView(
                sid,
                text(part.get("launchStatus")),
                text(part.get("launchedEc2InstanceID")),
                tuple(actions),
            )
        )
    created = text(item.get("creationDateTime"))
    return JobView(
        job_id,
        text(item.get("status")),
        tuple(servers),
        created,
        type=text(item.get("type")),
        initiated_by=text(item.get("initiatedBy")),
    )


@dataclass(frozen=True)
class ServerIdentity:
    """The names MGN knows a source server by: what an import file's row is matched against."""

    source_server_id: str
    application_id: str | None = None
    user_provided_id: str | None = None
    hostname: str | None = None
    fqdn: str | None = None
    fqdn_for_action_framework: str | None = None


def parse_identity(item: dict[str, Any]) -> ServerIdentity | None:
    """A SourceServer answer's names; None when it has no usable sourceServerID."""
    server_id = text(item.get("sourceServerID"))
    if server_id is None:
        return None
    hints = mapping(mapping(item.get("sourceProperties")).get("identificationHints"))
    return ServerIdentity(
        server_id,
        text(item.get("applicationID")),
        text(item.get("userProvidedID")),
        text(hints.get("hostname")),
        text(hints.get("fqdn")),
        text(item.get("fqdnForActionFramework")),
    )
