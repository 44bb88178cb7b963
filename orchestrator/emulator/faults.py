"""Fault injection: what can go wrong per run (`Faults`) and the seeded dice that decide it.

Per request, in this order (see engine.py): latency, AccessDeniedException (403: `access_denied`
for every call, or `denied_after` an account's first N calls, as when its credentials expire
mid-run), quota (429
ThrottlingException), injected InternalServerException (500: `fail_first` an operation's first
N calls, then `error_rate`), validation,
UninitializedAccountException (400), then a dropped connection. A drop on a read, or a drop chosen
"before apply" on a mutating operation, closes the connection before anything changes; a drop
chosen "after apply" (probability `drop_after_apply` among drops of mutating calls) applies the
change and then loses the response, as a real network can.

The cutover night's settings live here too (time_scale, launch/boot/action durations, failure
rates, stuck jobs, default post-launch actions, job quotas): jobs.py explains how a launch job
uses them. Durations are (min, max) emulated seconds, drawn uniformly.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from orchestrator.emulator.errors import FaultsError
from orchestrator.emulator.jobs import check_actions
from orchestrator.emulator.model import OPERATIONS

Range = tuple[float, float]
RATES = (
    "error_rate",
    "drop_rate",
    "drop_after_apply",
    "stuck_rate",
    "launch_failure_rate",
    "boot_failure_rate",
    "action_failure_rate",
    "stuck_job_rate",
)
RANGES = ("launch_s", "boot_s", "action_s")


def _frozen_map(value: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Faults:
    """What can go wrong in one run. Rates are probabilities in [0, 1]; times in seconds or ms."""

    # Requests per second per operation; the bucket holds max(1, rate) tokens (one second's worth).
    quota_per_s: Mapping[str, float] = field(default_factory=lambda: _frozen_map({}))
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_retry_after_s: int = 1
    drop_rate: float = 0.0
    drop_after_apply: float = 0.5
    # Operations that latency, error_rate and drop_rate apply to; None means every operation.
    fault_ops: frozenset[str] | None = None
    visibility_lag_s: float = 0.0
    stuck: frozenset[str] = frozenset()
    stuck_rate: float = 0.0
    # Older name for a fixed first-boot duration; used when boot_s is (0, 0).
    first_boot_delay_s: float = 0.0
    uninitialized: bool = False
    access_denied: bool = False
    # accountID -> how many of its calls are answered before every later one is denied
    # (AccessDeniedException), as when that account's credentials expire mid-run.
    denied_after: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # operation -> how many of its first calls (since fail_first was set) answer 500
    # InternalServerException: a transient error at start, e.g. {"ListManagedAccounts": 1};
    # "OPERATION@ACCOUNTID" counts that account's calls of the operation only.
    fail_first: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # The cutover night (jobs.py): emulated seconds per clock second, durations, outcomes.
    time_scale: float = 1.0
    launch_s: Range = (0.0, 0.0)
    boot_s: Range = (0.0, 0.0)
    action_s: Range = (0.0, 0.0)
    launch_failure_rate: float = 0.0
    boot_failure_rate: float = 0.0
    action_failure_rate: float = 0.0
    # Launch jobs holding one of these servers, or drawn at stuck_job_rate, never complete.
    stuck_job_servers: frozenset[str] = frozenset()
    stuck_job_rate: float = 0.0
    # Post-launch actions of servers whose fixture lists none (jobs.ACTION_KEYS).
    post_launch_actions: tuple[Mapping[str, Any], ...] = ()
    # Job quotas per account and region, as MGN publishes them.
    max_active_jobs: int = 20
    max_active_job_servers: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.quota_per_s, MappingProxyType):
            object.__setattr__(self, "quota_per_s", _frozen_map(self.quota_per_s))
        for name in RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultsError(f"faults: {name} must be within [0, 1], got {value!r}")
        for op, rate in self.quota_per_s.items():
            _check_operation(op, "quota")
            if rate <= 0:
                raise FaultsError(f"faults: quota for {op} must be positive, got {rate!r}")
        for op in self.fault_ops or ():
            _check_operation(op, "fault_ops")
        object.__setattr__(self, "denied_after", _denied_after(self.denied_after))
        object.__setattr__(self, "fail_first", _fail_first(self.fail_first))
        for name in RANGES:
            object.__setattr__(self, name, _range(name, getattr(self, name)))
        if not self.time_scale > 0:
            raise FaultsError(f"faults: time_scale must be positive, got {self.time_scale!r}")
        if self.max_active_jobs < 1 or self.max_active_job_servers < 1:
            raise FaultsError("faults: max_active_jobs and max_active_job_servers must be >= 1")
        problems = check_actions(list(self.post_launch_actions), "post_launch_actions")
        if problems:
            raise FaultsError("faults: " + "; ".join(problems))
        object.__setattr__(
            self,
            "post_launch_actions",
            tuple(MappingProxyType(dict(a)) for a in self.post_launch_actions),
        )

    def boot_range(self) -> Range:
        """The first-boot duration range (boot_s, or first_boot_delay_s when boot_s is unset)."""
        if self.boot_s == (0.0, 0.0):
            return (self.first_boot_delay_s, self.first_boot_delay_s)
        return self.boot_s

    def applies_to(self, op: str) -> bool:
        """Whether latency, injected errors and drops apply to `op`."""
        return self.fault_ops is None or op in self.fault_ops

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied; JSON-friendly values (lists, dicts) are converted."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultsError(f"faults: unknown field(s) {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("stuck", "fault_ops", "stuck_job_servers") and value is not None:
                value = frozenset(value)
            elif name == "post_launch_actions":
                value = tuple(value)
            elif name == "quota_per_s":
                value = _frozen_map({str(k): float(v) for k, v in dict(value).items()})
            elif name in ("denied_after", "fail_first") and isinstance(value, Mapping):
                value = MappingProxyType(dict(value))
            converted[name] = value
        return replace(self, **converted)

    def to_json(self) -> dict[str, Any]:
        """The faults as plain JSON values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = [dict(v) if isinstance(v, Mapping) else v for v in value]
            out[f.name] = value
        return out


