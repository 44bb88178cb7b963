"""Rate-limited, retried, stoppable MGN reads and the limiters a run shares; one per (account,
region).

The finalize pool paces its FinalizeCutover calls with `finalize_limiter` (through `writes`);
every read goes through `describe_limiter` (through `reads`), with the same retry policy, and
is abandoned at once when the run halts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence

from orchestrator.config import Config
from orchestrator.errors import RequestRejectedError
from orchestrator.limiter import Clock, RateLimiter, Sleep
from orchestrator.mgn import ClientSettings, MgnClient
from orchestrator.plan import Wave
from orchestrator.preflight import Check, preflight_stream, read_views
from orchestrator.retry import Retrier, RetryPolicy
from orchestrator.stop import Stop
from orchestrator.views import CUTOVER, ServerView


def client_settings(config: Config, account_id: str | None, region: str | None) -> ClientSettings:
    """Client settings for one (account, region), its pool sized to the concurrency."""
    return ClientSettings(
        region=region or config.region,
        profile=config.profile,
        endpoint_url=config.endpoint_url,
        account_id=account_id or config.account_id,
        max_pool_connections=config.concurrency + 4,
    )


def read_retrier(config: Config) -> Retrier:
    """The retry setup of a command's MGN reads outside a run's gateway (`import`,
    `export-plan --all-accounts`): the run's policy (full-jitter backoff, `max_attempts`,
    `Retry-After` honoured) under the describe rate, so one 5xx does not end the command."""
    limiter = RateLimiter(config.describe_rate, burst=max(1, int(config.describe_rate)))
    policy = RetryPolicy(max_attempts=config.max_attempts, deadline_s=config.server_deadline_s)
    return Retrier(policy, limiter)


class Gateway:
    """MGN reads under the describe limiter with our retry policy; stoppable."""

    def __init__(
        self,
        client: MgnClient,
        config: Config,
        *,
        stop: Stop | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.stop = stop or Stop()
        self.finalize_limiter = RateLimiter(config.finalize_rate, clock=clock, sleep=sleep)
        self.describe_limiter = RateLimiter(
            config.describe_rate, burst=max(1, int(config.describe_rate)), clock=clock, sleep=sleep
        )
        self.reads = Retrier(
            RetryPolicy(max_attempts=config.max_attempts, deadline_s=config.server_deadline_s),
            self.describe_limiter,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),
        )
        # FinalizeCutover: same policy, its own limiter; stops sending once the run stops.
        self.writes = self.reads.copy(
            limiter=self.finalize_limiter, should_stop=lambda: self.stop.sends_stopped
        )

    def stop_of(self, server_id: str) -> Stop:
        """The stop that governs a server reached through this gateway: its own."""
        del server_id
        return self.stop

    async def describe(
        self, server_ids: Sequence[str], states: Sequence[str] = ()
    ) -> list[ServerView]:
        """DescribeSourceServers for at most 200 IDs (only those in `states`, if given),
        retried; raises Stopped when the run halts first."""
        return await self.stop.guard(
            self.reads.call(lambda: self.client.describe(server_ids, states))
        )

    async def read(self, server_ids: Sequence[str]) -> dict[str, ServerView]:
        """MGN's view of any number of servers, 200 per call, the calls concurrently."""
        return await read_views(server_ids, self.describe)

    def preflight(
        self, wave: Wave, config: Config, busy: dict[str, str] | None = None
    ) -> AsyncIterator[list[Check]]:
        """Pre-flight of `wave` through this gateway (`preflight.preflight_stream`); `busy`:
        servers in launch jobs still running (`--launch`)."""
        return preflight_stream(wave, config, self.describe, self.instance_status, busy)

    async def describe_cutover(self, server_ids: Sequence[str]) -> list[ServerView]:
        """Only those of the (at most 200) servers MGN shows CUTOVER: the reconciler's poll,
        so each costs ceil(pending/200) small calls instead of re-reading every record."""
        return await self.describe(server_ids, (CUTOVER,))

    async def instance_status(self, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """EC2 status of the instances; ones EC2 does not know are left out."""
        try:
            found: dict[str, dict[str, str]] = await self.stop.guard(
                self.reads.call(lambda: self.client.instance_status(instance_ids))
            )
            return found
        except RequestRejectedError as err:
            if not err.code.startswith("InvalidInstanceID") or len(instance_ids) == 1:
                if err.code.startswith("InvalidInstanceID"):
                    return {}
                raise
        # One unknown ID fails the whole batch: ask one by one to find the good ones.
        result: dict[str, dict[str, str]] = {}
        for instance_id in instance_ids:
            result.update(await self.instance_status([instance_id]))
        return result
