"""The `simulate` command's flags: kept apart so building the CLI parser stays cheap."""

from __future__ import annotations

import argparse
from pathlib import Path


def _op_rate(text: str) -> tuple[str, float]:
    op, sep, rate = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        value = -1.0
    if not sep or not op or value <= 0:
        raise argparse.ArgumentTypeError(f"expected OPERATION=RATE with RATE > 0, got {text!r}")
    return op, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the `simulate` flags to its subparser."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--fixture", type=Path, metavar="FILE", help="YAML fixture of servers")
    src.add_argument("--servers", type=int, metavar="N", help="generate N servers")
    src.add_argument("--plan", type=Path, nargs="+", metavar="PATH", help="wave plans to seed")
    p.add_argument("--applications", type=int, default=None, metavar="M", help="with --servers")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and faults)")
    g = p.add_argument_group("faults")
    g.add_argument(
        "--throttle",
        "--quota",
        dest="quota",
        type=_op_rate,
        action="append",
        default=[],
        metavar="OP=RATE",
        help="requests per second for an operation (repeatable)",
    )
    g.add_argument("--latency-ms", type=float, default=0.0)
    g.add_argument("--jitter-ms", type=float, default=0.0)
    g.add_argument("--error-rate", type=float, default=0.0, help="InternalServerException rate")
    g.add_argument("--drop-rate", type=float, default=0.0, help="dropped connection rate")
    g.add_argument(
        "--drop-after-apply",
        type=float,
        default=0.5,
        help="share of drops on mutating calls that happen after the change (default 0.5)",
    )
    g.add_argument("--visibility-lag", type=float, default=0.0, metavar="S", help="seconds")
    g.add_argument("--stuck", action="append", default=[], metavar="S-ID", help="repeatable")
    g.add_argument("--stuck-rate", type=float, default=0.0)
    g.add_argument("--first-boot-delay", type=float, default=0.0, metavar="S", help="seconds")
    g.add_argument("--uninitialized", action="store_true", help="UninitializedAccountException")
    g.add_argument("--access-denied", action="store_true", help="AccessDeniedException")
    p.add_argument(
        "--no-strict", dest="strict", action="store_false", help="skip response shape checks"
    )