def _check_operation(op: str, what: str) -> None:
    if op in OPERATIONS:
        return
    close = difflib.get_close_matches(op, OPERATIONS, n=1, cutoff=0.5)
    close = close or [o for o in OPERATIONS if o.lower().startswith(op.lower()[:5])][:1]
    hint = f"; did you mean {close[0]}?" if close else ""
    raise FaultsError(
        f"faults: {what} names unknown operation {op!r}{hint}"
        f" (the emulator serves {', '.join(OPERATIONS)})"
    )


def _denied_after(value: Any) -> Mapping[str, int]:
    """accountID -> calls answered before the rest are denied; FaultsError unless each key is
    a 12-digit account ID and each count a whole number >= 0."""
    if not isinstance(value, Mapping):
        raise FaultsError(f"faults: denied_after must map accountID to a call count, got {value!r}")
    for account, calls in value.items():
        if not (isinstance(account, str) and len(account) == 12 and account.isdigit()):
            raise FaultsError(f"faults: denied_after: {account!r} is not a 12-digit accountID")
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise FaultsError(
                f"faults: denied_after: {account} needs a whole number of calls >= 0, got {calls!r}"
            )
    return MappingProxyType(dict(value))


def _fail_first(value: Any) -> Mapping[str, int]:
    """operation -> its first calls answered 500; FaultsError unless each key is an operation
    the emulator serves and each count a whole number >= 0."""
    if not isinstance(value, Mapping):
        raise FaultsError(f"faults: fail_first must map operation to a call count, got {value!r}")
    for key, calls in value.items():
        op, _, account = str(key).partition("@")
        _check_operation(op, "fail_first")
        if account and not (len(account) == 12 and account.isdigit()):
            raise FaultsError(
                f"faults: fail_first: {key!r}: {account!r} is not a 12-digit accountID"
            )
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise FaultsError(
                f"faults: fail_first: {key} needs a whole number of calls >= 0, got {calls!r}"
            )
    return MappingProxyType(dict(value))


def _range(name: str, value: Any) -> Range:
    """(min, max) from a pair or one number; FaultsError unless 0 <= min <= max."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value, value)
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise FaultsError(f"faults: {name} must be [min, max] seconds, got {value!r}") from exc
    if not 0.0 <= low <= high:
        raise FaultsError(f"faults: {name} needs 0 <= min <= max, got {value!r}")
    return (low, high)


class TokenBucket:
    """A token bucket: `rate_per_s` tokens a second, at most `max(1, rate_per_s)` stored."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float]) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def try_take(self) -> float:
        """Take a token and return 0.0, or return the seconds until one will be available."""
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
            self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


