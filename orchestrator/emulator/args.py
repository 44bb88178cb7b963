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


def _op_count(text: str) -> tuple[str, int]:
    op, sep, count = text.partition("=")
    if not sep or not op or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected OPERATION=N with N >= 0, got {text!r}")
    return op, int(count)


def _duration(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        pair = (-1.0, -1.0)
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(
            f"expected SECONDS or MIN:MAX seconds with 0 <= MIN <= MAX, got {text!r}"
        )
    return pair


def _action(text: str) -> dict[str, object]:
    """NAME=DOCUMENT[,must-succeed][,timeout=S][,fail] as a post-launch action spec."""
    head, *options = text.split(",")
    name, sep, document = head.partition("=")
    if not sep or not name or not document:
        raise argparse.ArgumentTypeError(
            f"expected NAME=DOCUMENT[,must-succeed][,timeout=S][,fail], got {text!r}"
        )
    spec: dict[str, object] = {"actionName": name, "ssmDocumentName": document}
    for option in options:
        key, _, value = option.partition("=")
        if key == "must-succeed" and not value:
            spec["mustSucceedForCutover"] = True
        elif key == "fail" and not value:
            spec["fail"] = True
        elif key == "timeout" and value.isdigit() and int(value) > 0:
            spec["timeoutSeconds"] = int(value)
        else:
            raise argparse.ArgumentTypeError(f"unknown post-launch action option {option!r}")
    return spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the `simulate` flags to its subparser."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--fixture", type=Path, metavar="FILE", help="YAML fixture of servers")
    src.add_argument("--servers", type=int, metavar="N", help="generate N servers")
    src.add_argument("--plan", type=Path, nargs="+", metavar="PATH", help="wave plans to seed")
    p.add_argument("--applications", type=int, default=None, metavar="M", help="with --servers")
    p.add_argument(
        "--state",
        choices=("CUTTING_OVER", "READY_FOR_CUTOVER"),
        default=None,
        help="lifecycle state of --servers/--plan servers: CUTTING_OVER (ready for finalize,"
        " the default) or READY_FOR_CUTOVER (ready for StartCutover: rehearse the night)",
    )
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
    g.add_argument(
        "--fail-first",
        dest="fail_first",
        type=_op_count,
        action="append",
        default=[],
        metavar="OP=N",
        help="the first N calls of an operation answer InternalServerException (repeatable)",
    )
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
    n = p.add_argument_group("the cutover night (launch jobs)")
    n.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="K",
        help="emulated seconds per real second for launches, boots and actions (60: a minute a"
        " second)",
    )
    for flag, what in (
        ("--launch-duration", "StartCutover to launched"),
        ("--boot-duration", "launched to first boot done"),
        ("--action-duration", "each post-launch action"),
    ):
        n.add_argument(
            flag, type=_duration, default=None, metavar="MIN:MAX", help=f"{what}, emulated seconds"
        )
    n.add_argument(
        "--launch-failure-rate", type=float, default=0.0, metavar="P", help="launchStatus FAILED"
    )
    n.add_argument(
        "--boot-failure-rate", type=float, default=0.0, metavar="P", help="firstBoot STOPPED"
    )
    n.add_argument(
        "--action-failure-rate", type=float, default=0.0, metavar="P", help="post-launch FAILED"
    )
    n.add_argument(
        "--post-launch-action",
        dest="post_launch_actions",
        type=_action,
        action="append",
        default=[],
        metavar="NAME=DOC[,must-succeed][,timeout=S][,fail]",
        help="a post-launch action of every server the fixture gives none (repeatable)",
    )
    n.add_argument(
        "--stuck-job",
        dest="stuck_job",
        action="append",
        default=[],
        metavar="S-ID",
        help="a launch job holding this server never completes (repeatable)",
    )
    n.add_argument(
        "--stuck-job-rate", type=float, default=0.0, metavar="P", help="share of jobs stuck"
    )
    n.add_argument("--max-active-jobs", type=int, default=20, metavar="N", help="MGN: 20")
    n.add_argument("--max-active-job-servers", type=int, default=200, metavar="N", help="MGN: 200")
    e = p.add_argument_group("EC2 for launched instances")
    e.add_argument(
        "--ec2-endpoint-url",
        metavar="URL",
        help="launch instances in this EC2 endpoint (moto in server mode)",
    )
    e.add_argument(
        "--no-moto",
        dest="moto",
        action="store_false",
        help="do not start moto for EC2 (by default simulate starts one when moto is installed)",
    )
    p.add_argument(
        "--no-strict", dest="strict", action="store_false", help="skip response shape checks"
    )
