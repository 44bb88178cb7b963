"""What a run reports is what MGN did: lost answers, dry runs after a timed-out run, signals
during retried reads, archived servers, a journal that cannot be written, an internal error.

Subprocess runs against the emulator over HTTP, and `run_wave` in-process on the emulator with
its logs captured.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator import collector
from orchestrator.config import Config
from orchestrator.errors import StateWriteError
from orchestrator.gateway import Gateway
from orchestrator.journal import Journal
from orchestrator.mgn import ClientSettings, MgnClient
from orchestrator.outcome import Outcome
from orchestrator.plan import load_waves
from orchestrator.runner import RunState, run_wave
from orchestrator.state import endpoint_scope
from tests.runhelp import (
    aid,
    cli_env,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")


def _ready(emulator: Any, work: Path, apps: int, per_app: int, wave: str = "w") -> Path:
    groups = {aid(a): [sid(a, n) for n in range(per_app)] for a in range(apps)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    return write_plan(work, wave, groups)


def test_an_applied_finalize_whose_answer_was_lost_is_finalized_by_this_run(
    emulator: Any, work_dir: Path
) -> None:
    """Every answer lost after MGN applied it, no retry allowed: the reconciler sees CUTOVER +
    DISCONNECTED, so each server was finalized by this run (never failed or not_attempted)."""
    plan = _ready(emulator, work_dir, apps=2, per_app=3)
    emulator.set_faults(
        drop_rate=1.0, drop_after_apply=1.0, fault_ops=frozenset({"FinalizeCutover"})
    )
    out = mgn_cutover(run_args(plan, "w", work_dir, "--max-attempts", "1"), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    rep = report(work_dir, "w")
    assert set(outcomes(rep).values()) == {"finalized"}
    assert all(s["attempts"] == 1 and s["finalized_at"] for s in rep["servers"])
    assert emulator.calls("FinalizeCutover") == 6


def test_a_dry_run_after_a_timed_out_run_reports_it_unconfirmed_and_exits_1(
    emulator: Any, work_dir: Path
) -> None:
    """A dry run never turns an unconfirmed finalize into `finalized`, writes no server entry
    into the journal and exits 1 while anything is not converged."""
    groups = {aid(0): [sid(0, 0)]}
    emulator.seed({"servers": [server(sid(0, 0), aid(0), stuck=True)]})
    plan = write_plan(work_dir, "w", groups)
    env = cli_env(emulator.url)
    first = mgn_cutover(run_args(plan, "w", work_dir, "--timeout", "0.5"), env)
    assert first.returncode == 1, first.stderr[-3000:]
    assert outcomes(report(work_dir, "w")) == {sid(0, 0): "timed_out"}
    root = work_dir / "state" / endpoint_scope(emulator.url)  # a rehearsal's own folder
    journal = root / "w" / "journal.sqlite3"
    with Journal.open(root, "w") as j:
        before = j.entries()
    dry = mgn_cutover(run_args(plan, "w", work_dir, "--dry-run"), env)
    assert dry.returncode == 1, dry.stderr[-3000:]
    assert "timed_out=1" in dry.stdout and "finalized" not in dry.stdout
    with Journal.open(root, "w") as j:
        assert j.entries() == before
        assert j.entries()[sid(0, 0)].status == "accepted"
    assert journal.exists()
    assert emulator.calls("FinalizeCutover") == 1


def test_sigterm_while_reads_are_retried_stops_within_2_s(emulator: Any, work_dir: Path) -> None:
    """Reads failing and backing off do not keep a signalled run alive: it ends within 2 s,
    sends nothing, and writes an interrupted report of every server."""
    plan = _ready(emulator, work_dir, apps=2, per_app=2)
    emulator.set_faults(error_rate=1.0, fault_ops=frozenset({"DescribeSourceServers"}))
    args = run_args(plan, "w", work_dir, "--max-attempts", "50")
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=cli_env(emulator.url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if json.loads(line).get("event") == "run_started":
                break
        while emulator.failed("DescribeSourceServers") < 2:
            time.sleep(0.02)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took_s = time.monotonic() - sent_at
    assert proc.returncode == 1
    assert took_s < 2.0, took_s
    rep = report(work_dir, "w")
    assert rep["interrupted"] is True and rep["stop_reason"] == "signal"
    assert set(outcomes(rep).values()) == {"not_attempted"}
    assert emulator.calls("FinalizeCutover") == 0


def test_an_archived_cut_over_server_does_not_hold_back_its_application(
    emulator: Any, work_dir: Path
) -> None:
    """CUTOVER + DISCONNECTED and archived is converged (already_cutover): its ready sibling
    is finalized on a rerun, and the wave exits 0."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0), "CUTOVER", archived=True, firstBoot="SUCCEEDED"),
                server(sid(0, 1), aid(0)),
            ]
        }
    )
    plan = write_plan(work_dir, "w", groups)
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert outcomes(report(work_dir, "w")) == {
        sid(0, 0): "already_cutover",
        sid(0, 1): "finalized",
    }


