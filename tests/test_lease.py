"""The DynamoDB lease and fenced journal on moto: expiry, takeover, fencing, write-behind.

Clocks are fake (the lease takes `wall` and `mono`); the heartbeat is driven by hand through
`heartbeat_once`, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from orchestrator.dynamo import Table, TableSettings, init_table
from orchestrator.dynamo_journal import DynamoJournal, StepEntry
from orchestrator.errors import JournalError, LockedError, StateWriteError
from orchestrator.lease import Lease
from tests.conftest import FakeClock
from tests.moto_dynamo import serialize

WAVE = "w"
SCOPE = "scope#-#us-east-1#w"
LEASE_S, BEAT_S = 10.0, 3.0


@pytest.fixture(autouse=True)
def _moto_one_call_at_a_time() -> None:
    """Our writers run in several threads; moto's DynamoDB is not thread-safe (moto_dynamo)."""
    serialize()


@pytest.fixture
def table(moto_url: str, fake_credentials: dict[str, str]) -> Iterator[Table]:
    settings = TableSettings("state", region="us-east-1", endpoint_url=moto_url)
    init_table(settings)
    table = Table(settings)
    yield table
    table.close()


def lease(table: Table, run_id: str, wall: FakeClock, mono: FakeClock) -> Lease:
    return Lease(
        table, SCOPE, WAVE, run_id=run_id, lease_s=LEASE_S, heartbeat_s=BEAT_S,
        command="mgn-cutover run", wall=wall, mono=mono,
    )  # fmt: skip


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_write_nothing(
    table: Table,
) -> None:
    """After A's lease expires, B takes it (a new token); A's next journal write is refused,
    A learns it lost the lease once, and B's writes go through."""
    wall, mono_a, mono_b = FakeClock(1000.0), FakeClock(), FakeClock()
    a = lease(table, "run-a", wall, mono_a)
    a.acquire()
    told: list[str] = []
    a.on_lost(told.append)
    journal_a = DynamoJournal(table, SCOPE, WAVE, lease=a, write_behind=False)
    journal_a.record_intent("s-1", "app-1", at="T0", run_id="run-a")

    b = lease(table, "run-b", wall, mono_b)
    with pytest.raises(LockedError, match=r"pid \d+ .*run run-a.*expires in 10 s"):
        b.acquire()
    wall.advance(LEASE_S + 1)  # A is paused: no renewal, its lease runs out
    b.acquire()
    assert (a.token, b.token) == (1, 2)

    with pytest.raises(StateWriteError, match="lease lost"):
        journal_a.record_intent("s-2", "app-1", at="T1", run_id="run-a")
    with pytest.raises(StateWriteError, match="lease lost"):
        journal_a.record_intent("s-3", "app-1", at="T1", run_id="run-a")
    assert len(told) == 1 and "took the lease over" in told[0]
    journal_b = DynamoJournal(table, SCOPE, WAVE, lease=b, write_behind=False)
    journal_b.record_intent("s-2", "app-1", at="T2", run_id="run-b")
    assert sorted(journal_b.entries()) == ["s-1", "s-2"]
    assert journal_b.entries()["s-2"].run_id == "run-b"


def test_a_heartbeat_after_a_takeover_loses_the_lease(table: Table) -> None:
    """A holder whose token was replaced finds out at its next renewal."""
    wall, mono = FakeClock(1000.0), FakeClock()
    a = lease(table, "run-a", wall, mono)
    a.acquire()
    assert a.heartbeat_once()
    wall.advance(LEASE_S + 1)
    lease(table, "run-b", wall, FakeClock()).acquire()
    assert not a.heartbeat_once()
    assert a.lost == "another run took the lease over"


def test_a_paused_holder_stops_itself_once_its_local_deadline_passed(table: Table) -> None:
    """Past its own deadline (start of the last renewal + lease_s), a holder neither renews nor
    writes, even if nobody took over: it was paused, and cannot know what happened meanwhile."""
    wall, mono = FakeClock(1000.0), FakeClock()
    a = lease(table, "run-a", wall, mono)
    a.acquire()
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a, write_behind=False)
    mono.advance(BEAT_S)
    assert a.heartbeat_once()  # renewed: the deadline moves to BEAT_S + LEASE_S
    mono.advance(LEASE_S - 0.5)
    journal.record_intent("s-1", "app-1", at="T0", run_id="run-a")
    mono.advance(1.0)
    before = dict(table.counts.requests)
    with pytest.raises(StateWriteError, match="expired before it was renewed"):
        journal.record_intent("s-2", "app-1", at="T1", run_id="run-a")
    assert not a.heartbeat_once()
    assert table.counts.requests == before  # neither the write nor a renewal reached DynamoDB


