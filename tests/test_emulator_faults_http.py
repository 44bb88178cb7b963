"""Each fault, seen by a boto3 client over HTTP with botocore retries off."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from orchestrator.emulator.testing import EmulatorHandle

SID = "s-0a1b2c3d4e5f6a7b8"
READY = {"servers": [{"sourceServerID": SID, "state": "CUTTING_OVER", "firstBoot": "SUCCEEDED"}]}


@pytest.fixture
def mgn(emulator: EmulatorHandle, make_mgn_client: Any) -> Any:
    """A boto3 client on an emulator holding one server ready for finalize."""
    emulator.seed(READY)
    return make_mgn_client(emulator.url)


def test_quota_throttles_with_retry_after(mgn: Any, emulator: EmulatorHandle) -> None:
    """Beyond a 2/s quota, calls get ThrottlingException with retryAfterSeconds from Retry-After."""
    emulator.set_faults(quota_per_s={"DescribeSourceServers": 2})
    errors = []
    for _ in range(5):
        try:
            mgn.describe_source_servers(filters={})
        except mgn.exceptions.ThrottlingException as err:
            errors.append(err.response)
    assert len(errors) >= 2
    assert errors[0]["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert errors[0]["retryAfterSeconds"] == "1"
    assert emulator.throttled("DescribeSourceServers") == len(errors) == emulator.throttled()
    assert emulator.calls("DescribeSourceServers") == 5


def test_latency_delays_answers(mgn: Any, emulator: EmulatorHandle) -> None:
    """Latency of 150 ms makes a call take at least that long."""
    emulator.set_faults(latency_ms=150)
    start = time.perf_counter()
    mgn.list_waves()
    assert time.perf_counter() - start >= 0.15


def test_injected_errors_are_internal_server_exceptions(mgn: Any, emulator: EmulatorHandle) -> None:
    """error_rate 1 answers InternalServerException 500 with retryAfterSeconds, nothing changes."""
    emulator.set_faults(error_rate=1.0, error_retry_after_s=3)
    with pytest.raises(mgn.exceptions.InternalServerException) as info:
        mgn.finalize_cutover(sourceServerID=SID)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert info.value.response["retryAfterSeconds"] == 3
    assert emulator.failed("FinalizeCutover") == 1
    assert emulator.server(SID)["lifeCycle"]["state"] == "CUTTING_OVER"


def test_drop_before_apply_changes_nothing(mgn: Any, emulator: EmulatorHandle) -> None:
    """A drop before apply is a botocore connection error and the server stays CUTTING_OVER."""
    emulator.set_faults(drop_rate=1.0, drop_after_apply=0.0)
    with pytest.raises(ConnectionClosedError):
        mgn.finalize_cutover(sourceServerID=SID)
    assert emulator.server(SID)["lifeCycle"]["state"] == "CUTTING_OVER"
    assert emulator.failed() == 1
    assert emulator.request_log()[-1]["outcome"] == "dropped_before"


def test_drop_after_apply_loses_only_the_response(mgn: Any, emulator: EmulatorHandle) -> None:
    """A drop after apply is a connection error although the finalize took effect."""
    emulator.set_faults(drop_rate=1.0, drop_after_apply=1.0)
    with pytest.raises(ConnectionClosedError):
        mgn.finalize_cutover(sourceServerID=SID)
    assert emulator.server(SID)["lifeCycle"]["state"] == "CUTOVER"
    emulator.set_faults(drop_rate=0.0)
    with pytest.raises(mgn.exceptions.ConflictException):
        mgn.finalize_cutover(sourceServerID=SID)


def test_visibility_lag_over_http(mgn: Any, emulator: EmulatorHandle) -> None:
    """With a 0.5 s lag Describe shows CUTTING_OVER right after finalize and CUTOVER later."""
    emulator.set_faults(visibility_lag_s=0.5)
    mgn.finalize_cutover(sourceServerID=SID)

    def state() -> str:
        [item] = mgn.describe_source_servers(filters={"sourceServerIDs": [SID]})["items"]
        return str(item["lifeCycle"]["state"])

    assert state() == "CUTTING_OVER"
    time.sleep(0.55)
    assert state() == "CUTOVER"


def test_stuck_over_http(mgn: Any, emulator: EmulatorHandle) -> None:
    """A server marked stuck at runtime accepts FinalizeCutover but stays CUTTING_OVER."""
    emulator.set_faults(stuck=[SID])
    mgn.finalize_cutover(sourceServerID=SID)
    [item] = mgn.describe_source_servers(filters={"sourceServerIDs": [SID]})["items"]
    assert item["lifeCycle"]["state"] == "CUTTING_OVER"


def test_request_log_records_each_call(mgn: Any, emulator: EmulatorHandle) -> None:
    """The request log names op, status, outcome and servers; reset_counters empties it."""
    mgn.finalize_cutover(sourceServerID=SID)
    [entry] = emulator.request_log()
    assert entry["op"] == "FinalizeCutover" and entry["status"] == 200
    assert entry["servers"] == [SID] and entry["outcome"] == "ok"
    emulator.reset_counters()
    assert emulator.request_log() == [] and emulator.calls("FinalizeCutover") == 0
