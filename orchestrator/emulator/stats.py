"""Introspection: call counts per operation and per server, faults served, and a request log.

`calls` counts every request that reached an operation (throttled, failed and refused ones too);
`throttled` counts 429s; `failed` counts injected InternalServerExceptions plus dropped
connections (also available apart as `injected_errors` and `dropped`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

LOG_LIMIT = 100_000


class Stats:
    """Counters and a bounded request log, cleared by `reset()`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Bugs the emulator caught in itself (strict mode); kept across reset().
        self.emulator_errors: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Zero every counter and empty the log (emulator_errors are kept)."""
        self.calls: Counter[str] = Counter()
        self.by_server: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[str] = Counter()
        self.injected_errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)

    def count_call(self, op: str, server_ids: Sequence[str]) -> None:
        """Count a request reaching `op`, and once per server it names."""
        self.calls[op] += 1
        for sid in server_ids:
            self.by_server[(sid, op)] += 1

    def finish(
        self,
        op: str,
        status: int | None,
        server_ids: Sequence[str],
        account_id: str | None,
        outcome: str,
    ) -> None:
        """Log how a request ended: `outcome` is ok, an error name, or dropped_before/after."""
        if outcome == "ThrottlingException":
            self.throttled[op] += 1
        elif outcome == "injected:InternalServerException":
            self.injected_errors[op] += 1
        elif outcome.startswith("dropped"):
            self.dropped[op] += 1
        self.statuses[str(status)] += 1
        self.log.append(
            {
                "t": self._clock(),
                "op": op,
                "status": status,
                "outcome": outcome,
                "servers": list(server_ids),
                "accountID": account_id,
            }
        )

    def failed(self, op: str | None = None) -> int:
        """Injected 5xx plus dropped connections, for one operation or all."""
        if op is None:
            return sum(self.injected_errors.values()) + sum(self.dropped.values())
        return self.injected_errors[op] + self.dropped[op]

    def to_json(self) -> dict[str, Any]:
        """Every counter as plain JSON."""
        by_server: dict[str, dict[str, int]] = {}
        for (sid, op), n in self.by_server.items():
            by_server.setdefault(sid, {})[op] = n
        return {
            "calls": dict(self.calls),
            "throttled": dict(self.throttled),
            "injected_errors": dict(self.injected_errors),
            "dropped": dict(self.dropped),
            "failed": {op: self.failed(op) for op in set(self.injected_errors) | set(self.dropped)},
            "statuses": dict(self.statuses),
            "by_server": by_server,
            "emulator_errors": list(self.emulator_errors),
        }
