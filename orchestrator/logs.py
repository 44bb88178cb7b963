"""Logging: structlog JSON lines for cron and pipes, a readable console on a terminal.

`merge_contextvars` comes first so every event carries the wave, application and server bound
by the task that logged it. Credentials never reach a log: we never bind them, and a last
processor masks any value that looks like an AWS key, secret or token.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from orchestrator.progress import Terminal

_SECRET_KEYS = re.compile(r"(secret|token|password|credential|access_key)", re.IGNORECASE)
_SECRET_VALUES = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")


_secret_key: dict[str, bool] = {}  # key -> whether it names a secret (keys repeat: cached)


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():  # values replaced in place: the keys stay as they are
        secret = _secret_key.get(key)
        if secret is None:
            secret = bool(_SECRET_KEYS.search(key))
            if len(_secret_key) < 4096:
                _secret_key[key] = secret
        if secret:
            event[key] = "***"
        elif (
            isinstance(value, str)
            and ("AKIA" in value or "ASIA" in value)
            and _SECRET_VALUES.search(value)
        ):
            event[key] = _SECRET_VALUES.sub("***", value)
    return event


def use_json(log_format: str, stream: TextIO) -> bool:
    """JSON when asked, or when `auto` and the stream is not a terminal (cron, pipes)."""
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    return not stream.isatty()


def configure(
    log_format: str = "auto",
    stream: TextIO | None = None,
    level: int = logging.INFO,
    *,
    terminal: Terminal | None = None,
) -> bool:
    """Set up structlog for this process; returns True when the output is JSON lines.

    With `terminal` (a run on a TTY) events are readable lines printed above the live status
    line, per-server chatter left to the per-application summaries and the report.
    """
    stream = stream or sys.stderr
    as_json = use_json(log_format, stream)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    out: Any = stream
    if terminal is not None and not as_json:
        processors.append(_Coalesce())
        renderer = render_readable
        out = terminal.file()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return as_json


# Per-server events at info level: on a terminal each application's summary says it once.
_PER_SERVER_PREFIXES = ("server_", "finalize_accepted")
# Retries of reads (`call_retry`) and of finalizes (`finalize_retry`) come in bursts under
# throttling: on a terminal one line per kind and error per second, with how many it stands for.
_BURSTY = frozenset({"call_retry", "finalize_retry"})
_BURST_S = 1.0
_HIDDEN_KEYS = frozenset({"event", "level", "timestamp", "wave", "run_id", "exc_info"})


class _Coalesce:
    """Drops per-server info chatter; folds bursts of retries into one line a second."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._folded: dict[tuple[str, str], int] = {}

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        name = str(event.get("event", ""))
        if event.get("level") == "info" and name.startswith(_PER_SERVER_PREFIXES):
            raise structlog.DropEvent
        if name in _BURSTY:
            key = ("retry", str(event.get("error_code")))
            now = self._clock()
            if now - self._last.get(key, -_BURST_S) < _BURST_S:
                self._folded[key] = self._folded.get(key, 0) + 1
                raise structlog.DropEvent
            self._last[key] = now
            folded = self._folded.pop(key, 0)
            if folded:
                event["similar_since"] = folded
        return event


_TEMPLATES: dict[str, str] = {
    "run_started": "run {run_id:.8} started: {servers} servers (dry run: {dry_run})",
    "preflight_done": "pre-flight done: {finalize} to finalize, {poll} already sent (polling)",
    "application_done": "application {application}: {status}, {converged}/{servers} converged",
    "call_retry": "retrying after {error_code} (attempt {attempt}, next in {delay_s}s): {error}",
    "finalize_retry": "retrying FinalizeCutover after {error_code}",
    "mgn_endpoint": "MGN endpoint: {endpoint}",
    "state_dir": "journal and lock in {path} ({source})",
    "run_finished": "run finished: exit {exit_code}",
    "plan_file_skipped": "SKIPPED another wave's plan file {path}: {error}",
}


def render_readable(_: Any, __: str, event: dict[str, Any]) -> str:
    """`22:14:03  message  key=value`: one line a person reads, warnings and errors marked."""
    name = str(event.get("event", ""))
    stamp = str(event.get("timestamp", ""))[11:19]
    level = str(event.get("level", "info"))
    template = _TEMPLATES.get(name)
    used: set[str] = set()
    text = name.replace("_", " ")
    if template is not None:
        try:
            text = template.format(**event)
            used = {k for k in event if "{" + k in template}
        except (KeyError, ValueError, IndexError):
            text = name.replace("_", " ")
    # A templated event says what matters; only a reason or an error is added to it.
    shown = ("reason", "error") if template is not None else tuple(event)
    rest = " ".join(
        f"{k}={v}"
        for k, v in event.items()
        if k in shown and k not in _HIDDEN_KEYS and k not in used and v is not None
    )
    if event.get("similar_since"):
        text += f" (and {event['similar_since']} more like it in the last second)"
    mark = "" if level == "info" else f"{level.upper()}: "
    line = f"{stamp}  {mark}{text}" + (f"  {rest}" if rest else "")
    if event.get("exception"):
        line += "\n" + str(event["exception"])
    return line
