"""After the launch, via boto3: revert, terminate, mark CUTOVER, archive; replication facts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.emulator.faults import Faults
from orchestrator.emulator.testing import EmulatorHandle, running_emulator

SID = "s-0a1b2c3d4e5f6a7b8"
SID2 = "s-1a1b2c3d4e5f6a7b8"
REVERT = {"state": "READY_FOR_CUTOVER"}


@pytest.fixture
def handle(fake_clock: Any) -> Iterator[EmulatorHandle]:
    """Two READY_FOR_CUTOVER servers on the fake clock; launches take 30 s, boots 30 s."""
    fixture = {
        "defaults": {"state": "READY_FOR_CUTOVER"},
        "servers": [{"sourceServerID": SID}, {"sourceServerID": SID2}],
    }
    faults = Faults(launch_s=(30, 30), boot_s=(30, 30))
    with running_emulator(fixture=fixture, faults=faults, clock=fake_clock) as h:
        yield h


@pytest.fixture
def mgn(handle: EmulatorHandle, make_mgn_client: Any) -> Any:
    return make_mgn_client(handle.url)


def launched(mgn: Any, handle: EmulatorHandle) -> str:
    """Start cutover of SID and let launch and boot finish; the instance ID."""
    mgn.start_cutover(sourceServerIDs=[SID])
    handle.advance(60)
    return str(handle.server(SID)["launchedInstance"]["ec2InstanceID"])


def test_revert_then_terminate(mgn: Any, handle: EmulatorHandle) -> None:
    """Terminate is refused while CUTTING_OVER; after a revert it runs a TERMINATE job that
    clears launchedInstance, and the server can be launched again."""
    instance_id = launched(mgn, handle)
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.terminate_target_instances(sourceServerIDs=[SID])
    assert "CUTTING_OVER" in info.value.response["Error"]["Message"]
    reverted = mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle=REVERT)
    assert reverted["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert "apiCallDateTime" in reverted["lifeCycle"]["lastCutover"]["reverted"]
    out = mgn.terminate_target_instances(sourceServerIDs=[SID])
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202
    job = out["job"]
    assert (job["type"], job["initiatedBy"]) == ("TERMINATE", "TERMINATE")
    assert "launchedInstance" not in handle.server(SID)
    [seen] = mgn.describe_jobs(filters={"jobIDs": [job["jobID"]]})["items"]
    assert seen["status"] == "COMPLETED"
    assert seen["participatingServers"] == [
        {"sourceServerID": SID, "launchStatus": "TERMINATED", "launchedEc2InstanceID": instance_id}
    ]
    mgn.start_cutover(sourceServerIDs=[SID])
    assert handle.launches() == {SID: 2}


def test_revert_refused_while_the_launch_job_runs(mgn: Any, handle: EmulatorHandle) -> None:
    """A server in an active launch job cannot be reverted; once the job is done it can."""
    mgn.start_cutover(sourceServerIDs=[SID])
    handle.advance(59)
    with pytest.raises(mgn.exceptions.ConflictException):
        mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle=REVERT)
    handle.advance(1)
    mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle=REVERT)


@pytest.mark.parametrize("state", ["TESTING", "CUTTING_OVER", "CUTOVER"])
def test_terminate_refused_states(make_mgn_client: Any, state: str) -> None:
    """TerminateTargetInstances is a ConflictException in TESTING, CUTTING_OVER and CUTOVER."""
    fixture = {"servers": [{"sourceServerID": SID, "state": state, "firstBoot": "SUCCEEDED"}]}
    with running_emulator(fixture=fixture) as h:
        mgn = make_mgn_client(h.url)
        with pytest.raises(mgn.exceptions.ConflictException) as info:
            mgn.terminate_target_instances(sourceServerIDs=[SID])
        assert state in info.value.response["Error"]["Message"]
        assert "launchedInstance" in h.server(SID) and h.jobs() == []


def test_terminate_takes_job_quota(make_mgn_client: Any, fake_clock: Any) -> None:
    """A TERMINATE job counts against the concurrent-jobs quota like a launch job."""
    fixture = {"servers": [{"sourceServerID": SID, "state": "READY_FOR_CUTOVER"}]}
    faults = Faults(max_active_jobs=1, stuck_job_rate=1.0)
    with running_emulator(fixture=fixture, faults=faults, clock=fake_clock) as h:
        h.seed({"servers": [{"sourceServerID": SID2, "state": "READY_FOR_TEST"}]})
        mgn = make_mgn_client(h.url)
        mgn.start_cutover(sourceServerIDs=[SID])
        with pytest.raises(mgn.exceptions.ServiceQuotaExceededException):
            mgn.terminate_target_instances(sourceServerIDs=[SID2])


def test_change_to_cutover_and_not_after_finalize(mgn: Any, handle: EmulatorHandle) -> None:
    """CUTOVER via ChangeServerLifeCycleState keeps replication; after FinalizeCutover no state
    change is allowed (lagDuration is gone)."""
    launched(mgn, handle)
    out = mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle={"state": "CUTOVER"})
    assert out["lifeCycle"]["state"] == "CUTOVER"
    assert out["dataReplicationInfo"]["lagDuration"]
    back = mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle=REVERT)
    assert back["lifeCycle"]["state"] == "READY_FOR_CUTOVER"

    mgn.start_cutover(sourceServerIDs=[SID2])
    handle.advance(60)
    done = mgn.finalize_cutover(sourceServerID=SID2)
    assert "lagDuration" not in done["dataReplicationInfo"]
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.change_server_life_cycle_state(sourceServerID=SID2, lifeCycle=REVERT)
    assert "lagDuration" in info.value.response["Error"]["Message"]


def test_change_to_cutover_refused_outside_cutting_over(mgn: Any) -> None:
    """CUTOVER is reachable only from CUTTING_OVER."""
    with pytest.raises(mgn.exceptions.ConflictException):
        mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle={"state": "CUTOVER"})


def test_mark_as_archived(mgn: Any, handle: EmulatorHandle) -> None:
    """MarkAsArchived is refused before CUTOVER and sets isArchived after finalize."""
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.mark_as_archived(sourceServerID=SID)
    assert "READY_FOR_CUTOVER" in info.value.response["Error"]["Message"]
    launched(mgn, handle)
    with pytest.raises(mgn.exceptions.ConflictException):
        mgn.mark_as_archived(sourceServerID=SID)
    mgn.finalize_cutover(sourceServerID=SID)
    assert mgn.mark_as_archived(sourceServerID=SID)["isArchived"] is True
    archived = mgn.describe_source_servers(filters={"isArchived": True})["items"]
    assert [s["sourceServerID"] for s in archived] == [SID]


def test_replication_facts_from_the_fixture(make_mgn_client: Any) -> None:
    """A fixture sets lagDuration and dataReplicationError; Describe shows them as MGN would."""
    fixture = {
        "defaults": {"state": "READY_FOR_CUTOVER"},
        "servers": [
            {"sourceServerID": SID, "lagDuration": "PT2H5M"},
            {
                "sourceServerID": SID2,
                "replicationState": "STALLED",
                "dataReplicationError": {"error": "NOT_CONVERGING", "rawError": "slow link"},
            },
        ],
    }
    with running_emulator(fixture=fixture) as h:
        mgn = make_mgn_client(h.url)
        items = {s["sourceServerID"]: s for s in mgn.describe_source_servers()["items"]}
        assert items[SID]["dataReplicationInfo"]["lagDuration"] == "PT2H5M"
        assert items[SID]["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"
        info = items[SID2]["dataReplicationInfo"]
        assert info["dataReplicationState"] == "STALLED"
        assert info["dataReplicationError"] == {"error": "NOT_CONVERGING", "rawError": "slow link"}
        assert info["lagDuration"].startswith("PT")