def test_renewal_pushes_the_expiry_that_others_see(table: Table) -> None:
    """Each heartbeat moves expires_at to now + lease_s, keeping other hosts out."""
    wall, mono = FakeClock(1000.0), FakeClock()
    a = lease(table, "run-a", wall, mono)
    a.acquire()
    for _ in range(5):
        wall.advance(BEAT_S)
        mono.advance(BEAT_S)
        assert a.heartbeat_once()
    holder = a.holder()
    assert holder is not None and holder.expires_at == wall() + LEASE_S
    with pytest.raises(LockedError):
        lease(table, "run-b", wall, FakeClock()).acquire()
    a.release()
    lease(table, "run-b", wall, FakeClock()).acquire()


def test_results_are_written_behind_in_order_and_flushed(table: Table) -> None:
    """Accepted and converged records queue behind the intent, in order; flush writes them all
    in fewer requests than records."""
    a = lease(table, "run-a", FakeClock(1000.0), FakeClock())
    a.acquire()
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a)
    for i in range(50):
        journal.record_intent(f"s-{i:02d}", "app-1", at="T0", run_id="r")
    for i in range(50):
        journal.record_accepted(f"s-{i:02d}", at="T1", run_id="r")
        journal.record_converged(f"s-{i:02d}", at="T2", run_id="r", finalized=True)
    journal.flush()
    entries = journal.entries()
    assert {e.status for e in entries.values()} == {"converged"}
    assert {(e.finalized_at, e.converged_at) for e in entries.values()} == {("T1", "T2")}
    journal.close()
    assert table.counts.items_written == 150
    assert table.counts.requests["TransactWriteItems"] <= 150


def test_a_result_that_cannot_be_written_stops_the_run_and_every_later_write(
    table: Table,
) -> None:
    """A queued write that fails tells on_failure; the next intent raises StateWriteError."""
    a = lease(table, "run-a", FakeClock(1000.0), FakeClock())
    a.acquire()
    failures: list[str] = []
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a, on_failure=failures.append)
    journal.record_accepted("s-never-sent", at="T1", run_id="r")  # no intent: refused
    with pytest.raises(StateWriteError, match="s-never-sent"):
        journal.flush()
    assert len(failures) == 1
    with pytest.raises(StateWriteError, match="earlier journal write failed"):
        journal.record_intent("s-1", "app-1", at="T2", run_id="r")
    assert journal.entries() == {}


def test_steps_are_fenced_and_approvals_are_not(table: Table) -> None:
    """The night's steps (launch, revert, archive) are written under the lease and keep a job
    ID once known; an approval is written by anyone (`approve` runs while the run holds the
    lease) and the first one stands."""
    wall = FakeClock(1000.0)
    a = lease(table, "run-a", wall, FakeClock())
    a.acquire()
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a)
    journal.record_step("s-1", "app-1", "launch", "intent", at="T0", run_id="r")
    journal.record_step("s-1", "app-1", "launch", "accepted", at="T1", run_id="r", job_id="job-1")
    journal.record_step("s-1", "app-1", "launch", "done", at="T2", run_id="r", detail="ok")
    journal.record_step("s-2", "app-1", "revert", "failed", at="T3", run_id="r", detail="x" * 900)
    steps = journal.steps()
    assert steps["s-1"] == {"launch": StepEntry("done", "job-1", "ok", "T2", "r")}
    detail = steps["s-2"]["revert"].detail
    assert detail is not None and len(detail) <= 500

    approver = DynamoJournal(table, SCOPE, WAVE, lease=None)  # another process: no lease
    approver.record_approval("app-1", run_id="r", by="alice", at="T4")
    approver.record_approval("app-1", run_id="r", by="bob", at="T5")
    assert journal.approvals("r") == {"app-1": ("alice", "T4")}
    assert journal.approvals("another-run") == {}
    with pytest.raises(StateWriteError, match="read-only"):
        approver.record_step("s-1", "app-1", "archive", "done", at="T6", run_id="r")

    wall.advance(LEASE_S + 1)
    lease(table, "run-b", wall, FakeClock()).acquire()
    with pytest.raises(StateWriteError, match="lease lost"):
        journal.record_step("s-3", "app-1", "launch", "intent", at="T7", run_id="r")
    journal.close()


