"""Pre-flight: what MGN's view of each server says about finalizing it. Reads only.

A server is `finalize` only if it exists, is not archived, belongs to the plan's application (when
MGN names one), is CUTTING_OVER and (unless disabled) its cutover instance's first boot SUCCEEDED;
one MGN shows CUTOVER + DISCONNECTED is `already_cutover` whatever else it shows. These verdicts
are events for the ledger (`orchestrator.ledger`), which applies the journal and the application
gate and decides each server's fate.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from orchestrator.config import Config
from orchestrator.errors import AccountError
from orchestrator.mgn import MAX_IDS_PER_DESCRIBE, MAX_IDS_PER_INSTANCE_STATUS, chunks
from orchestrator.plan import Server, Wave
from orchestrator.views import CUTOVER, CUTTING_OVER, READY_FOR_CUTOVER, SUCCEEDED, ServerView


class Decision(StrEnum):
    """What a run would do to a server."""

    FINALIZE = "finalize"
    ALREADY_CUTOVER = "already_cutover"
    BLOCKED = "blocked"
    LAUNCH = "launch"  # `run --launch`: READY_FOR_CUTOVER and healthy
    WATCH = "watch"  # `run --launch`: already CUTTING_OVER (a rerun): watched, never relaunched


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
    if view.converged:
        # Done, whatever else MGN shows (archived, another application): never sent again.
        notes = []
        if view.archived:
            notes.append("archived")
        if view.application_id is not None and view.application_id != server.application_id:
            notes.append(
                f"MGN has it in {view.application_id}, the plan in {server.application_id}"
            )
        return Check(server, Decision.ALREADY_CUTOVER, "; ".join(notes) or None, view)
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
    if view.lifecycle_state == CUTOVER:
        return Check(
            server,
            Decision.ALREADY_CUTOVER,
            f"replication not yet DISCONNECTED ({view.replication_state})",
            view,
        )
    if view.lifecycle_state != CUTTING_OVER:
        return blocked(f"wrong_state: {view.lifecycle_state} (finalize needs CUTTING_OVER)")
    if config.require_first_boot and view.first_boot != SUCCEEDED:
        return blocked(f"first_boot: {view.first_boot or 'no launched instance'}")
    return Check(server, Decision.FINALIZE, None, view)


def decide_launch(
    server: Server, view: ServerView | None, config: Config, busy: dict[str, str]
) -> Check:
    """The launch verdict for one server (`run --launch`), before the application gate.

    `busy`: servers in a launch job that is still running, with the job's ID.
    """

    def blocked(reason: str) -> Check:
        return Check(server, Decision.BLOCKED, reason, view)

    if view is None or view.converged or view.lifecycle_state == CUTOVER:
        return decide(server, view, config)
    if view.problem is not None:
        return blocked(f"unknown_state: {view.problem}")
    if view.archived is not False:
        return decide(server, view, config)
    if view.application_id is not None and view.application_id != server.application_id:
        return decide(server, view, config)
    if view.lifecycle_state == CUTTING_OVER:
        why = "already launched: watched, never launched again"
        return Check(server, Decision.WATCH, why, view)
    if view.lifecycle_state != READY_FOR_CUTOVER:
        return blocked(f"wrong_state: {view.lifecycle_state} (launch needs READY_FOR_CUTOVER)")
    if view.replication_error is not None:
        return blocked(f"replication_error: {view.replication_error}")
    if view.replication_state != "CONTINUOUS":
        return blocked(f"replication: {view.replication_state} (launch needs CONTINUOUS)")
    if view.lag_s is None:
        return blocked("replication: no lagDuration (not replicating)")
    if view.lag_s > config.max_replication_lag_s:
        return blocked(
            f"replication_lag: {view.lag_s:g}s (at most {config.max_replication_lag_s:g}s)"
        )
    if server.source_server_id in busy:
        return blocked(f"busy: launch job {busy[server.source_server_id]} is still running")
    return Check(server, Decision.LAUNCH, None, view)


Describe = Callable[[Sequence[str]], Awaitable[list[ServerView]]]
InstanceStatus = Callable[[Sequence[str]], Awaitable[dict[str, dict[str, str]]]]


async def read_views(server_ids: Sequence[str], describe: Describe) -> dict[str, ServerView]:
    """Describe the servers in batches of at most 200 IDs, the batches concurrently (the
    describe limiter still paces them). Raises the most telling failure once all are done."""
    pages = await asyncio.gather(
        *(describe(batch) for batch in chunks(server_ids, MAX_IDS_PER_DESCRIBE)),
        return_exceptions=True,
    )
    failures = [p for p in pages if isinstance(p, BaseException)]
    if failures:
        raise next((f for f in failures if isinstance(f, AccountError)), failures[0])
    return {v.source_server_id: v for page in pages if isinstance(page, list) for v in page}


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
    busy: dict[str, str],
) -> list[Check]:
    if config.launch:
        return [decide_launch(s, views.get(s.source_server_id), config, busy) for s in servers]
    checks = [decide(s, views.get(s.source_server_id), config) for s in servers]
    if config.verify_instances and instance_status is not None:
        checks = await check_instances(checks, instance_status)
    return checks


async def preflight_stream(
    wave: Wave,
    config: Config,
    describe: Describe,
    instance_status: InstanceStatus | None = None,
    busy: dict[str, str] | None = None,
) -> AsyncIterator[list[Check]]:
    """The verdicts, application by application, as soon as each application is wholly read.

    N servers are read in ceil(N/200) DescribeSourceServers calls, as MGN's paging allows
    (issue 21: no smaller first pages): the first page of 200 IDs alone, then the rest at once
    once it is in (the describe limiter paces them), so the first applications are finalizing
    while later pages are still being read. Batches are consumed in plan order. An application
    is never split: the ledger's gate sees all its servers. Raises MgnError/AccountError from
    the reads; nothing more is yielded after one.
    """
    servers = wave.servers
    ids = [s.source_server_id for s in servers]
    app_ends = list(itertools.accumulate(len(a.servers) for a in wave.applications))
    batches = chunks(ids, MAX_IDS_PER_DESCRIBE)
    staged = 1  # the first page is asked for alone; the rest once it is in
    batch_ends = list(itertools.accumulate(len(batch) for batch in batches))
    reads = [asyncio.ensure_future(describe(batch)) for batch in batches[:1]]
    views: dict[str, ServerView] = {}
    emitted_apps = emitted_servers = 0
    try:
        for i, known in enumerate(batch_ends):
            page = await reads[i]
            if i < staged:  # the next batch once this one is in; the rest after the last staged
                more = batches[i + 1 : i + 2] if i + 1 < staged else batches[staged:]
                reads += [asyncio.ensure_future(describe(batch)) for batch in more]
            for view in page:
                views[view.source_server_id] = view
            ready = emitted_apps
            while ready < len(app_ends) and app_ends[ready] <= known:
                ready += 1
            if ready > emitted_apps:
                upto = app_ends[ready - 1]
                part = servers[emitted_servers:upto]
                emitted_apps, emitted_servers = ready, upto
                yield await _verdicts(part, views, config, instance_status, busy or {})
    finally:
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
