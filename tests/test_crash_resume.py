"""Crash and resume: SIGKILL anywhere, SIGTERM, and a journal that cannot be trusted.

Runs are real subprocesses against the emulator. A kill point is an event of the run's JSON log
(`run_started`, `preflight_done`, `finalize_accepted`, `server_converged`, `run_finished`) plus a
delay from a fixed spread, so each phase is hit deterministically: pre-flight, mid-pool,
reconcile and report writing.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.journal import JOURNAL_FILE, Journal
from orchestrator.state import endpoint_scope
from tests.runhelp import (
    aid,
    cli_env,
    finalized_after_success,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")

APPS, PER_APP = 4, 10
# Latency on every call and a FinalizeCutover quota make a run last a few seconds, so every
# phase has a window; no visibility lag, so a rerun's Describe shows what MGN really did.
CRASH_FAULTS: dict[str, Any] = {
    "latency_ms": 60,
    "jitter_ms": 60,
    "quota_per_s": {"FinalizeCutover": 15},
}
FAST = ("--finalize-rate", "30", "--concurrency", "8")
DELAYS_S = (0.0, 0.01, 0.03, 0.07, 0.12, 0.2)


@dataclass(frozen=True)
class KillPoint:
    """Kill after the `nth` `event`, or after a fraction of the servers the run will finalize."""

    event: str
    nth: int = 1
    of_finalize: float | None = None  # the nth is this share of preflight_done's `finalize`

    def count(self, to_finalize: int | None) -> int | None:
        """How many `event`s to wait for; None while unknown or unreachable (nothing to do)."""
        if self.of_finalize is None:
            return self.nth
        if not to_finalize:
            return None
        return max(1, round(self.of_finalize * to_finalize))


# One chain per wave: each kill is followed by a rerun, killed at the next point.
CHAIN = (
    KillPoint("run_started"),  # pre-flight (Describe is slow)
    KillPoint("preflight_done"),  # the pool is starting
    KillPoint("finalize_accepted", of_finalize=0.3),  # mid-pool
    KillPoint("server_converged", of_finalize=0.2),  # pool and reconciler both busy
    KillPoint("finalize_accepted", of_finalize=1.0),  # the pool is done: reconcile only
    KillPoint("run_finished"),  # writing the report
)


@dataclass
class Killed:
    """What one killed run did before it died."""

    signalled: bool
    returncode: int
    stderr: str


def wave_of(handle: Any, work: Path, wave: str, first_app: int) -> tuple[Path, set[str]]:
    """Seed a ready wave of APPS x PER_APP servers; returns its plan and server IDs."""
    groups = {
        aid(a): [sid(a, n) for n in range(PER_APP)] for a in range(first_app, first_app + APPS)
    }
    handle.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    return write_plan(work, wave, groups), {s for ids in groups.values() for s in ids}


def run_and_kill(
    args: list[str], env: Mapping[str, str], point: KillPoint, delay_s: float
) -> Killed:
    """Start a run, SIGKILL it `delay_s` after it logs the kill point; or let it end."""
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        lines: list[str] = []
        seen, target = 0, point.count(None)
        signalled = False
        try:
            for line in proc.stderr:
                lines.append(line)
                event = _event(line)
                if event.get("event") == "preflight_done":
                    target = point.count(int(event["finalize"]))
                if event.get("event") == point.event and target is not None:
                    seen += 1
                    if seen >= target:
                        time.sleep(delay_s)  # the delay spread, while the real run goes on
                        proc.send_signal(signal.SIGKILL)
                        signalled = True
                        break
            lines.append(proc.stderr.read())
        finally:
            if proc.poll() is None and not signalled:
                proc.kill()
            proc.wait(timeout=60)
    return Killed(signalled and proc.returncode == -signal.SIGKILL, proc.returncode, "".join(lines))


def _event(line: str) -> dict[str, Any]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def wait_until_idle(handle: Any, timeout_s: float = 15.0) -> None:
    """Wait until the emulator has answered every request a killed run left in flight."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(handle.stats()["calls"].values()) == len(handle.request_log()):
            return
        time.sleep(0.02)
    raise AssertionError("the emulator still has requests in flight")


def assert_complete_and_converged(rep: Mapping[str, Any], ids: set[str]) -> None:
    """Every server has exactly one row, finalized and converged; the summary adds up."""
    rows = rep["servers"]
    assert sorted(r["sourceServerID"] for r in rows) == sorted(ids)
    assert all(r["outcome"] == "finalized" for r in rows), outcomes(rep)
    assert all(r["finalized_at"] and r["converged_at"] for r in rows)
    summary = dict(rep["summary"])
    total = summary.pop("total")
    assert total == len(ids) == sum(summary.values()) == summary["finalized"]
    assert rep["interrupted"] is False and rep["exit_code"] == 0