class _FullDisk(Journal):
    """The journal of a disk that fills up after `room` intents."""

    room = 2

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        if self.room <= 0:
            raise StateWriteError(f"journal {self.path}: database or disk is full")
        self.room -= 1
        super().record_intent(server_id, application_id, at=at, run_id=run_id)


async def _run_in_process(
    emulator: Any, work: Path, plan: Path, journal: Journal, **config: Any
) -> Any:
    wave = load_waves([plan]).waves[0]
    settings = Config(
        region="us-east-1",
        endpoint_url=emulator.url,
        poll_interval_s=0.05,
        finalize_rate=200,
        describe_rate=200,
        concurrency=1,
        **config,
    )
    state = RunState(wave=wave.name, dry_run=False)
    async with MgnClient(ClientSettings(region="us-east-1", endpoint_url=emulator.url)) as c:
        return await run_wave(wave, settings, Gateway(c, settings, stop=state.stop), journal, state)


async def test_a_journal_that_cannot_be_written_stops_sending_and_exits_5(
    emulator: Any, work_dir: Path
) -> None:
    """Disk full mid-run: nothing more is sent, the run still ends with a record of every
    server saying what MGN did, and its exit code is 5."""
    plan = _ready(emulator, work_dir, apps=1, per_app=6)
    Journal.open(work_dir / "state", "w").close()
    import sqlite3

    path = work_dir / "state" / "w" / "journal.sqlite3"
    journal = _FullDisk(sqlite3.connect(path, isolation_level=None), path, "w")
    with capture_logs() as logs:
        record = await _run_in_process(emulator, work_dir, plan, journal)
    journal.close()
    assert record.exit_code == 5
    assert record.stop_reason == "local_state"
    assert emulator.calls("FinalizeCutover") == 2
    got = {r.source_server_id: r.outcome for r in record.servers}
    # The two sent were accepted: finalized if a poll saw them converge before the halt,
    # timed_out (accepted, not confirmed) otherwise; never failed or not_attempted.
    assert sum(o in (Outcome.TIMED_OUT, Outcome.FINALIZED) for o in got.values()) == 2
    assert sum(o is Outcome.NOT_ATTEMPTED for o in got.values()) == 4
    assert any(e["event"] == "run_stopping" and e["reason"] == "local_state" for e in logs)


async def test_an_internal_error_still_ends_with_a_report_marked_incomplete(
    emulator: Any, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug anywhere in the run: every server still has a row, the record says incomplete,
    and the exit code is 1."""
    plan = _ready(emulator, work_dir, apps=1, per_app=2)

    async def broken(self: Gateway, ids: Any, states: Any = ()) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Gateway, "describe", broken)
    with Journal.open(work_dir / "state", "w") as journal, capture_logs() as logs:
        record = await _run_in_process(emulator, work_dir, plan, journal)
    assert record.incomplete is True
    assert record.exit_code == 1
    assert {r.outcome for r in record.servers} == {Outcome.NOT_ATTEMPTED}
    assert all("internal error" in (r.reason or "") for r in record.servers)
    assert any(e["event"] == "run_internal_error" for e in logs)
    assert emulator.calls("FinalizeCutover") == 0


@pytest.mark.parametrize("program", [True, False])
async def test_the_programs_collector_freezes_after_the_preflight_and_runs_once_sends_are_done(
    emulator: Any, work_dir: Path, monkeypatch: pytest.MonkeyPatch, program: bool
) -> None:
    """The program (`collector.for_the_program`) freezes what the run set up and read once the
    pre-flight has read every server, then collects as usual, and collects the young
    generation once every FinalizeCutover is answered, before the run ends; a caller in its
    own process (these tests) keeps its collector untouched."""
    plan = _ready(emulator, work_dir, apps=2, per_app=3)
    ids = [s.source_server_id for s in load_waves([plan]).waves[0].servers]
    seen: list[tuple[str, int, int]] = []

    def at(what: str) -> None:
        read = sum(emulator.calls_for(s, "DescribeSourceServers") > 0 for s in ids)
        seen.append((what, read, emulator.calls("FinalizeCutover")))

    monkeypatch.setattr(collector.gc, "freeze", lambda: at("freeze"))
    monkeypatch.setattr(collector.gc, "enable", lambda: at("enable"))
    monkeypatch.setattr(collector.gc, "collect", lambda generation=2: at(f"collect {generation}"))
    monkeypatch.setattr(collector, "_program", program)
    with Journal.open(work_dir / "state", "w") as journal:
        record = await _run_in_process(emulator, work_dir, plan, journal)
    at("end")
    assert {r.outcome for r in record.servers} == {Outcome.FINALIZED}
    if not program:
        assert [what for what, _, _ in seen] == ["end"]
        return
    assert [what for what, _, _ in seen] == ["freeze", "enable", "collect 0", "end"]
    assert seen[0][1] == len(ids)  # frozen once the pre-flight read every server
    assert seen[2][2] == len(ids)  # every FinalizeCutover sent and answered ...
    assert seen[3][2] == len(ids)  # ... and none after
