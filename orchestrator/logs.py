"""Logging: structlog JSON lines for cron and pipes, a readable console on a terminal.

`merge_contextvars` comes first so every event carries the wave, application and server bound
by the task that logged it. Credentials never reach a log: we never bind them, and a last
processor masks any value that looks like an AWS key, secret or token.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"(secret|token|password|credential|access_key)", re.IGNORECASE)
_SECRET_VALUES = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key):
            event[key] = "***"
        elif isinstance(value, str) and _SECRET_VALUES.search(value):
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
    log_format: str = "auto", stream: TextIO | None = None, level: int = logging.INFO
) -> bool:
    """Set up structlog for this process; returns True when the output is JSON lines."""
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
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    return as_json
