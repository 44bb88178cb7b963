"""boto3 against the emulator over real HTTP: every operation, modeled errors, pagination."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config

from orchestrator.emulator.faults import Faults
from orchestrator.emulator.testing import EmulatorHandle, running_emulator

SID = "s-0a1b2c3d4e5f6a7b8"
SID2 = "s-1a1b2c3d4e5f6a7b8"
APP = "app-0a1b2c3d4e5f6a7b8"
WAVE = "wave-0a1b2c3d4e5f6a7b8"
OTHER_ACCOUNT = "222222222222"
FIXTURE = {
    "servers": [
        {
            "sourceServerID": SID,
            "applicationID": APP,
            "state": "CUTTING_OVER",
            "firstBoot": "SUCCEEDED",
        },
        {"sourceServerID": SID2, "applicationID": APP, "state": "READY_FOR_CUTOVER"},
    ],
    "waves": [{"waveID": WAVE, "name": "wave-01", "applicationIDs": [APP]}],
}


@pytest.fixture
def mgn(emulator: EmulatorHandle, make_mgn_client: Any) -> Any:
    """A boto3 MGN client on the seeded emulator."""
    emulator.seed(FIXTURE)
    return make_mgn_client(emulator.url)


def test_every_operation(mgn: Any, emulator: EmulatorHandle) -> None:
    """All eight operations answer through boto3 with the modeled output."""
    items = mgn.describe_source_servers(filters={"applicationIDs": [APP]})["items"]
    assert {s["sourceServerID"] for s in items} == {SID, SID2}
    assert mgn.finalize_cutover(sourceServerID=SID)["lifeCycle"]["state"] == "CUTOVER"
    assert mgn.mark_as_archived(sourceServerID=SID)["isArchived"] is True
    job = mgn.start_cutover(sourceServerIDs=[SID2])
    assert job["ResponseMetadata"]["HTTPStatusCode"] == 202 and job["job"]["jobID"]
    reverted = mgn.change_server_life_cycle_state(
        sourceServerID=SID2, lifeCycle={"state": "READY_FOR_CUTOVER"}
    )
    assert reverted["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    gone = mgn.disconnect_from_service(sourceServerID=SID2)
    assert gone["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    [app] = mgn.list_applications(filters={"waveIDs": [WAVE]})["items"]
    assert (
        app["applicationID"] == APP
        and app["applicationAggregatedStatus"]["totalSourceServers"] == 2
    )
    [wave] = mgn.list_waves()["items"]
    assert wave["name"] == "wave-01" and wave["waveAggregatedStatus"]["totalApplications"] == 1
    assert emulator.calls("FinalizeCutover") == 1 and emulator.calls_for(SID2, "StartCutover") == 1
    assert emulator.stats()["emulator_errors"] == []


def test_conflict_arrives_modeled(mgn: Any) -> None:
    """A second finalize is a ConflictException with code, resourceId and the state named."""
    mgn.finalize_cutover(sourceServerID=SID)
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.finalize_cutover(sourceServerID=SID)
    r = info.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert r["resourceId"] == SID and r["code"] == "INVALID_LIFECYCLE_STATE"
    assert "CUTOVER" in r["Error"]["Message"]


def test_not_found_arrives_modeled(mgn: Any) -> None:
    """An unknown server is a ResourceNotFoundException with resourceId."""
    with pytest.raises(mgn.exceptions.ResourceNotFoundException) as info:
        mgn.finalize_cutover(sourceServerID="s-ffffffffffffffff0")
    assert info.value.response["resourceId"] == "s-ffffffffffffffff0"


def test_validation_pattern_arrives_modeled(mgn: Any) -> None:
    """A pattern botocore does not check is a ValidationException with reason and fieldList."""
    with pytest.raises(mgn.exceptions.ValidationException) as info:
        mgn.finalize_cutover(sourceServerID="s-0a1b2c3d4e5f6a7b_")
    r = info.value.response
    assert r["reason"] == "fieldValidationFailed"
    assert r["fieldList"][0]["name"] == "sourceServerID"
    assert "regular expression" in r["fieldList"][0]["message"]


@pytest.mark.parametrize(
    ("call", "kwargs", "field"),
    [
        ("finalize_cutover", {"sourceServerID": SID + "00"}, "sourceServerID"),
        ("finalize_cutover", {}, "sourceServerID"),
        (
            "describe_source_servers",
            {"filters": {"lifeCycleStates": ["DONE"]}},
            "filters.lifeCycleStates[0]",
        ),
        ("describe_source_servers", {"maxResults": 5000}, "maxResults"),
    ],
)
def test_validation_without_client_checks(
    emulator: EmulatorHandle, make_mgn_client: Any, call: str, kwargs: dict[str, Any], field: str
) -> None:
    """With botocore's own checks off, max/required/unknown/enum errors come from the emulator."""
    mgn = make_mgn_client(emulator.url, parameter_validation=False)
    with pytest.raises(mgn.exceptions.ValidationException) as info:
        getattr(mgn, call)(**kwargs)
    assert field in [f["name"] for f in info.value.response["fieldList"]]