def retry_after_s(wait_s: float) -> int:
    """The Retry-After header value for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait_s))


class FaultInjector:
    """Decides each fault from one seeded random.Random, so a run is repeatable for a seed."""

    def __init__(self, faults: Faults, seed: int, clock: Callable[[], float]) -> None:
        self._seed = seed
        self._clock = clock
        self._rng = random.Random(seed)
        # (operation, account) -> its bucket: MGN's quotas are per account (and region).
        self._buckets: dict[tuple[str, str | None], TokenBucket] = {}
        self._account_calls: dict[str, int] = {}  # calls per account since denied_after was set
        self._op_calls: dict[str, int] = {}  # calls per operation since fail_first was set
        self.faults = faults
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        """Switch to new faults, keeping the buckets whose rate did not change (and the call
        counts of `denied_after` unless it changed)."""
        if faults.denied_after != self.faults.denied_after:
            self._account_calls = {}
        if faults.fail_first != self.faults.fail_first:
            self._op_calls = {}
        self.faults = faults
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if faults.quota_per_s.get(key[0]) == bucket.rate_per_s
        }

    def latency_s(self, op: str) -> float:
        """How long to delay this request before answering."""
        f = self.faults
        if not f.applies_to(op) or (f.latency_ms <= 0 and f.jitter_ms <= 0):
            return 0.0
        jitter = self._rng.uniform(0.0, f.jitter_ms) if f.jitter_ms > 0 else 0.0
        return (f.latency_ms + jitter) / 1000.0

    def throttle_wait_s(self, op: str, account_id: str | None = None) -> float:
        """0.0 when the request fits the operation's quota in its account, else the seconds
        until it would."""
        rate = self.faults.quota_per_s.get(op)
        if rate is None:
            return 0.0
        bucket = self._buckets.get((op, account_id))
        if bucket is None:
            bucket = self._buckets[(op, account_id)] = TokenBucket(rate, self._clock)
        return bucket.try_take()

    def denied(self, account_id: str | None) -> bool:
        """Whether this call of `account_id` is past the calls `denied_after` lets through."""
        allowed = self.faults.denied_after.get(account_id) if account_id is not None else None
        if allowed is None or account_id is None:
            return False
        count = self._account_calls[account_id] = self._account_calls.get(account_id, 0) + 1
        return count > allowed

    def fails_first(self, op: str, account_id: str | None = None) -> bool:
        """Whether this call of `op` (in `account_id`) is one of the first `fail_first` names
        for the operation, or for the operation in that account (answered 500)."""
        fail = False
        for key in (op, f"{op}@{account_id}") if account_id else (op,):
            allowed = self.faults.fail_first.get(key)
            if allowed:
                count = self._op_calls[key] = self._op_calls.get(key, 0) + 1
                fail = fail or count <= allowed
        return fail

    def inject_error(self, op: str) -> bool:
        """Whether to answer this request with an injected InternalServerException."""
        f = self.faults
        return f.error_rate > 0 and f.applies_to(op) and self._rng.random() < f.error_rate

    def drop(self, op: str, mutating: bool) -> str | None:
        """None to answer, "before" to drop before applying, "after" to apply then drop."""
        f = self.faults
        if f.drop_rate <= 0 or not f.applies_to(op) or self._rng.random() >= f.drop_rate:
            return None
        if mutating and self._rng.random() < f.drop_after_apply:
            return "after"
        return "before"

    def is_stuck(self, server_id: str, flagged: bool) -> bool:
        """Whether FinalizeCutover on this server is accepted but never converges.

        `stuck_rate` is decided per server from the seed and the ID, not the call order.
        """
        f = self.faults
        if flagged or server_id in f.stuck:
            return True
        if f.stuck_rate <= 0:
            return False
        return random.Random(f"{self._seed}:{server_id}").random() < f.stuck_rate

    def is_stuck_job(self, job_id: str, server_ids: list[str]) -> bool:
        """Whether a new launch job never completes: decided per job ID and seed."""
        f = self.faults
        if any(s in f.stuck_job_servers for s in server_ids):
            return True
        if f.stuck_job_rate <= 0:
            return False
        return random.Random(f"{self._seed}:{job_id}").random() < f.stuck_job_rate
