"""The admin HTTP API under /_emulator: stats, servers, log, faults, seed, reset."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from orchestrator.emulator.testing import EmulatorHandle

SID = "s-0a1b2c3d4e5f6a7b8"


def admin(handle: EmulatorHandle, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{handle.url}/_emulator{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def test_seed_and_read_servers(emulator: EmulatorHandle) -> None:
    """POST /seed takes a fixture as JSON; GET /servers returns the true records per account."""
    fixture = {"servers": [{"sourceServerID": SID, "accountID": "222222222222"}]}
    assert admin(emulator, "POST", "/seed", fixture) == (200, {"seeded": 1})
    assert admin(emulator, "GET", "/servers") == (200, [])
    status, servers = admin(emulator, "GET", "/servers?accountID=222222222222")
    assert status == 200 and [s["sourceServerID"] for s in servers] == [SID]


def test_seed_generate_and_bad_fixture(emulator: EmulatorHandle) -> None:
    """POST /seed can generate servers, and a bad fixture is a JSON 400 with the reason."""
    assert admin(emulator, "POST", "/seed", {"generate": {"servers": 5, "applications": 1}}) == (
        200,
        {"seeded": 5},
    )
    status, body = admin(emulator, "POST", "/seed", {"servers": [{"sourceServerID": "x"}]})
    assert status == 400 and "sourceServerID" in body["message"]


def test_faults_partial_update(emulator: EmulatorHandle) -> None:
    """POST /faults changes only the given fields; unknown fields are a 400."""
    status, faults = admin(emulator, "POST", "/faults", {"error_rate": 0.25, "stuck": [SID]})
    assert status == 200 and faults["error_rate"] == 0.25 and faults["stuck"] == [SID]
    assert admin(emulator, "GET", "/faults")[1]["latency_ms"] == 0.0
    assert emulator.faults.error_rate == 0.25
    assert admin(emulator, "POST", "/faults", {"nope": 1})[0] == 400


def test_stats_log_and_reset(emulator: EmulatorHandle) -> None:
    """GET /stats and /log show calls made over HTTP; POST /reset clears data and counters."""
    emulator.seed({"servers": [{"sourceServerID": SID}]})
    req = urllib.request.Request(
        f"{emulator.url}/FinalizeCutover", data=json.dumps({"sourceServerID": SID}).encode()
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    _, stats = admin(emulator, "GET", "/stats")
    assert stats["calls"] == {"FinalizeCutover": 1}
    assert stats["by_server"] == {SID: {"FinalizeCutover": 1}}
    [entry] = admin(emulator, "GET", "/log?limit=5")[1]
    assert entry["op"] == "FinalizeCutover" and entry["status"] == 200
    assert admin(emulator, "POST", "/reset") == (200, {"reset": True})
    assert admin(emulator, "GET", "/stats")[1]["calls"] == {}
    assert emulator.servers() == []


def test_unknown_admin_path_is_json(emulator: EmulatorHandle) -> None:
    """An unknown admin path answers a JSON 404, never an HTML page."""
    status, body = admin(emulator, "GET", "/nothing")
    assert status == 404 and "unknown admin path" in body["message"]


def test_night_faults_over_admin_api(emulator: EmulatorHandle) -> None:
    """POST /faults takes the night settings as JSON; a bad one is a 400 naming it."""
    change = {
        "time_scale": 60,
        "launch_s": [300, 900],
        "boot_failure_rate": 0.1,
        "post_launch_actions": [{"actionName": "smoke", "ssmDocumentName": "AWS-RunShellScript"}],
    }
    status, faults = admin(emulator, "POST", "/faults", change)
    assert status == 200 and faults["launch_s"] == [300.0, 900.0] and faults["time_scale"] == 60
    assert emulator.faults.post_launch_actions[0]["actionName"] == "smoke"
    status, body = admin(emulator, "POST", "/faults", {"quota_per_s": {"Finalize": 1}})
    assert status == 400 and "FinalizeCutover" in body["message"]
    assert emulator.faults.quota_per_s == {}


def test_jobs_and_clock_over_admin_api(emulator: EmulatorHandle) -> None:
    """GET /jobs lists jobs as DescribeJobs shows them; POST /clock moves the night forward."""
    emulator.seed({"servers": [{"sourceServerID": SID, "state": "READY_FOR_CUTOVER"}]})
    emulator.set_faults(launch_s=[3600, 3600])
    req = urllib.request.Request(
        f"{emulator.url}/StartCutover", data=json.dumps({"sourceServerIDs": [SID]}).encode()
    )
    with urllib.request.urlopen(req) as resp:
        job_id = json.loads(resp.read())["job"]["jobID"]
    [job] = admin(emulator, "GET", "/jobs")[1]
    assert job["jobID"] == job_id and job["status"] == "PENDING"
    assert admin(emulator, "POST", "/clock", {"advance_s": 3600})[0] == 200
    [job] = admin(emulator, "GET", "/jobs")[1]
    assert job["status"] == "COMPLETED"
    assert admin(emulator, "POST", "/clock", {"advance_s": -1})[0] == 400
    assert admin(emulator, "GET", "/jobs?accountID=222222222222") == (200, [])
