"""Rate-limited, retried MGN reads and the limiters a run shares; one per (account, region).

The finalize pool paces its own FinalizeCutover calls with `finalize_limiter`; every read goes
through `describe_limiter` here, with the same retry rules.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from orchestrator.config import Config
from orchestrator.errors import RequestRejectedError
from orchestrator.limiter import Clock, RateLimiter, Sleep
from orchestrator.mgn import ClientSettings, MgnClient
from orchestrator.preflight import ServerView, parse_server
from orchestrator.retry import RetryPolicy, call_with_retries


def client_settings(config: Config, account_id: str | None, region: str | None) -> ClientSettings:
    """Client settings for one (account, region), its pool sized to the concurrency."""
    return ClientSettings(
        region=region or config.region,
        profile=config.profile,
        endpoint_url=config.endpoint_url,
        account_id=account_id or config.account_id,
        max_pool_connections=config.concurrency + 4,
    )


class Gateway:
    """MGN reads under the describe limiter with our retry policy."""

    def __init__(
        self,
        client: MgnClient,
        config: Config,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(
            max_attempts=config.max_attempts, deadline_s=config.server_deadline_s
        )
        self.finalize_limiter = RateLimiter(config.finalize_rate, clock=clock, sleep=sleep)
        self.describe_limiter = RateLimiter(
            config.describe_rate, burst=max(1, int(config.describe_rate)), clock=clock, sleep=sleep
        )

    async def _retried(self, call: Any) -> Any:
        return await call_with_retries(
            call,
            policy=self.policy,
            limiter=self.describe_limiter,
            sleep=self.sleep,
            clock=self.clock,
            rng=self.rng,
        )

    async def describe(self, server_ids: Sequence[str]) -> list[dict[str, Any]]:
        """DescribeSourceServers for at most 200 IDs, retried."""
        items: list[dict[str, Any]] = await self._retried(lambda: self.client.describe(server_ids))
        return items

    async def describe_cutover(self, server_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Only those of the (at most 200) servers MGN shows CUTOVER, retried.

        The reconciler's poll: servers still finalizing are left out of the answer, so each
        poll costs ceil(pending/200) small calls instead of re-reading every record.
        """
        items: list[dict[str, Any]] = await self._retried(
            lambda: self.client.describe(server_ids, states=("CUTOVER",))
        )
        return items

    async def describe_one(self, server_id: str) -> ServerView | None:
        """MGN's current view of one server (one attempt: the caller retries)."""
        for item in await self.client.describe([server_id]):
            view = parse_server(item)
            if view is not None and view.source_server_id == server_id:
                return view
        return None

    async def instance_status(self, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """EC2 status of the instances; ones EC2 does not know are left out."""
        try:
            found: dict[str, dict[str, str]] = await self._retried(
                lambda: self.client.instance_status(instance_ids)
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
