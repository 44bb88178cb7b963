"""Pre-flight: where we decide whether a server may be finalized. Reads only; never mutates.

A server is `finalize` only if it exists, is not archived, belongs to the plan's application (when
MGN names one), is CUTTING_OVER and (unless disabled) its cutover instance's first boot SUCCEEDED.
With the application gate on, one blocked server blocks its whole application.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from orchestrator.answers import PROBLEM_KEY
from orchestrator.config import Config
from orchestrator.errors import AccountError
from orchestrator.mgn import MAX_IDS_PER_DESCRIBE, MAX_IDS_PER_INSTANCE_STATUS, chunks
from orchestrator.plan import Server, Wave

LIFECYCLE_STATES = frozenset(
    {
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
    }
)
FIRST_BOOT_VALUES = frozenset({"WAITING", "SUCCEEDED", "UNKNOWN", "STOPPED"})


class Decision(StrEnum):
    """What a run would do to a server."""

    FINALIZE = "finalize"
    ALREADY_CUTOVER = "already_cutover"
    BLOCKED = "blocked"


@dataclass(frozen=True)
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

    @property
    def converged(self) -> bool:
        """MGN shows the cutover as finished: CUTOVER and replication DISCONNECTED."""
        return self.lifecycle_state == "CUTOVER" and self.replication_state == "DISCONNECTED"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_server(item: dict[str, Any]) -> ServerView | None:
    """Read one DescribeSourceServers item; None when it has no usable sourceServerID."""
    server_id = _str(item.get("sourceServerID"))
    if server_id is None:
        return None
    life = _dict(item.get("lifeCycle"))
    repl = _dict(item.get("dataReplicationInfo"))
    launched = _dict(item.get("launchedInstance"))
    hints = _dict(_dict(item.get("sourceProperties")).get("identificationHints"))
    tags = _dict(item.get("tags"))
    state = _str(life.get("state"))
    first_boot = _str(launched.get("firstBoot"))
    archived = item.get("isArchived")
    problems = [str(item[PROBLEM_KEY])] if item.get(PROBLEM_KEY) else []
    if launched.get("firstBoot") is not None and first_boot is None:
        problems.append(f"firstBoot is not a string: {launched.get('firstBoot')!r}")
    if state not in LIFECYCLE_STATES:
        problems.append(f"unknown lifecycle state {state!r}")
    if first_boot is not None and first_boot not in FIRST_BOOT_VALUES:
        problems.append(f"unknown firstBoot {first_boot!r}")
    if archived is not None and not isinstance(archived, bool):
        problems.append(f"isArchived is not a boolean: {archived!r}")
    return ServerView(
        source_server_id=server_id,
        application_id=_str(item.get("applicationID")),
        name=_str(hints.get("hostname")) or _str(tags.get("Name")),
        lifecycle_state=state,
        replication_state=_str(repl.get("dataReplicationState")),
        first_boot=first_boot,
        ec2_instance_id=_str(launched.get("ec2InstanceID")),
        archived=archived if isinstance(archived, bool) else None,
        problem="; ".join(problems) or None,
    )


@dataclass(frozen=True)
class Check:
    """One server's pre-flight verdict, with the MGN view it was based on."""

    server: Server
    decision: Decision
    reason: str | None
    view: ServerView | None

    @property
    def source_server_id(self) -> str:
        return self.server.source_server_id


def decide(server: Server, view: ServerView | None, config: Config) -> Check:
    """The verdict for one server, before the application gate."""

    def blocked(reason: str) -> Check:
        return Check(server, Decision.BLOCKED, reason, view)

    if view is None:
        return blocked("not_found: MGN has no such source server")
    if view.problem is not None:
        return blocked(f"unknown_state: {view.problem}")
    if view.archived is None:
        return blocked("unknown_state: MGN did not say whether the server is archived")
    if view.archived:
        return blocked("archived: the source server is archived in MGN")
    if view.application_id is not None and view.application_id != server.application_id:
        return blocked(
            f"application_mismatch: MGN has it in {view.application_id}, "
            f"the plan in {server.application_id}"
        )
    if view.lifecycle_state == "CUTOVER":
        if view.converged:
            return Check(server, Decision.ALREADY_CUTOVER, None, view)
        return Check(
            server,
            Decision.ALREADY_CUTOVER,
            f"replication not yet DISCONNECTED ({view.replication_state})",
            view,
        )
    if view.lifecycle_state != "CUTTING_OVER":
        return blocked(f"wrong_state: {view.lifecycle_state} (finalize needs CUTTING_OVER)")
    if config.require_first_boot and view.first_boot != "SUCCEEDED":
        return blocked(f"first_boot: {view.first_boot or 'no launched instance'}")
    return Check(server, Decision.FINALIZE, None, view)


def apply_application_gate(checks: Sequence[Check]) -> list[Check]:
    """Block every `finalize` server of an application that has a blocked server."""
    first_blocked: dict[str, Check] = {}
    for check in checks:
        if check.decision is Decision.BLOCKED:
            first_blocked.setdefault(check.server.application_id, check)
    out = []
    for check in checks:
        culprit = first_blocked.get(check.server.application_id)
        if check.decision is Decision.FINALIZE and culprit is not None:
            reason = f"application_gate: {culprit.source_server_id} {culprit.reason}"
            check = replace(check, decision=Decision.BLOCKED, reason=reason)
        out.append(check)
    return out