def test_sigkill_anywhere_then_rerun_converges_without_a_second_finalize(
    emulator: Any, work_dir: Path
) -> None:
    """After SIGKILLs in every phase, reruns converge with no second finalize and a whole report."""
    emulator.set_faults(**CRASH_FAULTS)
    kills = 0
    phases_hit: set[str] = set()
    for chain in range(5):
        wave = f"crash{chain}"
        plan, ids = wave_of(emulator, work_dir, wave, first_app=chain * APPS)
        args = run_args(plan, wave, work_dir, *FAST)
        # This MGN's reads do not lag: half a second is its read_settle_s. A run killed between
        # an intent and its send leaves an intent MGN never saw; a rerun that late sends it.
        env = cli_env(emulator.url, {"MGN_CUTOVER_READ_SETTLE_S": "0.5"})
        for step, point in enumerate(CHAIN):
            delay_s = DELAYS_S[(chain + step) % len(DELAYS_S)]
            killed = run_and_kill(args, env, point, delay_s)
            wait_until_idle(emulator)
            assert "Traceback" not in killed.stderr, killed.stderr[-3000:]
            if killed.signalled:
                kills += 1
                phases_hit.add(point.event)
            else:  # the run ended before the point (e.g. nothing left to finalize)
                assert killed.returncode == 0, killed.stderr[-3000:]
            partial = work_dir / "reports" / wave / "report.json"
            if partial.exists():  # written atomically: whole or absent, never half
                json.loads(partial.read_text())
        time.sleep(0.5)  # past read_settle_s of the last killed run's intents
        final = mgn_cutover(args, env)
        assert final.returncode == 0, final.stdout + final.stderr[-3000:]
        assert_complete_and_converged(report(work_dir, wave), ids)
        for server_id in ids:
            true = emulator.server(server_id)
            assert true["lifeCycle"]["state"] == "CUTOVER"
            assert true["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    assert kills >= 20, kills
    assert phases_hit == {p.event for p in CHAIN}
    assert finalized_after_success(emulator.request_log()) == []


def test_sigterm_writes_an_interrupted_report_quickly_and_a_rerun_finishes(
    emulator: Any, work_dir: Path
) -> None:
    """SIGTERM mid-pool exits 1 at once with an interrupted report; a rerun finishes the wave."""
    plan, ids = wave_of(emulator, work_dir, "term", first_app=0)
    # A slow quota: left alone, this run would take about 20 s.
    emulator.set_faults(latency_ms=20, quota_per_s={"FinalizeCutover": 2})
    args = run_args(plan, "term", work_dir, "--finalize-rate", "2")
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=cli_env(emulator.url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        accepted = 0
        for line in proc.stderr:
            if _event(line).get("event") == "finalize_accepted":
                accepted += 1
                if accepted == 3:
                    break
        signalled_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    took_s = time.monotonic() - signalled_at
    assert proc.returncode == 1, stderr[-3000:]
    assert took_s < 5.0, f"SIGTERM took {took_s:.1f}s to end the run"
    assert "Traceback" not in stderr
    assert "exit=1" in stdout
    rep = report(work_dir, "term")
    assert rep["interrupted"] is True and rep["exit_code"] == 1
    summary = dict(rep["summary"])
    assert summary.pop("total") == len(ids) == sum(summary.values())
    assert summary["not_attempted"] > 0
    assert all(r["outcome"] for r in rep["servers"])

    wait_until_idle(emulator)
    emulator.set_faults(quota_per_s={})
    rerun = mgn_cutover(run_args(plan, "term", work_dir), cli_env(emulator.url))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_complete_and_converged(report(work_dir, "term"), ids)
    assert finalized_after_success(emulator.request_log()) == []


def _finished_journal(emulator: Any, work: Path) -> tuple[Path, Path]:
    """A wave that ran once to completion; returns its plan and its journal file."""
    plan, _ = wave_of(emulator, work, "j", first_app=0)
    out = mgn_cutover(run_args(plan, "j", work), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    return plan, work / "state" / endpoint_scope(emulator.url) / "j" / JOURNAL_FILE


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_journal_is_refused_with_exit_2_not_replaced(
    emulator: Any, work_dir: Path, damage: str
) -> None:
    """A corrupt journal stops the run with exit 2 naming the file; it is kept, nothing is sent."""
    plan, path = _finished_journal(emulator, work_dir)
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        side.unlink(missing_ok=True)  # the run closed cleanly: these hold nothing
    data = path.read_bytes()
    damaged = {
        "garbage": b"this is not a journal at all\n" * 100,
        "truncated": data[: len(data) // 3],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    emulator.reset_counters()
    out = mgn_cutover(run_args(plan, "j", work_dir), cli_env(emulator.url))
    assert out.returncode == 2, out.stdout + out.stderr
    assert str(path) in out.stderr
    assert "Traceback" not in out.stderr
    assert path.read_bytes() == damaged  # never a silent fresh start
    assert emulator.calls("FinalizeCutover") == emulator.calls("DescribeSourceServers") == 0


def test_a_journal_from_a_newer_schema_is_refused_with_exit_2(
    emulator: Any, work_dir: Path
) -> None:
    """A journal written by a newer mgn-cutover stops the run with exit 2, naming the file."""
    plan, path = _finished_journal(emulator, work_dir)
    with Journal.open(path.parent.parent, "j") as journal:
        before = journal.entries()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    emulator.reset_counters()
    for args in (
        run_args(plan, "j", work_dir),
        [
            "report",
            "--wave",
            "j",
            "--state-dir",
            str(work_dir / "state"),
            "--report-dir",
            str(work_dir / "reports"),
        ],
    ):
        out = mgn_cutover(args, cli_env(emulator.url))
        assert out.returncode == 2, out.stdout + out.stderr
        assert str(path) in out.stderr and "schema version 99" in out.stderr
        assert "Traceback" not in out.stderr
    assert emulator.calls("FinalizeCutover") == 0
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    with Journal.open(path.parent.parent, "j") as journal:
        assert journal.entries() == before  # what was finalized is still remembered
