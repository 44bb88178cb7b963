"""A journal belongs to one MGN (issue 21, point 2): a rehearsal's journal and lock are its own,
a journal written for another MGN is never trusted, and a run names the journal it uses.

Subprocess runs against the emulator over HTTP. The same emulator reached as `127.0.0.1` and
as `localhost` is two MGN endpoints, as a rehearsal's `simulate` and the night's MGN are.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.dynamo import Table, TableSettings, init_table
from orchestrator.errors import JournalError
from orchestrator.journal import AWS_SCOPE, Journal, JournalOwner
from orchestrator.state import endpoint_scope
from tests.moto_dynamo import serialize
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


def _other_endpoint(url: str) -> str:
    """The same emulator under another host name: another MGN endpoint."""
    return url.replace("127.0.0.1", "localhost")


def _events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_rehearsal_leaves_the_nights_journal_untouched_and_the_night_finalizes(
    emulator: Any, work_dir: Path
) -> None:
    """After a rehearsal whose finalize was accepted but never converged, a run against another
    MGN trusts nothing of it: it sends FinalizeCutover and finalizes, and the rehearsal wrote
    nothing in the real-AWS folder of state_dir."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [server(s, aid(0), stuck=True) for s in groups[aid(0)]]})
    plan = write_plan(work_dir, "w", groups)
    rehearsal = mgn_cutover(
        run_args(plan, "w", work_dir, "--timeout", "0.5"), cli_env(emulator.url)
    )
    assert rehearsal.returncode == 1, rehearsal.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"timed_out"}
    assert not (work_dir / "state" / "w").exists()  # the night's (real AWS) folder
    rehearsal_journal = work_dir / "state" / endpoint_scope(emulator.url) / "w" / "journal.sqlite3"
    assert rehearsal_journal.is_file()

    emulator.seed({"servers": [server(s, aid(0)) for s in groups[aid(0)]]})
    emulator.reset_counters()
    night = mgn_cutover(run_args(plan, "w", work_dir), cli_env(_other_endpoint(emulator.url)))
    assert night.returncode == 0, night.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    assert emulator.calls("FinalizeCutover") == 2
    opened = [e for e in _events(night.stderr) if e["event"] == "journal_opened"]
    night_root = work_dir / "state" / endpoint_scope(_other_endpoint(emulator.url))
    assert [e["path"] for e in opened] == [str(night_root / "w" / "journal.sqlite3")]
    assert report(work_dir, "w")["config"]["journal"] == opened[0]["path"]
    with Journal.open(rehearsal_journal.parent.parent, "w") as j:  # the rehearsal's, as it was
        assert {e.status for e in j.entries().values()} == {"accepted"}


def test_a_journal_written_for_another_mgn_is_refused_with_exit_2(
    emulator: Any, work_dir: Path
) -> None:
    """A journal moved under another MGN's folder stops the run with exit 2 naming the file and
    both MGNs; nothing is sent."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    first = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url))
    assert first.returncode == 0, first.stderr[-3000:]
    state = work_dir / "state"
    other = endpoint_scope(_other_endpoint(emulator.url))
    shutil.copytree(state / endpoint_scope(emulator.url), state / other)
    emulator.reset_counters()
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(_other_endpoint(emulator.url)))
    assert out.returncode == 2, out.stdout + out.stderr
    assert str(state / other / "w" / "journal.sqlite3") in out.stderr
    assert endpoint_scope(emulator.url) in out.stderr and "never trusted" in out.stderr
    assert emulator.calls("FinalizeCutover") == emulator.calls("DescribeSourceServers") == 0


def test_a_journal_of_another_region_is_refused_with_exit_2(emulator: Any, work_dir: Path) -> None:
    """The SQLite journal records the wave's region: a run of the same wave in another region
    refuses it (exit 2) instead of trusting what it says about other servers."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    env = cli_env(emulator.url)
    first = mgn_cutover(run_args(plan, "w", work_dir, "--region", "us-east-1"), env)
    assert first.returncode == 0, first.stderr[-3000:]
    out = mgn_cutover(run_args(plan, "w", work_dir, "--region", "eu-west-1"), env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "region us-east-1, not eu-west-1" in out.stderr


def test_a_journal_that_records_no_mgn_belongs_to_real_aws(tmp_path: Path) -> None:
    """A journal from before journals recorded their MGN opens for real AWS and records it
    then; it is refused for a rehearsal."""
    Journal.open(tmp_path, "w").close()
    path = tmp_path / "w" / "journal.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'mgn_scope'")
    conn.close()
    with pytest.raises(JournalError, match="written for MGN aws"):
        Journal.open(tmp_path, "w", owner=JournalOwner("rehearsal@127.0.0.1-8080"))
    Journal.open(tmp_path, "w", owner=JournalOwner(AWS_SCOPE, None, "us-east-1")).close()
    with pytest.raises(JournalError, match="region us-east-1, not eu-west-1"):
        Journal.open(tmp_path, "w", owner=JournalOwner(AWS_SCOPE, None, "eu-west-1"))


def test_a_rehearsal_on_dynamodb_writes_only_its_own_partitions(
    emulator: Any, work_dir: Path, moto_url: str
) -> None:
    """With state_backend dynamodb, a rehearsal's lease and journal items are keyed by its MGN:
    no item of the real-AWS partition (`scope#...`) is written."""
    serialize()
    settings = TableSettings(table="state", region="us-east-1", profile=None, endpoint_url=moto_url)
    list(init_table(settings))
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    dynamo = ["--state-backend", "dynamodb", "--state-table", "state"]
    env = cli_env(emulator.url, {"MGN_CUTOVER_STATE_ENDPOINT_URL": moto_url})
    out = mgn_cutover(run_args(plan, "w", work_dir, *dynamo), env)
    assert out.returncode == 0, out.stderr[-3000:]
    table = Table(settings)
    try:
        [index] = list(table.query("wave#w", "scope"))
        assert str(index["sk"]).startswith(f"scope@{endpoint_scope(emulator.url)}#")
        assert list(table.query("scope#-#us-east-1#w", "lease")) == []
        assert list(table.query("scope#-#us-east-1#w", "server#")) == []
        assert list(table.query(str(index["sk"]), "server#"))
    finally:
        table.close()
