"""One contract for both state backends (SQLite files, DynamoDB on moto): the journal and the lock.

Each test runs against both; what SQLite promises (tests/test_journal.py, tests/test_lock.py) the
DynamoDB backend promises too. DynamoDB-only behaviour (the lease's expiry, fencing, the
write-behind) is in tests/test_lease.py.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.dynamo import Table, TableSettings, init_table
from orchestrator.dynamo_journal import DynamoJournal
from orchestrator.errors import JournalError, LockedError
from orchestrator.journal import Journal, JournalEntry
from orchestrator.lease import Lease
from orchestrator.lock import WaveLock
from orchestrator.outcome import Outcome, RunRecord, ServerResult
from orchestrator.state import RunJournal, scope_of
from tests.moto_dynamo import serialize

WAVE = "wave-1"
T0, T1, T2, T3 = (f"2025-03-01T10:00:0{i}Z" for i in range(4))
TABLE = "mgn-cutover-state"


@pytest.fixture(autouse=True)
def _moto_one_call_at_a_time() -> None:
    """Our writers run in several threads; moto's DynamoDB is not thread-safe (moto_dynamo)."""
    serialize()


class Backend:
    """Opens journals and locks of one backend on one shared store."""

    name: str

    def journal(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def lock(self, run_id: str) -> Any:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @contextmanager
    def journal(self) -> Iterator[RunJournal]:
        with Journal.open(self.state_dir, WAVE) as journal:
            yield journal

    def lock(self, run_id: str) -> WaveLock:
        return WaveLock(self.state_dir, WAVE, command=f"mgn-cutover run {run_id}")


class DynamoBackend(Backend):
    name = "dynamodb"

    def __init__(self, url: str, *, read_first: bool = False) -> None:
        self.read_first = read_first  # entries() read before writing: whole-item Puts
        self.settings = TableSettings(TABLE, region="us-east-1", endpoint_url=url)
        init_table(self.settings)
        self.tables: list[Table] = []

    def table(self) -> Table:
        table = Table(self.settings)
        self.tables.append(table)
        return table

    @contextmanager
    def journal(self) -> Iterator[RunJournal]:
        # The journal writes under a held lease: fencing is part of every write.
        with self.lock("writer") as lease:
            journal = DynamoJournal(lease.table, lease.scope, WAVE, lease=lease, write_behind=False)
            with journal:
                if self.read_first:
                    journal.entries()
                yield journal

    def lock(self, run_id: str) -> Lease:
        return Lease(
            self.table(),
            scope_of(None, "us-east-1", WAVE),
            WAVE,
            run_id=run_id,
            lease_s=60,
            heartbeat_s=10,
            command=f"mgn-cutover run {run_id}",
        )


@pytest.fixture(params=["sqlite", "dynamodb", "dynamodb-puts"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, fake_credentials: dict[str, str]
) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path)
        return
    url: str = request.getfixturevalue("moto_url")
    dynamo = DynamoBackend(url, read_first=request.param == "dynamodb-puts")
    yield dynamo
    for table in dynamo.tables:
        table.close()


# -- the journal ----------------------------------------------------------------------------------


def test_round_trip_of_every_record(backend: Backend) -> None:
    """Each record_* call is read back, after reopening, as the entry it describes."""
    with backend.journal() as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_accepted("s-1", at=T1, run_id="r1")
        j.record_converged("s-1", at=T2, run_id="r1")
        j.record_intent("s-2", "app-2", at=T0, run_id="r1")
        j.record_failed("s-2", code="ConflictException", message="wrong state", run_id="r1")
    with backend.journal() as j:
        entries = j.entries()
    assert entries == {
        "s-1": JournalEntry("s-1", "app-1", "converged", 1, T0, T1, T2, None, None, "r1"),
        "s-2": JournalEntry(
            "s-2", "app-2", "failed", 1, T0, None, None, "ConflictException", "wrong state", "r1"
        ),
    }


def test_going_backwards_keeps_the_earliest_acceptance(backend: Backend) -> None:
    """A new intent or failure after acceptance keeps the first finalized_at and counts attempts."""
    with backend.journal() as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_accepted("s-1", at=T1, run_id="r1")
        j.record_intent("s-1", "app-1", at=T2, run_id="r2")
        after_intent = j.entries()["s-1"]
        j.record_accepted("s-1", at=T3, run_id="r2")
        after_second_accept = j.entries()["s-1"]
        j.record_failed("s-1", code="InternalServerError", message="boom", run_id="r2")
        after_failure = j.entries()["s-1"]
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


def test_converged_creates_an_entry_for_a_server_already_cut_over(backend: Backend) -> None:
    """record_converged creates an unknown server with zero attempts, or refuses with no app."""
    with backend.journal() as j:
        j.record_converged("s-9", at=T2, run_id="r1", application_id="app-9")
        entry = j.entries()["s-9"]
        with pytest.raises(JournalError, match="s-8"):
            j.record_converged("s-8", at=T2, run_id="r1")
    assert entry == JournalEntry("s-9", "app-9", "converged", 0, None, None, T2, None, None, "r1")


def test_converged_after_an_ambiguous_call_sets_finalized_at(backend: Backend) -> None:
    """finalized=True records the finalize as ours when no acceptance was ever journaled."""
    with backend.journal() as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_converged("s-1", at=T2, run_id="r2", finalized=True)
        entry = j.entries()["s-1"]
    assert (entry.status, entry.finalized_at, entry.converged_at) == ("converged", T2, T2)


def test_accepted_or_failed_without_an_intent_is_refused(backend: Backend) -> None:
    """Acceptance or failure of a server never journaled is a caller bug and raises JournalError."""
    with backend.journal() as j:
        with pytest.raises(JournalError, match="no intent"):
            j.record_accepted("s-1", at=T1, run_id="r1")
        with pytest.raises(JournalError, match="s-1"):
            j.record_failed("s-1", code="X", message="y", run_id="r1")
        assert j.entries() == {}


def test_error_messages_are_truncated(backend: Backend) -> None:
    """A huge error message is stored cut to about 500 characters."""
    with backend.journal() as j:
        j.record_intent("s-1", "app-1", at=T0, run_id="r1")
        j.record_failed("s-1", code="X", message="m" * 10_000, run_id="r1")
        entry = j.entries()["s-1"]
    assert entry.error_message is not None
    assert 490 <= len(entry.error_message) <= 500


def _big_record(servers: int) -> RunRecord:
    return RunRecord(
        wave=WAVE,
        dry_run=False,
        started_at=T2,
        finished_at=T3,
        exit_code=1,
        interrupted=True,
        config={"concurrency": 16, "state_dir": ".mgn-cutover"},
        servers=[
            ServerResult(
                f"s-{i:017x}",
                "app-1",
                name=f"web-{i}",
                outcome=Outcome.FINALIZED,
                attempts=1,
                reason=f"reason {i} " * 20,
                timeline=[{"at": T0, "event": "finalize_sent", "detail": None}],
            )
            for i in range(servers)
        ],
        account_error=None,
        run_id="r2",
    )


def test_last_run_record_round_trip(backend: Backend) -> None:
    """finish_run stores a RunRecord (even one of 4,000 servers) that last_run_record rebuilds;
    a real run's record wins over a dry run's; a duplicate start or an unknown run is refused."""
    first = RunRecord(WAVE, True, T0, T1, 0, False, {"concurrency": 4})
    second = _big_record(4000)
    with backend.journal() as j:
        assert j.last_run_record() is None
        j.start_run("r1", started_at=T0, dry_run=True, pid=11, host="h")
        j.finish_run("r1", first)
        assert j.last_run_record() == first
        j.start_run("r2", started_at=T2, dry_run=False, pid=12, host="h")
        j.start_run("r3", started_at=T3, dry_run=False, pid=13, host="h")  # never finishes
        j.finish_run("r2", second)
        with pytest.raises(JournalError):
            j.start_run("r1", started_at=T0, dry_run=True, pid=11, host="h")
        with pytest.raises(JournalError, match="never started"):
            j.finish_run("r9", first)
        with pytest.raises(JournalError, match="wave"):
            j.finish_run("r3", RunRecord("other", False, T0, T1, 0, False, {}))
    with backend.journal() as j:
        assert j.last_run_record() == second


def test_run_record_by_id_prefix(backend: Backend) -> None:
    """run_record finds a finished run by 6+ leading characters; ambiguity raises JournalError."""
    record = RunRecord(WAVE, False, T0, T1, 0, False, {})
    with backend.journal() as j:
        for run_id in ("abcdef01", "abcdef02", "123456aa"):
            j.start_run(run_id, started_at=T0, dry_run=False, pid=1, host="h")
            j.finish_run(run_id, record)
        assert j.run_record("123456") == record
        assert j.run_record("12345") is None
        assert j.run_record("999999") is None
        with pytest.raises(JournalError, match="ambiguous"):
            j.run_record("abcdef")


# -- the lock -------------------------------------------------------------------------------------


def test_second_holder_is_refused_at_once_naming_the_first(backend: Backend) -> None:
    """While one holder has the lock, another's acquire raises LockedError naming pid and host."""
    first = backend.lock("run-one")
    first.acquire()
    try:
        with pytest.raises(LockedError) as info:
            backend.lock("run-two").acquire()
    finally:
        first.release()
    message = str(info.value)
    assert f"wave {WAVE} is locked by pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "run-one" in message


def test_release_then_reacquire(backend: Backend) -> None:
    """A released lock can be taken again, by this or another object; release twice is a no-op."""
    lock = backend.lock("a")
    lock.acquire()
    with pytest.raises(LockedError):
        backend.lock("b").acquire()
    lock.release()
    lock.release()
    other = backend.lock("c")
    other.acquire()
    other.release()
    lock.acquire()
    lock.release()


def test_a_lock_cannot_be_acquired_twice_by_its_holder(backend: Backend) -> None:
    """Acquiring a lock this object already holds is a bug: RuntimeError."""
    lock = backend.lock("a")
    lock.acquire()
    try:
        with pytest.raises(RuntimeError):
            lock.acquire()
    finally:
        lock.release()


def test_a_dead_holders_lock_is_taken_over(backend: Backend, expire: Callable[[Any], None]) -> None:
    """A holder that never released (it died) loses the lock to the next run: at once for
    SQLite (the kernel drops the flock), once its lease has expired for DynamoDB."""
    dead = backend.lock("dead")
    dead.acquire()
    expire(dead)
    taker = backend.lock("taker")
    taker.acquire()
    taker.release()


@pytest.fixture
def expire(backend: Backend) -> Callable[[Any], None]:
    """Make a held lock look like its holder died without releasing it."""

    def kill(lock: Any) -> None:
        if isinstance(lock, WaveLock):
            fd = lock._fd
            assert fd is not None
            os.close(fd)  # what the kernel does when the holder dies
            lock._fd = None
        else:
            lock.stop_heartbeat()
            lock.token = None  # it never releases
            table = lock.table
            table.call(
                "UpdateItem",
                TableName=table.name,
                Key={"pk": {"S": lock.scope}, "sk": {"S": "lease"}},
                UpdateExpression="SET expires_at = :past",
                ExpressionAttributeValues={":past": {"N": "1"}},
            )

    return kill
