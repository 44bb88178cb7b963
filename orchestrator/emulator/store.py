"""The emulator's data: accounts of source servers, applications and waves, with visibility lag.

Each server keeps its true current record and a queue of `(visible_at, record)` snapshots.
A change made at time t becomes visible to DescribeSourceServers at t + visibility_lag_s; until
then Describe shows the previous snapshot, while mutating calls check the true current record.
A launched instance's first boot (WAITING -> SUCCEEDED) is applied lazily, at the moment it was
due, whenever the server is next read. Times come from the injected `clock` (monotonic seconds;
fake in unit tests) and `wall` (epoch seconds, for the ISO dates in records).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.emulator import state
from orchestrator.emulator.errors import not_found

DEFAULT_ACCOUNT_ID = "111111111111"
_NEVER = float("-inf")


@dataclass
class ServerRecord:
    """One source server: its true record, its snapshots, and what will happen to it."""

    current: dict[str, Any]
    history: deque[tuple[float, dict[str, Any]]]
    stuck: bool = False
    # Clock time at which a WAITING launched instance's first boot succeeds.
    boot_at: float | None = None
    # A slow server: its changes show in Describe this much later than the account's lag.
    slow_s: float = 0.0


@dataclass
class Account:
    """One AWS account's MGN data."""

    servers: dict[str, ServerRecord] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    waves: dict[str, dict[str, Any]] = field(default_factory=dict)
    # applicationID -> its servers' IDs (an ordered set), for Describe's applicationIDs filter.
    by_app: dict[str, dict[str, None]] = field(default_factory=dict)


class Store:
    """All accounts' data plus the clocks, random IDs and timing the state machine uses."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.rng = random.Random(seed)
        self.accounts: dict[str, Account] = {}
        self.visibility_lag_s = 0.0
        self.first_boot_delay_s = 0.0
        # (server_id, flagged stuck at seeding) -> whether FinalizeCutover never converges.
        self.is_stuck: Callable[[str, bool], bool] = lambda _sid, flagged: flagged

    def new_id(self, prefix: str, hex_digits: int = 17) -> str:
        """A random ID such as `s-` + 17 lowercase hex digits, deterministic for the seed."""
        return f"{prefix}{self.rng.getrandbits(4 * hex_digits):0{hex_digits}x}"

    def account(self, account_id: str | None) -> Account:
        """The account's data (the default account when None), created empty on first use."""
        key = account_id or DEFAULT_ACCOUNT_ID
        found = self.accounts.get(key)
        if found is None:
            found = self.accounts[key] = Account()
        return found

    def clear(self) -> None:
        """Forget every account's data."""
        self.accounts.clear()

    # -- seeding (visible at once, no lag) ---------------------------------------------------

    def put_server(
        self,
        account_id: str | None,
        server: dict[str, Any],
        *,
        stuck: bool = False,
        boot_at: float | None = None,
        slow_s: float = 0.0,
    ) -> None:
        """Add or replace a server; it is visible immediately."""
        acct = self.account(account_id)
        sid = server["sourceServerID"]
        old = acct.servers.get(sid)
        if old is not None:
            old_app = old.current.get("applicationID")
            if old_app is not None:
                acct.by_app.get(old_app, {}).pop(sid, None)
        acct.servers[sid] = ServerRecord(
            server, deque([(_NEVER, server)]), stuck, boot_at, slow_s
        )
        app = server.get("applicationID")
        if app is not None:
            acct.by_app.setdefault(app, {})[sid] = None

    def put_application(self, account_id: str | None, application: dict[str, Any]) -> None:
        """Add or replace an MGN application record."""
        self.account(account_id).applications[application["applicationID"]] = application

    def put_wave(self, account_id: str | None, wave: dict[str, Any]) -> None:
        """Add or replace an MGN wave record."""
        self.account(account_id).waves[wave["waveID"]] = wave

    # -- reading and changing servers ---------------------------------------------------------

    def record(self, account_id: str | None, server_id: str) -> ServerRecord:
        """The server's record, brought up to date; ResourceNotFoundException when unknown."""
        acct = self.accounts.get(account_id or DEFAULT_ACCOUNT_ID)
        rec = None if acct is None else acct.servers.get(server_id)
        if rec is None:
            raise not_found(server_id)
        self._advance(rec)
        return rec

    def publish(self, rec: ServerRecord, new: dict[str, Any], at: float | None = None) -> None:
        """Make `new` the true record now; Describe sees it after the visibility lag."""
        when = self.clock() if at is None else at
        rec.current = new
        lag = self.visibility_lag_s + rec.slow_s
        if lag <= 0 and at is None:
            rec.history.clear()
            rec.history.append((_NEVER, new))
        else:
            rec.history.append((when + lag, new))

    def visible(self, rec: ServerRecord) -> dict[str, Any]:
        """The snapshot DescribeSourceServers shows now."""
        self._advance(rec)
        history = rec.history
        if len(history) > 1:
            now = self.clock()
            while len(history) > 1 and history[1][0] <= now:
                history.popleft()
        return history[0][1]

    def _advance(self, rec: ServerRecord) -> None:
        if rec.boot_at is not None and rec.boot_at <= self.clock():
            due = rec.boot_at
            rec.boot_at = None
            if rec.current.get("launchedInstance", {}).get("firstBoot") == "WAITING":
                self.publish(rec, state.booted(rec.current), at=due)

    def schedule_boot(self, rec: ServerRecord) -> None:
        """Let the launched instance's first boot succeed after first_boot_delay_s."""
        rec.boot_at = self.clock() + self.first_boot_delay_s

    def servers(self, account_id: str | None) -> list[dict[str, Any]]:
        """Every server's true current record in the account."""
        acct = self.accounts.get(account_id or DEFAULT_ACCOUNT_ID)
        if acct is None:
            return []
        out = []
        for rec in acct.servers.values():
            self._advance(rec)
            out.append(rec.current)
        return out

    def visible_in(
        self,
        account_id: str | None,
        server_ids: Iterable[str] | None = None,
        application_ids: Iterable[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Visible snapshots, narrowed by IDs (in the order given) or applications (cheaply)."""
        acct = self.accounts.get(account_id or DEFAULT_ACCOUNT_ID)
        if acct is None:
            return
        if server_ids is not None:
            records: Iterable[ServerRecord | None] = (
                acct.servers.get(s) for s in dict.fromkeys(server_ids)
            )
        elif application_ids is not None:
            records = (
                acct.servers.get(s)
                for a in dict.fromkeys(application_ids)
                for s in acct.by_app.get(a, {})
            )
        else:
            records = acct.servers.values()
        for rec in records:
            if rec is not None:
                yield self.visible(rec)
