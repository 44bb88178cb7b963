"""Launched instances on moto's EC2: the IDs MGN reports are instances EC2 knows, per account."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from orchestrator.emulator.ec2 import Ec2
from orchestrator.emulator.errors import ApiError
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID
from orchestrator.emulator.testing import EmulatorHandle, running_emulator

SID = "s-0a1b2c3d4e5f6a7b8"
SID2 = "s-1a1b2c3d4e5f6a7b8"
SID3 = "s-2a1b2c3d4e5f6a7b8"
OTHER_ACCOUNT = "222222222222"

pytestmark = pytest.mark.usefixtures("fake_credentials")


@pytest.fixture
def handle(moto_url: str, fake_clock: Any) -> Iterator[EmulatorHandle]:
    """The emulator launching into moto: two servers in the default account, one in another."""
    fixture = {
        "defaults": {"state": "READY_FOR_CUTOVER"},
        "servers": [
            {"sourceServerID": SID},
            {"sourceServerID": SID2, "bootFails": True},
            {"sourceServerID": SID3, "accountID": OTHER_ACCOUNT},
        ],
    }
    faults = Faults(launch_s=(20, 20), boot_s=(10, 10))
    with running_emulator(
        fixture=fixture, faults=faults, clock=fake_clock, ec2_endpoint_url=moto_url
    ) as h:
        yield h


def ec2_client(moto_url: str, **credentials: str) -> Any:
    return boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1", **credentials)


def statuses(ec2: Any) -> dict[str, str]:
    found = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    return {s["InstanceId"]: s["InstanceState"]["Name"] for s in found}


def test_launched_ids_are_moto_instances(
    handle: EmulatorHandle, make_mgn_client: Any, moto_url: str
) -> None:
    """DescribeInstanceStatus with plain credentials shows exactly the default account's launched
    IDs; a failed first boot is a stopped instance."""
    mgn = make_mgn_client(handle.url)
    job_id = mgn.start_cutover(sourceServerIDs=[SID, SID2])["job"]["jobID"]
    handle.advance(30)
    [job] = mgn.describe_jobs(filters={"jobIDs": [job_id]})["items"]
    reported = {
        p["sourceServerID"]: p["launchedEc2InstanceID"] for p in job["participatingServers"]
    }
    assert handle.server(SID)["launchedInstance"]["ec2InstanceID"] == reported[SID]
    ec2 = ec2_client(moto_url)
    assert statuses(ec2) == {reported[SID]: "running", reported[SID2]: "stopped"}


def test_other_account_lands_in_that_account(
    handle: EmulatorHandle, make_mgn_client: Any, moto_url: str
) -> None:
    """A server of account A launches into A: a role assumed in A sees it, plain creds do not."""
    mgn = make_mgn_client(handle.url)
    mgn.start_cutover(sourceServerIDs=[SID3], accountID=OTHER_ACCOUNT)
    handle.advance(20)
    instance_id = handle.server(SID3, OTHER_ACCOUNT)["launchedInstance"]["ec2InstanceID"]
    assert statuses(ec2_client(moto_url)) == {}
    sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1")
    role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/CMF-MGNAutomation"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="rehearsal")["Credentials"]
    assumed = ec2_client(
        moto_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert statuses(assumed) == {instance_id: "running"}


def test_terminate_terminates_in_moto(
    handle: EmulatorHandle, make_mgn_client: Any, moto_url: str
) -> None:
    """Revert then TerminateTargetInstances terminates the moto instance."""
    mgn = make_mgn_client(handle.url)
    mgn.start_cutover(sourceServerIDs=[SID])
    handle.advance(30)
    instance_id = handle.server(SID)["launchedInstance"]["ec2InstanceID"]
    mgn.change_server_life_cycle_state(sourceServerID=SID, lifeCycle={"state": "READY_FOR_CUTOVER"})
    mgn.terminate_target_instances(sourceServerIDs=[SID])
    assert statuses(ec2_client(moto_url))[instance_id] in ("shutting-down", "terminated")


def test_launch_failure_runs_no_instance(make_mgn_client: Any, moto_url: str) -> None:
    """A launch that will fail creates no EC2 instance."""
    fixture = {"servers": [{"sourceServerID": SID, "state": "READY_FOR_CUTOVER"}]}
    faults = Faults(launch_failure_rate=1.0)
    with running_emulator(fixture=fixture, faults=faults, ec2_endpoint_url=moto_url) as h:
        make_mgn_client(h.url).start_cutover(sourceServerIDs=[SID])
        assert statuses(ec2_client(moto_url)) == {}


def test_seeded_instances_terminate_without_ec2(make_mgn_client: Any, moto_url: str) -> None:
    """A fixture's already-launched server has no moto instance; terminating it still works."""
    fixture = {
        "servers": [{"sourceServerID": SID, "state": "READY_FOR_CUTOVER", "firstBoot": "SUCCEEDED"}]
    }
    with running_emulator(fixture=fixture, ec2_endpoint_url=moto_url) as h:
        mgn = make_mgn_client(h.url)
        job = mgn.terminate_target_instances(sourceServerIDs=[SID])["job"]
        assert job["type"] == "TERMINATE" and "launchedInstance" not in h.server(SID)
        assert statuses(ec2_client(moto_url)) == {}


class HeldEc2(Ec2):
    """An EC2 whose RunInstances waits until the test releases it (or fails when told to)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__("http://unused.invalid", DEFAULT_ACCOUNT_ID)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def run(self, account_id: str | None, job_id: str, boots: list[bool]) -> list[str]:
        self.entered.set()
        assert self.release.wait(10)
        if self.fail:
            raise ApiError("InternalServerException", "EC2 is down (test)")
        return [f"i-{n:017x}" for n in range(len(boots))]


@pytest.mark.parametrize("fail", [False, True])
def test_emulator_serves_while_ec2_runs_instances(make_mgn_client: Any, fail: bool) -> None:
    """While RunInstances is in flight the emulator answers other calls: the job is PENDING and
    the server CUTTING_OVER; then the launch completes (or FAILS when EC2 failed)."""
    fixture = {"servers": [{"sourceServerID": SID, "state": "READY_FOR_CUTOVER"}]}
    with running_emulator(fixture=fixture) as h, ThreadPoolExecutor(1) as pool:
        held = h.emulator.store.ec2 = HeldEc2(fail)
        mgn = make_mgn_client(h.url)
        answer = pool.submit(mgn.start_cutover, sourceServerIDs=[SID])
        assert held.entered.wait(10)
        [job] = mgn.describe_jobs()["items"]
        assert job["status"] == "PENDING"
        assert job["participatingServers"] == [{"sourceServerID": SID, "launchStatus": "PENDING"}]
        [server] = mgn.describe_source_servers()["items"]
        assert server["lifeCycle"]["state"] == "CUTTING_OVER"
        held.release.set()
        assert answer.result(10)["job"]["jobID"] == job["jobID"]
        [p] = mgn.describe_jobs()["items"][0]["participatingServers"]
        if fail:
            assert p == {"sourceServerID": SID, "launchStatus": "FAILED"}
        else:
            assert p["launchStatus"] == "LAUNCHED" and p["launchedEc2InstanceID"] == "i-" + "0" * 17
