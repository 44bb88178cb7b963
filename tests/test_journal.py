"""The journal: round trips, resume semantics, refusal of damaged or foreign files, durability."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import JournalError, StateWriteError
from orchestrator.journal import JOURNAL_FILE, WRITE_BEHIND_S, Journal, JournalEntry
from orchestrator.outcome import Outcome, RunRecord, ServerResult

WAVE = "wave-1"
T0, T1, T2, T3 = (f"2025-03-01T10:00:0{i}Z" for i in range(4))
REPO = Path(__file__).resolve().parent.parent


def journal_path(state_dir: Path, wave: str = WAVE) -> Path:
    return state_dir / wave / JOURNAL_FILE


def make_journal(state_dir: Path, servers: int = 0) -> Path:
    """Create a wave's journal holding `servers` intents and return its file."""
    with Journal.open(state_dir, WAVE) as j:
        for i in range(servers):
            j.record_intent(f"s-{i:017x}", "app-1", at=T0, run_id="r1")
    return journal_path(state_dir)


def test_round_trip_of_every_record(tmp_path: Path) -> None:
    """Each record_* call is read back, after reopening, as the entry it describes."""
    with Journal.open(tmp_path, WAVE) as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_accepted("s-1", at=T1, run_id="r1")
        j.record_converged("s-1", at=T2, run_id="r1")
        j.record_intent("s-2", "app-2", at=T0, run_id="r1")
        j.record_failed("s-2", code="ConflictException", message="wrong state", run_id="r1")
    with Journal.open(tmp_path, WAVE, create=False) as j:
        entries = j.entries()
        assert j.entry("s-missing") is None
    assert entries == {
        "s-1": JournalEntry("s-1", "app-1", "converged", 1, T0, T1, T2, None, None, "r1"),
        "s-2": JournalEntry(
            "s-2", "app-2", "failed", 1, T0, None, None, "ConflictException", "wrong state", "r1"
        ),
    }


def test_intent_is_visible_after_reopen(tmp_path: Path) -> None:
    """An intent with no outcome reads back as status intent, the in-doubt case a rerun polls."""
    with Journal.open(tmp_path, WAVE) as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
    with Journal.open(tmp_path, WAVE) as j:
        entry = j.entry("s-1")
    assert entry is not None
    assert (entry.status, entry.attempts, entry.intent_at, entry.finalized_at) == (
        "intent",
        1,
        T0,
        None,
    )


def test_going_backwards_keeps_the_earliest_acceptance(tmp_path: Path) -> None:
    """A new intent or failure after acceptance keeps the first finalized_at and counts attempts."""
    with Journal.open(tmp_path, WAVE) as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_accepted("s-1", at=T1, run_id="r1")
        j.record_intent("s-1", "app-1", at=T2, run_id="r2")
        after_intent = j.entry("s-1")
        j.record_accepted("s-1", at=T3, run_id="r2")
        after_second_accept = j.entry("s-1")
        j.record_failed("s-1", code="InternalServerError", message="boom", run_id="r2")
        after_failure = j.entry("s-1")
    assert after_intent is not None and after_second_accept is not None
    assert after_failure is not None
    assert (after_intent.status, after_intent.finalized_at, after_intent.attempts) == (
        "intent",
        T1,
        2,
    )
    assert after_second_accept.finalized_at == T1
    assert (after_failure.status, after_failure.finalized_at, after_failure.attempts) == (
        "failed",
        T1,
        2,
    )


def test_converged_creates_an_entry_for_a_server_already_cut_over(tmp_path: Path) -> None:
    """record_converged creates an unknown server with zero attempts, or refuses with no app."""
    with Journal.open(tmp_path, WAVE) as j:
        j.record_converged("s-9", at=T2, run_id="r1", application_id="app-9")
        entry = j.entry("s-9")
        with pytest.raises(JournalError, match="s-8"):
            j.record_converged("s-8", at=T2, run_id="r1")
    assert entry == JournalEntry("s-9", "app-9", "converged", 0, None, None, T2, None, None, "r1")


def test_accepted_or_failed_without_an_intent_is_refused(tmp_path: Path) -> None:
    """Acceptance or failure of a server never journaled is a caller bug and raises JournalError."""
    with Journal.open(tmp_path, WAVE) as j:
        with pytest.raises(JournalError, match="no intent"):
            j.record_accepted("s-1", at=T1, run_id="r1")
        with pytest.raises(JournalError, match="s-1"):
            j.record_failed("s-1", code="X", message="y", run_id="r1")
        assert j.entries() == {}