def test_once_entries_are_read_every_server_write_is_a_put_of_the_whole_item(table: Table) -> None:
    """After the run's read of entries(), intents and results are Puts; an item an older
    version wrote by Updates (no revision) is taken over, keeping its attempts and first
    finalized_at."""
    a = lease(table, "run-a", FakeClock(1000.0), FakeClock())
    a.acquire()
    old = DynamoJournal(table, SCOPE, WAVE, lease=a, write_behind=False)  # never read: Updates
    old.record_intent("s-1", "app-1", at="T0", run_id="r0")
    old.record_accepted("s-1", at="T1", run_id="r0")
    assert table.counts.actions.get("Put", 0) == 0

    journal = DynamoJournal(table, SCOPE, WAVE, lease=a)
    journal.entries()
    journal.record_intent("s-1", "app-1", at="T2", run_id="r1")
    journal.record_intent("s-2", "app-2", at="T2", run_id="r1")
    journal.record_accepted("s-1", at="T3", run_id="r1")
    journal.record_failed("s-2", code="ConflictException", message="no", run_id="r1")
    journal.record_converged("s-1", at="T4", run_id="r1")
    journal.record_converged("s-3", at="T4", run_id="r1", application_id="app-3")
    journal.flush()
    entries = journal.entries()
    journal.close()
    assert table.counts.actions["Put"] == 6
    s1, s2, s3 = entries["s-1"], entries["s-2"], entries["s-3"]
    assert (s1.status, s1.attempts, s1.intent_at, s1.finalized_at, s1.converged_at) == (
        "converged", 2, "T2", "T1", "T4",
    )  # fmt: skip
    assert (s2.status, s2.attempts, s2.error_code) == ("failed", 1, "ConflictException")
    assert (s3.status, s3.attempts, s3.application_id) == ("converged", 0, "app-3")


def test_a_whole_item_write_over_someone_elses_change_is_refused(table: Table) -> None:
    """If a server's item changed behind the lease holder's back, its Put is refused (nothing
    overwritten, the run stops) and the journal goes back to Update expressions."""
    a = lease(table, "run-a", FakeClock(1000.0), FakeClock())
    a.acquire()
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a, write_behind=False)
    journal.entries()
    journal.record_intent("s-1", "app-1", at="T0", run_id="r")
    table.call(
        "UpdateItem", TableName=table.name, Key={"pk": {"S": SCOPE}, "sk": {"S": "server#s-1"}},
        UpdateExpression="SET rev = rev + :one", ExpressionAttributeValues={":one": {"N": "1"}},
    )  # fmt: skip
    with pytest.raises(JournalError, match="server#s-1 was changed by another writer"):
        journal.record_accepted("s-1", at="T1", run_id="r")
    assert journal.entries()["s-1"].status == "intent"
    journal.record_accepted("s-1", at="T1", run_id="r")  # an Update: needs only the intent
    assert journal.entries()["s-1"].status == "accepted"
    assert table.counts.actions["Put"] == 1
    journal.close()


def test_intents_from_the_event_loop_are_group_committed_and_durable_on_return(
    table: Table,
) -> None:
    """Intents awaited together go in one fenced transaction, each durable when its await
    returns; if the lease is lost, every waiter hears it and nothing is written."""
    a = lease(table, "run-a", FakeClock(1000.0), FakeClock())
    a.acquire()
    journal = DynamoJournal(table, SCOPE, WAVE, lease=a)
    journal.entries()

    async def intents(ids: range) -> list[BaseException | None]:
        return await asyncio.gather(
            *(journal.record_intent_soon(f"s-{i}", "app-1", at="T0", run_id="r") for i in ids),
            return_exceptions=True,
        )

    before = table.counts.requests.get("TransactWriteItems", 0)
    assert asyncio.run(intents(range(10))) == [None] * 10
    assert table.counts.requests["TransactWriteItems"] - before == 1
    assert {e.status for e in journal.entries().values()} == {"intent"}
    assert journal.intent_batches == 1

    a.lose("taken over")
    failed = asyncio.run(intents(range(10, 15)))
    assert all(isinstance(f, StateWriteError) for f in failed)
    assert len(journal.entries()) == 10
    journal.close()
