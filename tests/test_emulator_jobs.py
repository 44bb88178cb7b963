"""Job quotas, refusals, faults on StartCutover and DescribeJobs, seen by boto3 over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from orchestrator.emulator.faults import Faults
from orchestrator.emulator.testing import EmulatorHandle, running_emulator

OTHER_ACCOUNT = "222222222222"


def sid(n: int) -> str:
    return f"s-{n:017x}"


def ready(count: int, **spec: Any) -> dict[str, Any]:
    """A fixture of `count` READY_FOR_CUTOVER servers s-...0, s-...1, ..."""
    return {
        "defaults": {"state": "READY_FOR_CUTOVER", **spec},
        "servers": [{"sourceServerID": sid(n)} for n in range(count)],
    }


@pytest.fixture
def handle(fake_clock: Any) -> Iterator[EmulatorHandle]:
    """An emulator on the fake clock, 260 servers ready; launches take 1000 s."""
    faults = Faults(launch_s=(1000, 1000))
    with running_emulator(fixture=ready(260), faults=faults, clock=fake_clock) as h:
        yield h


@pytest.fixture
def mgn(handle: EmulatorHandle, make_mgn_client: Any) -> Any:
    return make_mgn_client(handle.url)


def test_twenty_active_jobs_then_quota(mgn: Any, handle: EmulatorHandle) -> None:
    """The 21st concurrent job is ServiceQuotaExceededException (402) with its modeled fields."""
    for n in range(20):
        mgn.start_cutover(sourceServerIDs=[sid(n)])
    with pytest.raises(mgn.exceptions.ServiceQuotaExceededException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(20)])
    r = info.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 402
    assert r["quotaValue"] == 20 and r["serviceCode"] == "mgn" and r["quotaCode"]
    assert r["resourceType"] == "JOB" and "20 of 20" in r["Error"]["Message"]
    assert handle.server(sid(20))["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert len(handle.active_jobs()) == 20 and sid(20) not in handle.launches()
    handle.advance(1000)  # every job completes: slots free again
    assert mgn.start_cutover(sourceServerIDs=[sid(20)])["job"]["jobID"]


def test_two_hundred_servers_across_active_jobs(mgn: Any, handle: EmulatorHandle) -> None:
    """150 + 51 servers in flight breaks the 200 quota; 150 + 50 fits; completion frees slots."""
    mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(150)])
    with pytest.raises(mgn.exceptions.ServiceQuotaExceededException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(150, 201)])
    assert info.value.response["quotaValue"] == 200
    assert "150 active + 51 requested" in info.value.response["Error"]["Message"]
    mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(150, 200)])
    with pytest.raises(mgn.exceptions.ServiceQuotaExceededException):
        mgn.start_cutover(sourceServerIDs=[sid(200)])
    handle.advance(1000)
    mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(200, 260)])
    assert max(handle.launches().values()) == 1 and len(handle.launches()) == 260


def test_quota_values_are_configurable(fake_clock: Any, make_mgn_client: Any) -> None:
    """max_active_jobs 2 makes the third concurrent job a quota error."""
    faults = Faults(launch_s=(10, 10), max_active_jobs=2)
    with running_emulator(fixture=ready(3), faults=faults, clock=fake_clock) as h:
        mgn = make_mgn_client(h.url)
        mgn.start_cutover(sourceServerIDs=[sid(0)])
        mgn.start_cutover(sourceServerIDs=[sid(1)])
        with pytest.raises(mgn.exceptions.ServiceQuotaExceededException) as info:
            mgn.start_cutover(sourceServerIDs=[sid(2)])
        assert info.value.response["quotaValue"] == 2


def test_more_than_two_hundred_ids_is_a_validation_error(
    handle: EmulatorHandle, make_mgn_client: Any
) -> None:
    """201 IDs in one StartCutover break the model's list bound: ValidationException, no job."""
    mgn = make_mgn_client(handle.url, parameter_validation=False)
    with pytest.raises(mgn.exceptions.ValidationException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(201)])
    assert info.value.response["fieldList"][0]["name"] == "sourceServerIDs"
    assert handle.jobs() == []


def test_one_active_job_per_server(mgn: Any, handle: EmulatorHandle) -> None:
    """A server already in an active job is a ConflictException naming it; nothing launches."""
    first = mgn.start_cutover(sourceServerIDs=[sid(0)])["job"]["jobID"]
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(1), sid(0)])
    r = info.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert r["code"] == "SOURCE_SERVER_IN_ACTIVE_JOB" and r["resourceId"] == sid(0)
    assert [e["resourceId"] for e in r["errors"]] == [sid(0)]
    assert first in r["errors"][0]["message"]
    assert handle.server(sid(1))["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert handle.launches() == {sid(0): 1}


def test_relaunch_after_the_job_is_refused_by_state(mgn: Any, handle: EmulatorHandle) -> None:
    """Once the job is over, a server still CUTTING_OVER cannot start cutover again."""
    mgn.start_cutover(sourceServerIDs=[sid(0)])
    handle.advance(1000)
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(0)])
    assert info.value.response["code"] == "INVALID_LIFECYCLE_STATE"
    assert "CUTTING_OVER" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"state": "READY_FOR_TEST"}, "READY_FOR_TEST"),
        ({"state": "CUTOVER"}, "CUTOVER"),
        ({"lagDuration": None}, "lagDuration"),
    ],
)
def test_start_cutover_refuses_unlaunchable_servers(
    make_mgn_client: Any, spec: dict[str, Any], words: str
) -> None:
    """Only a replicating READY_FOR_CUTOVER server can start cutover; others are a 409."""
    with running_emulator(fixture=ready(1, **spec)) as h:
        mgn = make_mgn_client(h.url)
        with pytest.raises(mgn.exceptions.ConflictException) as info:
            mgn.start_cutover(sourceServerIDs=[sid(0)])
        assert words in info.value.response["Error"]["Message"]
        assert h.jobs() == []


