"""A live one-line progress display for terminals; silent under cron (not a TTY, or JSON logs)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, TextIO

from orchestrator.outcome import Outcome

if TYPE_CHECKING:
    from orchestrator.runner import RunState


class Progress:
    """Redraws `finalized, converged, blocked, failed of N; rate; time left` every interval."""

    def __init__(
        self,
        state: RunState,
        total: int,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.state = state
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    def line(self, now: float | None = None) -> str:
        """The current progress line."""
        ledger = self.state.ledger
        tally = ledger.tally() if ledger is not None else {o.value: 0 for o in Outcome}
        done = tally[Outcome.FINALIZED] + tally[Outcome.ALREADY_CUTOVER]
        elapsed = max((now or time.monotonic()) - self._started, 1e-6)
        rate = tally[Outcome.FINALIZED] / elapsed
        return (
            f"[{self.state.phase}] finalized {tally[Outcome.FINALIZED]} converged {done} "
            f"blocked {tally[Outcome.BLOCKED]} failed {tally[Outcome.FAILED]} of {self.total} "
            f"| {rate:.1f}/s"
        )

    async def _draw(self) -> None:
        while True:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> Progress:
        if self.enabled:
            self._task = asyncio.create_task(self._draw())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.stream.write("\r\x1b[2K" + self.line() + "\n")
        self.stream.flush()