Describe = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]
InstanceStatus = Callable[[Sequence[str]], Awaitable[dict[str, dict[str, str]]]]


async def read_views(server_ids: Sequence[str], describe: Describe) -> dict[str, ServerView]:
    """Describe the servers in batches of at most 200 IDs, the batches concurrently (the
    describe limiter still paces them)."""
    wanted = set(server_ids)
    pages = await asyncio.gather(
        *(describe(batch) for batch in chunks(server_ids, MAX_IDS_PER_DESCRIBE)),
        return_exceptions=True,
    )
    failures = [p for p in pages if isinstance(p, BaseException)]
    if failures:  # every batch has finished: raise the most telling failure
        raise next((f for f in failures if isinstance(f, AccountError)), failures[0])
    views: dict[str, ServerView] = {}
    for page in pages:
        assert not isinstance(page, BaseException)
        for item in page:
            view = parse_server(item)
            if view is not None and view.source_server_id in wanted:
                views[view.source_server_id] = view
    return views


async def check_instances(checks: Sequence[Check], status: InstanceStatus) -> list[Check]:
    """Block `finalize` servers whose cutover instance is not running with both checks ok."""
    candidates = [c for c in checks if c.decision is Decision.FINALIZE]
    by_instance = {
        c.view.ec2_instance_id: c for c in candidates if c.view and c.view.ec2_instance_id
    }
    seen: dict[str, dict[str, str]] = {}
    for batch in chunks(list(by_instance), MAX_IDS_PER_INSTANCE_STATUS):
        seen.update(await status(batch))
    verdicts: dict[str, str] = {}
    for check in candidates:
        instance_id = check.view.ec2_instance_id if check.view else None
        if instance_id is None:
            verdicts[check.source_server_id] = "instance_unhealthy: no launched instance"
            continue
        st = seen.get(instance_id)
        if st is None:
            verdicts[check.source_server_id] = (
                f"instance_unhealthy: EC2 does not know {instance_id}"
            )
        elif (st["state"], st["system"], st["instance"]) != ("running", "ok", "ok"):
            verdicts[check.source_server_id] = (
                f"instance_unhealthy: {instance_id} state={st['state']} "
                f"system_status={st['system']} instance_status={st['instance']}"
            )
    return [
        replace(c, decision=Decision.BLOCKED, reason=verdicts[c.source_server_id])
        if c.source_server_id in verdicts
        else c
        for c in checks
    ]


async def _verdicts(
    servers: Sequence[Server],
    views: dict[str, ServerView],
    config: Config,
    instance_status: InstanceStatus | None,
) -> list[Check]:
    checks = [decide(s, views.get(s.source_server_id), config) for s in servers]
    if config.verify_instances and instance_status is not None:
        checks = await check_instances(checks, instance_status)
    if config.application_gate:
        checks = apply_application_gate(checks)
    return checks


async def preflight_stream(
    wave: Wave,
    config: Config,
    describe: Describe,
    instance_status: InstanceStatus | None = None,
) -> AsyncIterator[list[Check]]:
    """The verdicts, application by application, as soon as each application is wholly read.

    Every 200-ID batch is read at once (the describe limiter paces them); batches are consumed
    in plan order, so the run can start finalizing the first applications while later ones are
    still being read. An application is never split: its gate sees all its servers.
    Raises MgnError/AccountError from the reads; nothing more is yielded after one.
    """
    servers = wave.servers
    ids = [s.source_server_id for s in servers]
    batches = chunks(ids, MAX_IDS_PER_DESCRIBE)
    reads = [asyncio.ensure_future(describe(batch)) for batch in batches]
    views: dict[str, ServerView] = {}
    app_ends = list(itertools.accumulate(len(a.servers) for a in wave.applications))
    emitted_apps = emitted_servers = 0
    try:
        for i, read in enumerate(reads):
            asked = set(batches[i])
            for item in await read:
                view = parse_server(item)
                if view is not None and view.source_server_id in asked:
                    views[view.source_server_id] = view
            known = min((i + 1) * MAX_IDS_PER_DESCRIBE, len(ids))
            ready = emitted_apps
            while ready < len(app_ends) and app_ends[ready] <= known:
                ready += 1
            if ready > emitted_apps:
                upto = app_ends[ready - 1]
                part = servers[emitted_servers:upto]
                emitted_apps, emitted_servers = ready, upto
                yield await _verdicts(part, views, config, instance_status)
    finally:
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)


async def preflight(
    wave: Wave,
    config: Config,
    describe: Describe,
    instance_status: InstanceStatus | None = None,
) -> list[Check]:
    """Every server of `wave` with its verdict. Raises MgnError/AccountError from the reads."""
    return [
        check
        async for part in preflight_stream(wave, config, describe, instance_status)
        for check in part
    ]


def counts(checks: Iterable[Check]) -> dict[str, int]:
    """How many servers got each decision, plus the total."""
    out = {d.value: 0 for d in Decision}
    total = 0
    for check in checks:
        out[check.decision.value] += 1
        total += 1
    return {"total": total, **out}
