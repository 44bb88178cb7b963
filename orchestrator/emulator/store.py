"""The emulator's data: accounts of source servers, applications and waves, with visibility lag.

Each server keeps its true current record and a queue of `(visible_at, record)` snapshots.
A change made at time t becomes visible to DescribeSourceServers at t + visibility_lag_s; until
then Describe shows the previous snapshot, while mutating calls check the true current record.
A launch job's effects on a server (its instance appearing, its first boot ending) are scheduled
events, applied lazily at the moment they were due whenever the server is next read; the jobs
themselves (jobs.py) are kept per account and computed from the clock when read. Times come from
the injected `clock` (monotonic seconds; fake in unit tests, or a `Clock` a test can advance)
and `wall` (epoch seconds, for the ISO dates in records).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.emulator.ec2 import Ec2
from orchestrator.emulator.errors import not_found
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.jobs import JobRecord

DEFAULT_ACCOUNT_ID = "111111111111"
_NEVER = float("-inf")
Change = Callable[[dict[str, Any]], dict[str, Any]]


class Clock:
    """The emulator's time: an injected clock plus an offset that tests move with advance()."""

    def __init__(
        self, base: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._base = base
        self._wall = wall
        self.offset_s = 0.0

    def __call__(self) -> float:
        return self._base() + self.offset_s

    def wall(self) -> float:
        """Epoch seconds, moved by advance() like the clock."""
        return self._wall() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass at once (never backwards)."""
        if seconds < 0:
            raise ValueError(f"the clock cannot go back ({seconds!r} s)")
        self.offset_s += seconds


@dataclass
class ServerRecord:
    """One source server: its true record, its snapshots, and what will happen to it."""

    current: dict[str, Any]
    history: deque[tuple[float, dict[str, Any]]]
    stuck: bool = False
    # Changes due at a clock time (a launched instance appearing, its first boot ending).
    events: list[tuple[float, Change]] = field(default_factory=list)
    # A slow server: its changes show in Describe this much later than the account's lag.
    slow_s: float = 0.0
    # The fixture's night settings: its own post-launch actions, forced launch/boot failures.
    actions: tuple[dict[str, Any], ...] | None = None
    launch_fails: bool = False
    boot_fails: bool = False
    # Every launch job holding this server never completes.
    stuck_job: bool = False
    # The job it is in, if any (active or not: jobs.py decides from the clock).
    job_id: str | None = None


@dataclass
class Account:
    """One AWS account's MGN data."""

    servers: dict[str, ServerRecord] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    waves: dict[str, dict[str, Any]] = field(default_factory=dict)
    # applicationID -> its servers' IDs (an ordered set), for Describe's applicationIDs filter.
    by_app: dict[str, dict[str, None]] = field(default_factory=dict)
    # Launch and terminate jobs, oldest first.
    jobs: dict[str, JobRecord] = field(default_factory=dict)


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
        # The night's dice (launch and boot durations and outcomes), apart from the IDs'.
        self.dice = random.Random(f"night:{seed}")
        self.accounts: dict[str, Account] = {}
        self.visibility_lag_s = 0.0
        self.faults = Faults()
        # (server_id, flagged stuck at seeding) -> whether FinalizeCutover never converges.
        self.is_stuck: Callable[[str, bool], bool] = lambda _sid, flagged: flagged
        # (job_id, server IDs) -> whether a new launch job never completes.
        self.is_stuck_job: Callable[[str, list[str]], bool] = lambda _jid, _sids: False
        # Launched instances go to EC2 (moto) when set; otherwise their IDs are invented.
        self.ec2: Ec2 | None = None

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
        slow_s: float = 0.0,
    ) -> ServerRecord:
        """Add or replace a server; it is visible immediately."""
        acct = self.account(account_id)
        sid = server["sourceServerID"]
        old = acct.servers.get(sid)
        if old is not None:
            old_app = old.current.get("applicationID")
            if old_app is not None:
                acct.by_app.get(old_app, {}).pop(sid, None)
        rec = acct.servers[sid] = ServerRecord(
            server, deque([(_NEVER, server)]), stuck, slow_s=slow_s
        )
        app = server.get("applicationID")
        if app is not None:
            acct.by_app.setdefault(app, {})[sid] = None
        return rec

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
        events = rec.events
        if not events or events[0][0] > self.clock():
            return
        now = self.clock()
        while events and events[0][0] <= now:
            due, change = events.pop(0)
            self.publish(rec, change(rec.current), at=due)

    def schedule(self, rec: ServerRecord, due: float, change: Change) -> None:
        """Apply `change` to the server's record at clock time `due` (lazily, when read)."""
        rec.events.append((due, change))
        rec.events.sort(key=lambda e: e[0])

    def active_job_of(self, account_id: str | None, rec: ServerRecord) -> JobRecord | None:
        """The not yet completed job the server is in, if any (one job per server at a time)."""
        if rec.job_id is None:
            return None
        job = self.account(account_id).jobs.get(rec.job_id)
        return job if job is not None and job.active(self.clock()) else None

    def active_jobs(self, account_id: str | None) -> list[JobRecord]:
        """The account's jobs that have not completed by now."""
        acct = self.accounts.get(account_id or DEFAULT_ACCOUNT_ID)
        if acct is None:
            return []
        now = self.clock()
        return [j for j in acct.jobs.values() if j.active(now)]

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
