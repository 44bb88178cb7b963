"""Helpers for tests that drive `mgn-cutover` as a subprocess against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "111111111111"  # the emulator's default account


def sid(app: int, n: int) -> str:
    """A valid source server ID, readable in failures: s-<app><n>."""
    return f"s-{app:08x}{n:09x}"


def aid(app: int) -> str:
    """A valid application ID."""
    return f"app-{app:017x}"


def write_plan(folder: Path, wave: str, apps: Mapping[str, Sequence[str]]) -> Path:
    """Write a one-wave plan file and return its path."""
    doc = {
        "wave": wave,
        "applications": [
            {"applicationID": a, "name": f"app{i}", "sourceServerIDs": list(ids)}
            for i, (a, ids) in enumerate(apps.items())
        ],
    }
    path = folder / f"{wave}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def server(
    server_id: str, app_id: str, state: str = "CUTTING_OVER", **extra: Any
) -> dict[str, Any]:
    """A fixture entry for the emulator; ready for finalize unless told otherwise."""
    entry: dict[str, Any] = {
        "sourceServerID": server_id,
        "applicationID": app_id,
        "state": state,
        "firstBoot": "SUCCEEDED",
    }
    entry.update(extra)
    return entry


def small_night(emulator: Any, folder: Path, wave: str) -> Path:
    """Seed a wave of two applications, app 0's two servers ready and app 1's one server still
    booting (so blocked); the plan of it."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0)),
                server(sid(0, 1), aid(0)),
                server(sid(1, 0), aid(1), firstBoot="WAITING"),
            ]
        }
    )
    return write_plan(folder, wave, groups)


def cli_env(endpoint: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a test run gets: the test's (already scrubbed) env plus the endpoint."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL_MGN=endpoint,
        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "AKIAFAKETESTKEY00001"),
        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "fakeSecretKeyDoNotLeak000"),
        AWS_DEFAULT_REGION="us-east-1",
    )
    env.update(extra or {})
    return env


def mgn_cutover(
    args: Sequence[str], env: Mapping[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def run_args(plan: Path, wave: str, work: Path, *extra: str) -> list[str]:
    """`run` arguments with fast test settings and the work folder for reports and state."""
    return [
        "run", str(plan), "--wave", wave,
        "--report-dir", str(work / "reports"),
        "--state-dir", str(work / "state"),
        "--poll-interval", "0.1",
        "--finalize-rate", "200",
        "--describe-rate", "200",
        "--timeout", "20",
        "--log-format", "json",
        *extra,
    ]  # fmt: skip


def report(work: Path, wave: str) -> dict[str, Any]:
    """The run's report.json."""
    data: dict[str, Any] = json.loads((work / "reports" / wave / "report.json").read_text())
    return data


def outcomes(rep: Mapping[str, Any]) -> dict[str, str]:
    """sourceServerID -> outcome, from a report."""
    return {s["sourceServerID"]: s["outcome"] for s in rep["servers"]}


def finalized_after_success(log: Iterable[Mapping[str, Any]]) -> list[str]:
    """Servers that got a FinalizeCutover after one of theirs was answered 200 (must be none)."""
    done: set[str] = set()
    offenders = []
    for entry in log:
        if entry["op"] != "FinalizeCutover":
            continue
        (server_id,) = entry["servers"]
        if server_id in done:
            offenders.append(server_id)
        if entry["status"] == 200:
            done.add(server_id)
    return offenders
