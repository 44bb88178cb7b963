"""The night's terminal: log lines scroll above one live status line; silent under cron.

`Terminal` is the one writer of a terminal's stderr: a log line clears the status line, prints
itself and redraws the status, so nothing is ever printed onto the status line. `Progress`
redraws the status from the ledger: counts by where servers stand (they only move forward, so
no count goes backwards, and they add up to the servers of the run), the rate, and while
waiting for MGN a countdown to the deadline and the servers still pending.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.ledger import Fate

if TYPE_CHECKING:
    from orchestrator.runner import RunState

CLEAR = "\r\x1b[2K"

# Where a server stands, for the status line: every fate in exactly one bucket, in this order.
BUCKETS: tuple[tuple[str, frozenset[Fate]], ...] = (
    ("converged", frozenset({Fate.FINALIZED, Fate.ALREADY_CUTOVER})),
    (
        "waiting",
        frozenset({Fate.ACCEPTED, Fate.UNCONFIRMED, Fate.CUTOVER_PENDING, Fate.UNRESOLVED}),
    ),
    ("sending", frozenset({Fate.SENDING})),
    ("to do", frozenset({Fate.UNCHECKED, Fate.READY})),
    ("would finalize", frozenset({Fate.WOULD_FINALIZE})),
    ("blocked", frozenset({Fate.BLOCKED})),
    ("failed", frozenset({Fate.FAILED})),
    ("timed out", frozenset({Fate.TIMED_OUT})),
    ("accepted, unconfirmed", frozenset({Fate.STOPPED_WAITING})),  # stopped before the deadline
    ("not sent", frozenset({Fate.HELD, Fate.NOT_ATTEMPTED})),
)
_ALWAYS = ("converged", "to do")  # shown even at zero: the line's shape stays put
WAITING_NOTE_S = 15.0  # how often the names of servers still pending scroll by


class Terminal:
    """One writer for a terminal: log lines above, one status line below, never mixed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.status = ""

    def width(self) -> int:
        return max(40, shutil.get_terminal_size((120, 24)).columns - 1)

    def log(self, text: str) -> None:
        """Print a line above the status line: clear it, print, redraw it."""
        self.stream.write(CLEAR + text + "\n" + self.status)
        self.stream.flush()

    def draw(self, status: str) -> None:
        """Replace the status line (cut to the terminal's width: it must stay one line)."""
        self.status = status[: self.width()]
        self.stream.write(CLEAR + self.status)
        self.stream.flush()

    def close(self) -> None:
        """Leave the last status line in place and move below it."""
        if self.status:
            self.stream.write(CLEAR + self.status + "\n")
            self.stream.flush()
        self.status = ""

    def file(self) -> _LineFile:
        """A file whose complete lines go through `log` (for structlog's WriteLogger)."""
        return _LineFile(self)


class _LineFile:
    """Text written here reaches the terminal line by line, above the status line."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._terminal.log(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def bucket_counts(fates: Sequence[Fate]) -> dict[str, int]:
    """How many servers stand in each bucket (every bucket, zeros included)."""
    counts = dict.fromkeys((name for name, _ in BUCKETS), 0)
    for fate in fates:
        for name, members in BUCKETS:
            if fate in members:
                counts[name] += 1
                break
    return counts


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Redraws `[phase 1:23] N servers: converged .. waiting .. | rate | deadline, pending`."""

    def __init__(
        self,
        state: RunState,
        total: int,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        terminal: Terminal | None = None,
        names: Mapping[str, str | None] | None = None,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.total = total
        self.enabled = enabled
        self.terminal = terminal or Terminal(stream or sys.stderr)
        self.names = dict(names or {})  # applicationID -> the plan's name
        self.interval_s = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._started = clock()
        self._last_note = clock()

    def counts(self) -> dict[str, int]:
        """Servers of this run per bucket; they add up to the run's servers."""
        ledger = self.state.ledger
        if ledger is None:
            return bucket_counts([Fate.UNCHECKED] * self.total)
        return bucket_counts([ledger.fate(s.source_server_id) for s in ledger.in_run()])

    def pending(self) -> list[str]:
        """The servers MGN has not confirmed yet, as `s-... (application name)`."""
        ledger = self.state.ledger
        if ledger is None:
            return []
        return [self._named(sid) for sid in sorted(ledger.waiting())]

    def _named(self, server_id: str) -> str:
        assert self.state.ledger is not None
        app = self.state.ledger.application_of(server_id)
        return f"{server_id} ({self.names.get(app) or app})"

    def deadline_in_s(self, now: float | None = None) -> float | None:
        """Seconds until the reconciler gives up on the last pending server, if it waits."""
        reconciler = self.state.reconciler
        deadline = reconciler.deadline() if reconciler is not None else None
        return None if deadline is None else deadline - (self._clock() if now is None else now)

    def line(self, now: float | None = None) -> str:
        """The current status line."""
        now = self._clock() if now is None else now
        counts = self.counts()
        run_total = sum(counts.values())
        shown = [f"{n} {name}" for name, n in counts.items() if n or name in _ALWAYS]
        elapsed = max(now - self._started, 1e-6)
        rate = counts["converged"] / elapsed
        parts = [
            f"[{self.state.phase} {_clock(elapsed)}] {run_total} servers: " + ", ".join(shown),
            f"{rate:.1f}/s",
        ]
        left = self.deadline_in_s(now)
        pending = self.pending()
        if left is not None and pending:
            parts.append(f"deadline in {_clock(left)}")
            more = f" +{len(pending) - 2} more" if len(pending) > 2 else ""
            parts.append("pending " + ", ".join(pending[:2]) + more)
        return " | ".join(parts)

    def waiting_note(self, now: float | None = None) -> str | None:
        """Every WAITING_NOTE_S while waiting for MGN: which servers, and the time left."""
        now = self._clock() if now is None else now
        left = self.deadline_in_s(now)
        pending = self.pending()
        if left is None or not pending or now - self._last_note < WAITING_NOTE_S:
            return None
        self._last_note = now
        more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
        names = ", ".join(pending[:10]) + more
        return f"waiting for MGN to show CUTOVER + DISCONNECTED ({_clock(left)} left): {names}"

    async def _draw(self) -> None:
        while True:
            note = self.waiting_note()
            if note:
                self.terminal.log(note)
            self.terminal.draw(self.line())
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
        self.terminal.draw(self.line())
        self.terminal.close()


def final_summary(applications: Sequence[Mapping[str, Any]], problems: Sequence[Any]) -> str:
    """What a person reads at the end of a run: one line per application, then each problem
    server with its reason (the report has the rest)."""
    lines = ["", "Applications:"]
    width = max((len(str(a.get("name") or a["applicationID"])) for a in applications), default=0)
    for app in applications:
        name = str(app.get("name") or app["applicationID"])
        flag = "  <-- HALF CUT OVER: act now" if app["status"] == "partially_cut_over" else ""
        lines.append(
            f"  {name.ljust(width)}  {app['converged']}/{app['servers']} converged  "
            f"{app['status']}{flag}"
        )
    if problems:
        lines += ["", f"Problem servers ({len(problems)}):"]
        for s in problems[:50]:
            app = s.application_name or s.application_id
            lines.append(f"  {s.source_server_id}  {app}  {s.outcome}: {s.reason or '-'}")
        if len(problems) > 50:
            lines.append(f"  ... and {len(problems) - 50} more: see the report")
    else:
        lines += ["", "Problem servers: none"]
    return "\n".join(lines)
