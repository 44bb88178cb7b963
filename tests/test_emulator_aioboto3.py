"""aioboto3 against the emulator over real HTTP: operations, modeled errors, paging, drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError

from orchestrator.emulator.testing import EmulatorHandle

SID = "s-0a1b2c3d4e5f6a7b8"
NO_RETRIES = Config(retries={"total_max_attempts": 1}, max_pool_connections=50)


@pytest.fixture
async def mgn(emulator: EmulatorHandle, fake_credentials: dict[str, str]) -> AsyncIterator[Any]:
    """An aioboto3 MGN client on the emulator, closed after the test."""
    async with aioboto3.Session().client("mgn", endpoint_url=emulator.url, config=NO_RETRIES) as c:
        yield c


async def test_finalize_and_conflict(mgn: Any, emulator: EmulatorHandle) -> None:
    """aioboto3 finalizes a server, then gets a modeled ConflictException for the repeat."""
    emulator.seed({"servers": [{"sourceServerID": SID, "firstBoot": "SUCCEEDED"}]})
    out = await mgn.finalize_cutover(sourceServerID=SID)
    assert out["lifeCycle"]["state"] == "CUTOVER"
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        await mgn.finalize_cutover(sourceServerID=SID)
    assert info.value.response["resourceId"] == SID


async def test_concurrent_finalizes(mgn: Any, emulator: EmulatorHandle) -> None:
    """Fifty concurrent finalizes all succeed and each server is called exactly once."""
    ids = emulator.generate(servers=50, applications=5, seed=9)
    await asyncio.gather(*(mgn.finalize_cutover(sourceServerID=s) for s in ids))
    assert {s["lifeCycle"]["state"] for s in emulator.servers()} == {"CUTOVER"}
    assert all(emulator.calls_for(s, "FinalizeCutover") == 1 for s in ids)


async def test_paginator(mgn: Any, emulator: EmulatorHandle) -> None:
    """aioboto3's paginator walks 450 servers in 3 pages of at most 200."""
    emulator.generate(servers=450, applications=9, seed=4)
    sizes = [
        len(page["items"])
        async for page in mgn.get_paginator("describe_source_servers").paginate(
            filters={}, PaginationConfig={"PageSize": 200}
        )
    ]
    assert sizes == [200, 200, 50]


async def test_throttling_and_server_errors(mgn: Any, emulator: EmulatorHandle) -> None:
    """429 and 500 arrive as ThrottlingException and InternalServerException with retry hints."""
    emulator.set_faults(quota_per_s={"ListWaves": 1})
    await mgn.list_waves()
    with pytest.raises(mgn.exceptions.ThrottlingException) as throttled:
        await mgn.list_waves()
    assert throttled.value.response["retryAfterSeconds"] == "1"
    emulator.set_faults(quota_per_s={}, error_rate=1.0)
    with pytest.raises(mgn.exceptions.InternalServerException) as failed:
        await mgn.list_applications()
    assert failed.value.response["retryAfterSeconds"] == 1


async def test_validation_and_not_found(mgn: Any) -> None:
    """ValidationException carries reason and fieldList; ResourceNotFoundException resourceId."""
    with pytest.raises(mgn.exceptions.ValidationException) as bad:
        await mgn.describe_source_servers(filters={"applicationIDs": ["app-0a1b2c3d4e5f6a7b_"]})
    assert bad.value.response["fieldList"][0]["name"] == "filters.applicationIDs[0]"
    with pytest.raises(mgn.exceptions.ResourceNotFoundException) as missing:
        await mgn.mark_as_archived(sourceServerID=SID)
    assert missing.value.response["resourceId"] == SID


async def test_dropped_connection(mgn: Any, emulator: EmulatorHandle) -> None:
    """A dropped connection reaches aioboto3 as botocore's ConnectionClosedError."""
    emulator.set_faults(drop_rate=1.0)
    with pytest.raises(ConnectionClosedError):
        await mgn.list_waves()


async def test_endpoint_from_environment(
    emulator: EmulatorHandle, fake_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aioboto3 finds the emulator through AWS_ENDPOINT_URL_MGN alone."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_MGN", emulator.url)
    async with aioboto3.Session().client("mgn", config=NO_RETRIES) as client:
        assert (await client.list_waves())["items"] == []
    assert emulator.calls("ListWaves") == 1


async def test_launch_jobs_and_their_errors(mgn: Any, emulator: EmulatorHandle) -> None:
    """aioboto3 starts cutovers, pages DescribeJobs, and gets the job quota and conflict errors
    as their own exception classes."""
    emulator.set_faults(max_active_jobs=3, launch_s=[600, 600])
    ids = [f"s-{n:017x}" for n in range(4)]
    emulator.seed(
        {
            "defaults": {"state": "READY_FOR_CUTOVER"},
            "servers": [{"sourceServerID": s} for s in ids],
        }
    )
    started = await asyncio.gather(*(mgn.start_cutover(sourceServerIDs=[s]) for s in ids[:3]))
    assert {r["ResponseMetadata"]["HTTPStatusCode"] for r in started} == {202}
    with pytest.raises(mgn.exceptions.ServiceQuotaExceededException) as quota:
        await mgn.start_cutover(sourceServerIDs=[ids[3]])
    assert quota.value.response["quotaValue"] == 3
    with pytest.raises(mgn.exceptions.ConflictException) as busy:
        await mgn.start_cutover(sourceServerIDs=[ids[0]])
    assert busy.value.response["code"] == "SOURCE_SERVER_IN_ACTIVE_JOB"
    jobs = [
        job["jobID"]
        async for page in mgn.get_paginator("describe_jobs").paginate(
            PaginationConfig={"PageSize": 2}
        )
        for job in page["items"]
    ]
    assert sorted(jobs) == sorted(r["job"]["jobID"] for r in started)
    assert sorted(emulator.launches()) == sorted(ids[:3])
