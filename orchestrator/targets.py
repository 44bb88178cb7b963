"""One MGN client and Gateway per (account, region) of a wave: MGN's quotas are per account and
region, so each target gets its own rate limiters.

`Targets` offers what the run uses of a Gateway (describe, read, describe_cutover,
instance_status, preflight, and per server `writes`, `reads` and `client.finalize`), routing
each server to its application's target. A target that cannot be reached (a role that cannot be
assumed, an account the global view does not list, no profile for it) is blocked: pre-flight
reports each of its servers blocked with the reason, and the other targets go on. When no target
can be reached, pre-flight raises AccountError (exit 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import structlog

from orchestrator import access
from orchestrator.config import Config
from orchestrator.errors import AccountError, Diagnostic, RetryableError
from orchestrator.gateway import Gateway
from orchestrator.limiter import Clock, Sleep
from orchestrator.mgn import MgnClient
from orchestrator.outcome import ServerResult
from orchestrator.plan import Application, Server, Target, Wave
from orchestrator.preflight import Check, Decision, preflight_stream, read_views
from orchestrator.retry import Retrier
from orchestrator.stop import Stop, Stopped, StopReason
from orchestrator.views import ServerView

log = structlog.get_logger(__name__)


def resolved(config: Config, wave: Wave) -> dict[Target, tuple[str, ...]]:
    """Server IDs by their effective target: the plan's values, else the settings'."""
    found: dict[Target, list[str]] = {}
    for app in wave.applications:
        planned = wave.target_of(app)
        target = Target(planned.account_id or config.account_id, planned.region or config.region)
        found.setdefault(target, []).extend(app.server_ids)
    return {t: tuple(ids) for t, ids in found.items()}


def uncovered_accounts(config: Config, wave: Wave) -> list[Diagnostic]:
    """Plan accounts no access mode reaches with these settings, each where the plan names it."""
    found: list[Diagnostic] = []
    seen: set[tuple[str, int, int]] = set()
    for app in wave.applications:
        account = wave.target_of(app).account_id
        if account is None:
            continue
        why = access.uncovered(config, account)
        line, col = app.account_id_at if app.account_id else wave.account_id_at
        if why is None or (account, line, col) in seen:
            continue
        seen.add((account, line, col))
        origin = config.origin("account_access") or "account_access"
        message = f"accountID {account}: {why} (account_access from {origin})"
        found.append(Diagnostic(str(wave.source), line, col, message))
    return found


def status_wave(name: str, results: Sequence[ServerResult], server_ids: Sequence[str]) -> Wave:
    """A wave to read `server_ids` back with: each server in the (account, region) its last
    run reached it in (report rows carry them); the others where the settings say."""
    apps: dict[tuple[str, str | None, str | None], list[Server]] = {}
    placed = {r.source_server_id: r for r in results}
    for sid in server_ids:
        r = placed.get(sid)
        key = (r.application_id, r.account_id, r.region) if r else ("", None, None)
        apps.setdefault(key, []).append(Server(sid, key[0]))
    applications = tuple(
        Application(app_id, None, tuple(servers), account_id=account, region=region)
        for (app_id, account, region), servers in apps.items()
    )
    return Wave(name, applications)


class _Finalizer:
    """`client.finalize` as the pool calls it, sent through the server's own target."""

    def __init__(self, targets: Targets) -> None:
        self._targets = targets

    async def finalize(self, server_id: str) -> ServerView | None:
        return await self._targets.gateway_of(server_id).client.finalize(server_id)


@dataclass(frozen=True)
class Blocked:
    """A target that cannot be reached, and why."""

    target: Target
    reason: str