def test_error_messages_are_truncated(tmp_path: Path) -> None:
    """A huge error message is stored cut to about 500 characters."""
    with Journal.open(tmp_path, WAVE) as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_failed("s-1", code="X", message="m" * 10_000, run_id="r1")
        entry = j.entry("s-1")
    assert entry is not None and entry.error_message is not None
    assert 490 <= len(entry.error_message) <= 500


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random bytes", random.Random(7).randbytes(8192)),
        ("empty file", b""),
        ("text file", b"journal\n"),
    ],
)
def test_a_non_database_file_is_refused(tmp_path: Path, name: str, content: bytes) -> None:
    """A journal file that is not SQLite raises JournalError and is left untouched."""
    path = journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(JournalError, match=r"damaged .*refusing to start afresh"):
        Journal.open(tmp_path, WAVE)
    assert path.read_bytes() == content


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_journal_is_refused(tmp_path: Path, keep: float) -> None:
    """A journal cut short (lost pages) raises JournalError instead of opening as partial data."""
    path = make_journal(tmp_path, servers=300)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(JournalError, match="damaged"):
        Journal.open(tmp_path, WAVE)


def test_a_database_without_the_tables_is_refused(tmp_path: Path) -> None:
    """An SQLite file that is not a journal, or lacks a table, raises JournalError naming it."""
    path = journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.raises(JournalError, match="no meta table"):
        Journal.open(tmp_path, WAVE)
    path.unlink()
    make_journal(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE servers")
    conn.close()
    with pytest.raises(JournalError, match="missing tables: servers"):
        Journal.open(tmp_path, WAVE)


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    """A journal written by a newer mgn-cutover raises JournalError asking for an upgrade."""
    path = make_journal(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(JournalError, match=r"schema version 7, newer than version 3.*upgrade"):
        Journal.open(tmp_path, WAVE)


def test_another_waves_journal_is_refused(tmp_path: Path) -> None:
    """A journal whose meta names another wave raises JournalError naming both waves."""
    make_journal(tmp_path)
    (tmp_path / WAVE).rename(tmp_path / "wave-2")
    with pytest.raises(JournalError, match="belongs to wave 'wave-1', not 'wave-2'"):
        Journal.open(tmp_path, "wave-2")


def test_missing_journal_without_create_is_refused(tmp_path: Path) -> None:
    """create=False on a wave with no journal raises JournalError and creates nothing."""
    with pytest.raises(JournalError, match="no journal for wave"):
        Journal.open(tmp_path, WAVE, create=False)
    assert not (tmp_path / WAVE).exists()


@pytest.mark.parametrize("wave", ["..", ".", "a/../../b", "/etc", "link"])
def test_paths_outside_state_dir_are_refused(tmp_path: Path, wave: str) -> None:
    """A wave name or symlink that would resolve outside state_dir raises JournalError."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "link").symlink_to(tmp_path)
    with pytest.raises(JournalError, match="refusing journal path"):
        Journal.open(state, wave)


def test_files_are_private_even_with_umask_0(tmp_path: Path) -> None:
    """The folder is 0700 and the journal and its WAL 0600 whatever the umask."""
    old = os.umask(0)
    try:
        with Journal.open(tmp_path / "state", WAVE) as j:
            j.record_intent("s-1", "app-1", at=T0, run_id="r1")
            wal = j.path.with_name(JOURNAL_FILE + "-wal")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (j.path, wal, j.path.parent)}
    finally:
        os.umask(old)
    assert modes == {JOURNAL_FILE: 0o600, JOURNAL_FILE + "-wal": 0o600, WAVE: 0o700}
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_last_run_record_round_trip(tmp_path: Path) -> None:
    """finish_run stores a RunRecord that last_run_record rebuilds into equal dataclasses."""
    first = RunRecord(WAVE, True, T0, T1, 0, False, {"concurrency": 4})
    second = RunRecord(
        wave=WAVE,
        dry_run=False,
        started_at=T2,
        finished_at=T3,
        exit_code=1,
        interrupted=True,
        config={"concurrency": 16, "state_dir": ".mgn-cutover"},
        servers=[
            ServerResult("s-1", "app-1", name="web", outcome=Outcome.FINALIZED, attempts=1),
            ServerResult("s-2", "app-1", outcome=Outcome.FAILED, error_code="X", error_message="y"),
        ],
        account_error=None,
    )
    with Journal.open(tmp_path, WAVE) as j:
        assert j.last_run_record() is None
        j.start_run("r1", started_at=T0, dry_run=True, pid=11, host="h")
        j.finish_run("r1", first)
        j.start_run("r2", started_at=T2, dry_run=False, pid=12, host="h")
        j.start_run("r3", started_at=T3, dry_run=False, pid=13, host="h")  # never finishes
        j.finish_run("r2", second)
        with pytest.raises(JournalError):
            j.start_run("r1", started_at=T0, dry_run=True, pid=11, host="h")
        with pytest.raises(JournalError, match="never started"):
            j.finish_run("r9", first)
    with Journal.open(tmp_path, WAVE) as j:
        assert j.last_run_record() == second


def test_calls_after_close_raise_journal_error(tmp_path: Path) -> None:
    """Using a closed journal raises JournalError rather than a raw sqlite3 error."""
    j = Journal.open(tmp_path, WAVE)
    j.close()
    with pytest.raises(JournalError):
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")


def test_intent_survives_sigkill(tmp_path: Path) -> None:
    """An intent recorded by a process SIGKILLed right after record_intent returns is readable."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from orchestrator.journal import Journal
        j = Journal.open(Path({str(tmp_path)!r}), {WAVE!r})
        j.record_intent("s-1", "app-1", at={T0!r}, run_id="r1")
        print("recorded", flush=True)
        sys.stdin.read()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "recorded"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert journal_path(tmp_path).with_name(JOURNAL_FILE + "-wal").stat().st_size > 0
    with Journal.open(tmp_path, WAVE, create=False) as j:
        entry = j.entry("s-1")
    assert entry is not None and (entry.status, entry.attempts) == ("intent", 1)


def test_a_version_1_journal_is_upgraded_in_place_keeping_its_entries(tmp_path: Path) -> None:
    """A journal from before the night's steps opens as the current version with its entries
    intact."""
    path = make_journal(tmp_path)
    with Journal.open(tmp_path, WAVE) as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE steps")
        conn.execute("DROP TABLE approvals")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    with Journal.open(tmp_path, WAVE) as j:
        assert j.entries()["s-1"].status == "intent"
        j.record_step("s-1", "app-1", "launch", "intent", at=T1, run_id="r2")
        j.record_step("s-1", "app-1", "launch", "accepted", at=T2, run_id="r2", job_id="mgnjob-1")
        j.record_step("s-1", "app-1", "launch", "done", at=T3, run_id="r2")
        j.record_approval("app-1", run_id="r2", by="alice", at=T2)
        j.record_approval("app-1", run_id="r2", by="mallory", at=T3)
        assert j.steps()["s-1"]["launch"].status == "done"
        assert j.steps()["s-1"]["launch"].job_id == "mgnjob-1"
        assert j.approvals("r2") == {"app-1": ("alice", T2)}
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == ("3",)


# -- grouped commits in a run ----------------------------------------------------------------------


def _on_disk(state_dir: Path) -> dict[str, str]:
    """{server: status} as another process would read the file now."""
    conn = sqlite3.connect(journal_path(state_dir))
    try:
        return dict(conn.execute("SELECT source_server_id, status FROM servers").fetchall())
    finally:
        conn.close()


async def test_in_a_run_intents_of_one_turn_share_a_commit_and_are_on_disk_on_return(
    tmp_path: Path,
) -> None:
    failures: list[str] = []
    with Journal.open(tmp_path, WAVE) as j:
        j.on_failure = failures.append
        before = j.commits
        await asyncio.gather(
            *(j.record_intent_soon(f"s-{i}", "app-1", at=T0, run_id="r1") for i in range(20))
        )
        assert j.commits == before + 1  # twenty intents, one transaction
        assert _on_disk(tmp_path) == {f"s-{i}": "intent" for i in range(20)}
    assert failures == []


async def test_in_a_run_results_are_written_behind_and_read_back_at_once(tmp_path: Path) -> None:
    with Journal.open(tmp_path, WAVE) as j:
        j.on_failure = [].append
        await j.record_intent_soon("s-1", "app-1", at=T0, run_id="r1")
        j.record_accepted("s-1", at=T1, run_id="r1")
        j.record_converged("s-1", at=T2, run_id="r1")
        assert _on_disk(tmp_path) == {"s-1": "intent"}  # not yet committed...
        assert j.entries()["s-1"].status == "converged"  # ...but a read sees it
        j.record_intent("s-2", "app-1", at=T0, run_id="r1")
        j.record_failed("s-2", code="ConflictException", message="no", run_id="r1")
        due = j._flush_at  # committed within WRITE_BEHIND_S without another write:
        assert due is not None
        assert due.when() - asyncio.get_running_loop().time() <= WRITE_BEHIND_S
        j.flush()  # what the timer runs
        assert _on_disk(tmp_path) == {"s-1": "converged", "s-2": "failed"}


async def test_in_a_run_a_result_that_cannot_be_written_stops_the_run(tmp_path: Path) -> None:
    failures: list[str] = []
    with Journal.open(tmp_path, WAVE) as j:
        j.on_failure = failures.append
        j.record_accepted("s-never-sent", at=T1, run_id="r1")  # no intent: cannot be written
        j.flush()
        assert len(failures) == 1 and "not written" in failures[0]
        with pytest.raises(StateWriteError, match="earlier journal write failed"):
            await j.record_intent_soon("s-2", "app-1", at=T0, run_id="r1")
    assert _on_disk(tmp_path) == {}