def _raw(
    url: str, path: str, data: bytes | None, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read())


def test_bad_json_is_cannot_parse(emulator: EmulatorHandle) -> None:
    """A body that is not JSON is a 400 ValidationException with reason cannotParse."""
    status, headers, body = _raw(emulator.url, "/FinalizeCutover", b"{not json")
    assert status == 400 and body["reason"] == "cannotParse"
    assert headers["x-amzn-ErrorType"].startswith("ValidationException:")


@pytest.mark.parametrize(
    ("path", "method"), [("/StartTest", "POST"), ("/", "GET"), ("/FinalizeCutover", "GET")]
)
def test_unknown_operation_is_modeled_json(
    emulator: EmulatorHandle, path: str, method: str
) -> None:
    """Any path but an implemented operation answers ValidationException unknownOperation."""
    status, headers, body = _raw(emulator.url, path, b"{}" if method == "POST" else None, method)
    assert status == 400 and body["reason"] == "unknownOperation"
    assert headers["Content-Type"].startswith("application/json")


def test_pagination_with_the_boto3_paginator(
    emulator: EmulatorHandle, make_mgn_client: Any
) -> None:
    """450 servers at 200 a page come back as 3 pages with every server once."""
    ids = emulator.generate(servers=450, applications=9, seed=2)
    mgn = make_mgn_client(emulator.url)
    pages = list(
        mgn.get_paginator("describe_source_servers").paginate(
            filters={}, PaginationConfig={"PageSize": 200}
        )
    )
    assert [len(p["items"]) for p in pages] == [200, 200, 50]
    assert [s["sourceServerID"] for p in pages for s in p["items"]] == ids


def test_account_scoping(emulator: EmulatorHandle, make_mgn_client: Any) -> None:
    """A server seeded in one account is invisible and not found from another."""
    emulator.seed({"servers": [{"sourceServerID": SID, "accountID": OTHER_ACCOUNT}]})
    mgn = make_mgn_client(emulator.url)
    assert mgn.describe_source_servers(filters={})["items"] == []
    with pytest.raises(mgn.exceptions.ResourceNotFoundException):
        mgn.finalize_cutover(sourceServerID=SID)
    [item] = mgn.describe_source_servers(filters={}, accountID=OTHER_ACCOUNT)["items"]
    assert OTHER_ACCOUNT in item["arn"]
    out = mgn.finalize_cutover(sourceServerID=SID, accountID=OTHER_ACCOUNT)
    assert out["lifeCycle"]["state"] == "CUTOVER"
    assert emulator.server(SID, OTHER_ACCOUNT)["lifeCycle"]["state"] == "CUTOVER"


def test_endpoint_from_environment(
    emulator: EmulatorHandle, fake_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3 finds the emulator through AWS_ENDPOINT_URL_MGN alone."""
    emulator.seed(FIXTURE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_MGN", emulator.url)
    client = boto3.client("mgn", config=Config(retries={"total_max_attempts": 1}))
    try:
        assert len(client.describe_source_servers(filters={})["items"]) == 2
    finally:
        client.close()
    assert emulator.calls("DescribeSourceServers") == 1


@pytest.mark.parametrize(
    ("faults", "name", "status"),
    [
        (Faults(uninitialized=True), "UninitializedAccountException", 400),
        (Faults(access_denied=True), "AccessDeniedException", 403),
    ],
)
def test_account_wide_errors(make_mgn_client: Any, faults: Faults, name: str, status: int) -> None:
    """Account-wide modes answer every call with their modeled exception and code."""
    with running_emulator(fixture=FIXTURE, faults=faults) as handle:
        mgn = make_mgn_client(handle.url)
        for call in (lambda: mgn.list_waves(), lambda: mgn.finalize_cutover(sourceServerID=SID)):
            with pytest.raises(getattr(mgn.exceptions, name)) as info:
                call()
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
            assert info.value.response["code"] == name
        assert handle.server(SID)["lifeCycle"]["state"] == "CUTTING_OVER"