class Targets:
    """The wave's gateways by target; `async with` opens every client and closes them all."""

    def __init__(
        self,
        wave: Wave,
        config: Config,
        *,
        stop: Stop | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        endpoint_source: str | None = None,
    ) -> None:
        """`endpoint_source`: the setting MGN's endpoint came from, named in connection errors."""
        self.wave = wave
        self._endpoint_source = endpoint_source
        self.config = config
        self.stop = stop or Stop()
        self.client = _Finalizer(self)
        self._clock, self._sleep = clock, sleep
        self._servers = resolved(config, wave)
        self._target_of = {sid: t for t, ids in self._servers.items() for sid in ids}
        self.gateways: dict[Target, Gateway] = {}
        self.blocked: dict[Target, str] = {}
        # Each opened target's part of the run's stop: an account error mid-run stops only it.
        self._stops: dict[Target, Stop] = {}
        self._instances: dict[str, Target] = {}  # EC2 instance -> target, learned from reads
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Targets:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _open(self) -> None:
        pool = self.config.concurrency + 4
        routes = {t: access.route(self.config, t, pool=pool) for t in self._servers}
        sessions = access.Sessions()

        async def one(target: Target) -> None:
            route = routes[target]
            try:
                session = await access.open_session(route, self.config, self.wave.name, sessions)
                settings = route.settings
                if self._endpoint_source is not None:
                    settings = replace(settings, endpoint_source=self._endpoint_source)
                client = await self._stack.enter_async_context(MgnClient(settings, session=session))
            except AccountError as err:
                self._block(target, str(err))
                return
            self._stops[target] = self.stop.part(target)
            self.gateways[target] = Gateway(
                client, self.config, stop=self._stops[target], clock=self._clock, sleep=self._sleep
            )

        await asyncio.gather(*(one(t) for t in self._servers))
        await self._check_managed(routes)

    async def _check_managed(self, routes: dict[Target, access.Route]) -> None:
        """global-view: each account must be one ListManagedAccounts lists (asked once)."""
        viewed = [t for t, r in routes.items() if r.global_view and t in self.gateways]
        if not viewed:
            return
        asker = self.gateways[viewed[0]]
        try:
            # Retried as every read is: one 5xx at start must not refuse the night.
            managed = await asker.stop.guard(asker.reads.call(asker.client.managed_accounts))
        except (AccountError, RetryableError) as err:
            # Not an organization's manager (or not allowed to list), or retries exhausted:
            # each account's own reads then say whether it may be reached; a refusal blocks
            # that account only.
            log.warning("managed_accounts_unreadable", error_code=err.code, error=str(err))
            return
        for target in viewed:
            if target.account_id not in managed:
                why = (
                    f"global view: account {target.account_id} is not among the accounts "
                    "ListManagedAccounts lists"
                )
                self._block(target, why)

    def _block(self, target: Target, reason: str) -> None:
        log.error("target_blocked", account_id=target.account_id, region=target.region)
        self.gateways.pop(target, None)
        self.blocked[target] = reason

    # --- routing ----------------------------------------------------------------------------

    def target_of(self, server_id: str) -> Target | None:
        return self._target_of.get(server_id)

    def stop_of(self, server_id: str) -> Stop:
        """The stop that governs the server: its target's part, or the run's."""
        target = self._target_of.get(server_id)
        return self._stops.get(target, self.stop) if target is not None else self.stop

    def _failure(self, target: Target) -> str | None:
        """Why an account error stopped the target mid-run, or None."""
        part = self._stops.get(target)
        return part.failure if part is not None else None

    def gateway_of(self, server_id: str) -> Gateway:
        """The gateway of the server's target. Raises AccountError when that target is blocked."""
        target = self._target_of.get(server_id)
        gateway = self.gateways.get(target) if target is not None else None
        if gateway is None:
            why = self.blocked.get(target) if target is not None else None
            raise AccountError("TargetBlocked", why or f"{server_id} is in no planned target")
        return gateway

    def writes(self, server_id: str) -> Retrier:
        """FinalizeCutover's retrier (and limiter) for the server's target."""
        return self.gateway_of(server_id).writes

    def reads(self, server_id: str) -> Retrier:
        return self.gateway_of(server_id).reads

    def _split(self, server_ids: Sequence[str], *, failed: bool = False) -> dict[Target, list[str]]:
        """The servers by reachable target; those of targets an account error stopped only
        with `failed`."""
        groups: dict[Target, list[str]] = {}
        for sid in server_ids:
            target = self._target_of.get(sid)
            if target is None or target not in self.gateways:
                continue
            if failed or self._failure(target) is None:
                groups.setdefault(target, []).append(sid)
        return groups

    async def describe(
        self, server_ids: Sequence[str], states: Sequence[str] = ()
    ) -> list[ServerView]:
        """DescribeSourceServers through each server's target (servers of blocked targets and
        unplanned IDs are left out).

        Raises AccountError (TargetStopped) when one of the servers' targets was stopped by an
        account error: nothing more is read there.
        """
        groups = self._split(server_ids, failed=True)
        for target in groups:
            failure = self._failure(target)
            if failure is not None:
                raise AccountError("TargetStopped", f"{target}: {failure}")
        answers = await asyncio.gather(
            *(self.gateways[t].describe(ids, states) for t, ids in groups.items())
        )
        views: list[ServerView] = []
        for target, found in zip(groups, answers, strict=True):
            for view in found:
                if view.ec2_instance_id is not None:
                    self._instances[view.ec2_instance_id] = target
            views.extend(found)
        return views

    async def describe_cutover(self, server_ids: Sequence[str]) -> list[ServerView]:
        return await self.describe(server_ids, ("CUTOVER",))

    async def read(self, server_ids: Sequence[str]) -> dict[str, ServerView]:
        """MGN's view of any number of servers, 200 per call per target, concurrently. An
        account error stops that target only (its servers are left out); Stopped when the run
        halts."""
        groups = self._split(server_ids)

        async def one(target: Target, ids: list[str]) -> dict[str, ServerView]:
            try:
                return await read_views(ids, self.describe)
            except AccountError as err:
                self._stops[target].request(StopReason.ACCOUNT, str(err))
            except Stopped:
                if self.stop.halted:
                    raise
            return {}  # this target stopped meanwhile

        found: dict[str, ServerView] = {}
        for views in await asyncio.gather(*(one(t, ids) for t, ids in groups.items())):
            found.update(views)
        return found

    async def instance_status(self, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """EC2 status through the target whose server launched each instance."""
        groups: dict[Target, list[str]] = {}
        for instance_id in instance_ids:
            target = self._instances.get(instance_id)
            if target is not None and target in self.gateways and not self._failure(target):
                groups.setdefault(target, []).append(instance_id)
        answers = await asyncio.gather(
            *(self.gateways[t].instance_status(ids) for t, ids in groups.items())
        )
        found: dict[str, dict[str, str]] = {}
        for answer in answers:
            found.update(answer)
        return found

    async def preflight(
        self, wave: Wave, config: Config, busy: dict[str, str] | None = None
    ) -> AsyncIterator[list[Check]]:
        """Pre-flight of `wave` (the whole wave or a part of it), target by target; servers of
        blocked targets come back BLOCKED with the reason.

        Raises AccountError when no target of the wave can be reached.
        """
        mine = {s.source_server_id for s in wave.servers}
        if self.blocked and not self.gateways:
            reasons = "; ".join(f"{t}: {why}" for t, why in self.blocked.items())
            raise AccountError("NoTargetReachable", f"no account of the wave can run: {reasons}")
        for target, why in self.blocked.items():
            checks = [
                Check(s, Decision.BLOCKED, f"account_access: {why}", None)
                for s in wave.servers
                if self._target_of.get(s.source_server_id) == target and s.source_server_id in mine
            ]
            if checks:
                yield checks
        mine_by_target: dict[Target, set[str]] = {}
        for sid in mine:  # one pass: this is on the way to the run's first FinalizeCutover
            where = self._target_of.get(sid)
            if where is not None:
                mine_by_target.setdefault(where, set()).add(sid)
        parts = {target: _part(wave, mine_by_target.get(target, set())) for target in self.gateways}
        alone = sum(1 for p in parts.values() if p.applications) == 1
        streams = [
            self._stream(t, p, config, busy or {}, alone=alone)
            for t, p in parts.items()
            if p.applications
        ]
        async for checks in _merged(streams):
            yield checks
        if self.blocked and not self.gateways:  # every account refused its reads
            reasons = "; ".join(f"{t}: {why}" for t, why in self.blocked.items())
            raise AccountError("NoTargetReachable", f"no account of the wave can run: {reasons}")

    async def _stream(
        self, target: Target, part: Wave, config: Config, busy: dict[str, str], *, alone: bool
    ) -> AsyncIterator[list[Check]]:
        """One target's pre-flight; an account-wide refusal blocks the rest of its servers
        (and the target: nothing more is sent there), not the other targets. Raises it when no
        other target is left. Reads whose retries ran out block the rest of this target's
        servers only (what it already read goes on); `alone` (no other target streams), the
        RetryableError is raised: the run's pre-flight failed."""
        seen: set[str] = set()
        try:
            async for checks in preflight_stream(
                part, config, self.describe, self.instance_status, busy
            ):
                seen.update(c.source_server_id for c in checks)
                yield checks
        except (Stopped, AccountError) as err:
            # An account error that stopped this target elsewhere (its part's failure: the
            # reads were cancelled, or refused as TargetStopped), or one its own reads met.
            failure = None if self.stop.halted else self._failure(target)
            if failure is None and not isinstance(err, AccountError):
                raise
            cause = failure or str(err)
            self._block(target, cause)
            if isinstance(err, AccountError) and not self.gateways:
                raise  # no account left to run: the wave stops (exit 4)
            why = f"account_access: {target}: account error: {cause}"
        except RetryableError as err:
            if alone or self.stop.halted:
                raise
            log.warning(
                "target_preflight_failed",
                account_id=target.account_id,
                region=target.region,
                error_code=err.code,
                error=err.message,
            )
            why = (
                f"retries_exhausted: {target}: MGN could not be read ({err.code}: "
                f"{err.message}); this (account, region) only, rerun the wave"
            )
        else:
            return
        rest = [
            Check(s, Decision.BLOCKED, why, None)
            for s in part.servers
            if s.source_server_id not in seen
        ]
        if rest:
            yield rest


async def _merged(streams: Sequence[AsyncIterator[list[Check]]]) -> AsyncIterator[list[Check]]:
    """The items of every stream as they come, the streams read concurrently; the first error
    of any stream is raised (and the others cancelled)."""
    queue: asyncio.Queue[tuple[int, list[Check] | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[list[Check]]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001  # handed to the reader, who raises it
            await queue.put((index, err))
        else:
            await queue.put((index, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            _, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _part(wave: Wave, server_ids: set[str]) -> Wave:
    """The wave's applications whose servers are all in `server_ids` (empty ones left out)."""
    apps = tuple(
        a
        for a in wave.applications
        if a.servers and all(s.source_server_id in server_ids for s in a.servers)
    )
    return replace(wave, applications=apps)


def by_target(gateway: Gateway | Targets) -> dict[Target | None, Gateway]:
    """Each (account, region)'s gateway; a lone Gateway is keyed None."""
    if isinstance(gateway, Targets):
        return {target: gw for target, gw in gateway.gateways.items()}
    return {None: gateway}


def target_in(gateway: Gateway | Targets, server_id: str) -> Target | None:
    """The (account, region) a server is reached in (None with a lone Gateway)."""
    return gateway.target_of(server_id) if isinstance(gateway, Targets) else None


def gateway_for(gateway: Gateway | Targets, server_id: str) -> Gateway:
    """The gateway a server is reached through."""
    return gateway.gateway_of(server_id) if isinstance(gateway, Targets) else gateway