def test_unknown_server_refuses_the_whole_job(mgn: Any, handle: EmulatorHandle) -> None:
    """An unknown ID in the list refuses every server (all or nothing)."""
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.start_cutover(sourceServerIDs=[sid(0), "s-fffffffffffffffff"])
    assert info.value.response["errors"][0]["code"] == "SOURCE_SERVER_NOT_FOUND"
    assert handle.server(sid(0))["lifeCycle"]["state"] == "READY_FOR_CUTOVER"


def test_drop_after_apply_leaves_exactly_one_job(mgn: Any, handle: EmulatorHandle) -> None:
    """StartCutover dropped after apply: the client sees a connection error, the job exists once,
    and the retry is refused instead of launching again."""
    handle.set_faults(drop_rate=1.0, drop_after_apply=1.0, fault_ops=["StartCutover"])
    with pytest.raises(ConnectionClosedError):
        mgn.start_cutover(sourceServerIDs=[sid(0), sid(1)])
    [job] = handle.jobs()
    assert [p["sourceServerID"] for p in job["participatingServers"]] == [sid(0), sid(1)]
    [seen] = mgn.describe_jobs()["items"]
    assert seen == handle.job(job["jobID"])
    with pytest.raises(KeyError):
        handle.job("mgnjob-00000000000000000")
    handle.set_faults(drop_rate=0.0)
    with pytest.raises(mgn.exceptions.ConflictException):
        mgn.start_cutover(sourceServerIDs=[sid(0), sid(1)])
    assert handle.launches() == {sid(0): 1, sid(1): 1}
    assert handle.calls_for(sid(0), "StartCutover") == 2


def test_drop_before_apply_and_injected_errors_create_nothing(
    mgn: Any, handle: EmulatorHandle
) -> None:
    """Drops before apply, 500s and throttling leave no job behind."""
    handle.set_faults(drop_rate=1.0, drop_after_apply=0.0)
    with pytest.raises(ConnectionClosedError):
        mgn.start_cutover(sourceServerIDs=[sid(0)])
    handle.set_faults(drop_rate=0.0, error_rate=1.0)
    with pytest.raises(mgn.exceptions.InternalServerException):
        mgn.start_cutover(sourceServerIDs=[sid(0)])
    handle.set_faults(error_rate=0.0, quota_per_s={"StartCutover": 1})
    mgn.start_cutover(sourceServerIDs=[sid(0)])
    with pytest.raises(mgn.exceptions.ThrottlingException):
        mgn.start_cutover(sourceServerIDs=[sid(1)])
    assert len(handle.jobs()) == 1 and handle.launches() == {sid(0): 1}


def test_describe_jobs_filters_and_pages(mgn: Any, handle: EmulatorHandle) -> None:
    """jobIDs and date filters narrow the list; the paginator walks every job once."""
    ids = [mgn.start_cutover(sourceServerIDs=[sid(n)])["job"]["jobID"] for n in range(5)]
    pages = list(mgn.get_paginator("describe_jobs").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [j["jobID"] for p in pages for j in p["items"]] == ids
    picked = mgn.describe_jobs(filters={"jobIDs": [ids[3], ids[1]]})["items"]
    assert sorted(j["jobID"] for j in picked) == sorted([ids[1], ids[3]])
    created = picked[0]["creationDateTime"]
    assert len(mgn.describe_jobs(filters={"fromDate": created})["items"]) == 5
    assert mgn.describe_jobs(filters={"toDate": "2001-01-01T00:00:00Z"})["items"] == []
    assert mgn.describe_jobs(filters={"fromDate": "2999-01-01T00:00:00Z"})["items"] == []


def test_describe_jobs_is_scoped_by_account(fake_clock: Any, make_mgn_client: Any) -> None:
    """A job started with accountID is listed only with that accountID."""
    with running_emulator(fixture=ready(1, accountID=OTHER_ACCOUNT), clock=fake_clock) as h:
        mgn = make_mgn_client(h.url)
        job = mgn.start_cutover(sourceServerIDs=[sid(0)], accountID=OTHER_ACCOUNT)["job"]
        assert OTHER_ACCOUNT in job["arn"]
        assert mgn.describe_jobs()["items"] == []
        [seen] = mgn.describe_jobs(accountID=OTHER_ACCOUNT)["items"]
        assert seen["jobID"] == job["jobID"]
        assert h.launches(OTHER_ACCOUNT) == {sid(0): 1} and h.launches() == {}
