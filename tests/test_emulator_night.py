"""The cutover night over HTTP with boto3 on a fake clock: launch jobs, boots, post-launch actions.

No test sleeps: the emulator's clock is the test's FakeClock, moved with `advance`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import pytest

from orchestrator.emulator.faults import Faults
from orchestrator.emulator.testing import EmulatorHandle, running_emulator

SID = "s-0a1b2c3d4e5f6a7b8"
SMOKE = {
    "actionName": "smoke-test",
    "ssmDocumentName": "AWS-RunShellScript",
    "mustSucceedForCutover": True,
    "timeoutSeconds": 600,
}
Night = Callable[..., tuple[EmulatorHandle, Any]]


def sid(n: int) -> str:
    return f"s-{n:017x}"


@pytest.fixture
def night(fake_clock: Any, make_mgn_client: Any) -> Iterator[Night]:
    """Start an emulator on the fake clock with READY_FOR_CUTOVER servers; (handle, client)."""
    with ExitStack() as stack:

        def start(
            faults: Faults | None = None,
            servers: int = 1,
            seed: int = 0,
            **spec: Any,
        ) -> tuple[EmulatorHandle, Any]:
            fixture = {
                "defaults": {"state": "READY_FOR_CUTOVER", **spec},
                "servers": [
                    {"sourceServerID": SID if servers == 1 else sid(n)} for n in range(servers)
                ],
            }
            handle = stack.enter_context(
                running_emulator(fixture=fixture, faults=faults, seed=seed, clock=fake_clock)
            )
            return handle, make_mgn_client(handle.url)

        yield start


def job_of(mgn: Any, job_id: str) -> dict[str, Any]:
    [job] = mgn.describe_jobs(filters={"jobIDs": [job_id]})["items"]
    return dict(job)


def server_of(mgn: Any, server_id: str = SID) -> dict[str, Any]:
    [item] = mgn.describe_source_servers(filters={"sourceServerIDs": [server_id]})["items"]
    return dict(item)


def participant(job: Mapping[str, Any], server_id: str = SID) -> dict[str, Any]:
    [p] = [p for p in job["participatingServers"] if p["sourceServerID"] == server_id]
    return dict(p)


def test_job_lifecycle_follows_the_clock(night: Night) -> None:
    """PENDING -> STARTED -> COMPLETED: the instance shows once launched, boots, actions run."""
    faults = Faults(
        launch_s=(40, 40), boot_s=(60, 60), action_s=(30, 30), post_launch_actions=(SMOKE,)
    )
    emulator, mgn = night(faults)
    out = mgn.start_cutover(sourceServerIDs=[SID])
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202
    job = out["job"]
    assert re.fullmatch(r"mgnjob-[0-9a-f]{17}", job["jobID"])
    assert (job["type"], job["initiatedBy"], job["status"]) == (
        "LAUNCH",
        "START_CUTOVER",
        "PENDING",
    )
    assert job["participatingServers"] == [{"sourceServerID": SID, "launchStatus": "PENDING"}]
    server = server_of(mgn)
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    assert server["lifeCycle"]["lastCutover"]["initiated"]["jobID"] == job["jobID"]
    assert server["launchedInstance"] == {"firstBoot": "WAITING", "jobID": job["jobID"]}

    emulator.advance(9.9)
    assert job_of(mgn, job["jobID"])["status"] == "PENDING"
    emulator.advance(0.1)
    started = job_of(mgn, job["jobID"])
    assert started["status"] == "STARTED" and participant(started)["launchStatus"] == "IN_PROGRESS"

    emulator.advance(30)  # t = 40: launched
    launched = participant(job_of(mgn, job["jobID"]))
    assert launched["launchStatus"] == "LAUNCHED" and "postLaunchActionsStatus" not in launched
    instance_id = launched["launchedEc2InstanceID"]
    assert re.fullmatch(r"i-[0-9a-f]{17}", instance_id)
    assert server_of(mgn)["launchedInstance"]["ec2InstanceID"] == instance_id
    assert server_of(mgn)["launchedInstance"]["firstBoot"] == "WAITING"

    emulator.advance(60)  # t = 100: booted, the action starts
    assert server_of(mgn)["launchedInstance"]["firstBoot"] == "SUCCEEDED"
    running = job_of(mgn, job["jobID"])
    [action] = participant(running)["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]
    assert action["executionStatus"] == "IN_PROGRESS" and action["ssmDocument"] == SMOKE
    assert running["status"] == "STARTED" and emulator.active_jobs() == [job["jobID"]]

    emulator.advance(30)  # t = 130: the action succeeded, the job is over
    done = job_of(mgn, job["jobID"])
    [action] = participant(done)["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]
    assert action["executionStatus"] == "SUCCESS" and "failureReason" not in action
    assert done["status"] == "COMPLETED" and emulator.active_jobs() == []
    took = datetime.fromisoformat(done["endDateTime"]) - datetime.fromisoformat(
        done["creationDateTime"]
    )
    assert took.total_seconds() == 130


def test_time_scale_compresses_the_night(night: Night) -> None:
    """At time_scale 60 a 10-minute launch takes 10 clock seconds."""
    emulator, mgn = night(Faults(time_scale=60, launch_s=(600, 600)))
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    emulator.advance(9.9)
    assert participant(job_of(mgn, job_id))["launchStatus"] == "IN_PROGRESS"
    emulator.advance(0.1)
    assert participant(job_of(mgn, job_id))["launchStatus"] == "LAUNCHED"


def _launched_after(night: Night, seed: int, seconds: float) -> frozenset[str]:
    emulator, mgn = night(Faults(launch_s=(100, 200)), servers=30, seed=seed)
    job_id = mgn.start_cutover(sourceServerIDs=[sid(n) for n in range(30)])["job"]["jobID"]
    emulator.advance(seconds)
    job = job_of(mgn, job_id)
    return frozenset(
        p["sourceServerID"] for p in job["participatingServers"] if p["launchStatus"] == "LAUNCHED"
    )


def test_launch_durations_are_seeded_uniform_draws(night: Night) -> None:
    """Launches take uniform(100, 200) s: none by 99 s, some by 150 s, all by 200 s; the same seed
    launches the same servers first, another seed others."""
    assert _launched_after(night, 1, 99.9) == frozenset()
    first = _launched_after(night, 1, 150)
    assert 0 < len(first) < 30
    assert _launched_after(night, 1, 150) == first
    assert _launched_after(night, 2, 150) != first
    assert len(_launched_after(night, 1, 200)) == 30


def test_launch_failure(night: Night) -> None:
    """A failed launch: launchStatus FAILED, no instance anywhere, firstBoot UNKNOWN, job done."""
    emulator, mgn = night(Faults(launch_s=(50, 50), launch_failure_rate=1.0))
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    emulator.advance(50)
    job = job_of(mgn, job_id)
    assert participant(job) == {"sourceServerID": SID, "launchStatus": "FAILED"}
    assert job["status"] == "COMPLETED"
    server = server_of(mgn)
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    assert server["launchedInstance"] == {"firstBoot": "UNKNOWN", "jobID": job_id}


def test_boot_failure_fails_the_actions(night: Night) -> None:
    """A failed first boot: LAUNCHED with an instance, firstBoot STOPPED, actions FAILED."""
    faults = Faults(boot_s=(20, 20), boot_failure_rate=1.0, post_launch_actions=(SMOKE,))
    emulator, mgn = night(faults)
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    emulator.advance(19)
    assert server_of(mgn)["launchedInstance"]["firstBoot"] == "WAITING"
    emulator.advance(1)
    assert server_of(mgn)["launchedInstance"]["firstBoot"] == "STOPPED"
    job = job_of(mgn, job_id)
    p = participant(job)
    assert p["launchStatus"] == "LAUNCHED" and p["launchedEc2InstanceID"].startswith("i-")
    [action] = p["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]
    assert action["executionStatus"] == "FAILED" and "did not boot" in action["failureReason"]
    assert job["status"] == "COMPLETED"


def test_fixture_boot_and_launch_failures_are_per_server(night: Night) -> None:
    """launchFails / bootFails in the fixture fail only the servers that carry them."""
    emulator, mgn = night(servers=3)
    emulator.seed(
        {
            "servers": [
                {"sourceServerID": sid(1), "state": "READY_FOR_CUTOVER", "launchFails": True},
                {"sourceServerID": sid(2), "state": "READY_FOR_CUTOVER", "bootFails": True},
            ]
        }
    )
    job_id = mgn.start_cutover(sourceServerIDs=[sid(0), sid(1), sid(2)])["job"]["jobID"]
    job = job_of(mgn, job_id)
    assert [p["launchStatus"] for p in job["participatingServers"]] == [
        "LAUNCHED",
        "FAILED",
        "LAUNCHED",
    ]
    boots = [server_of(mgn, sid(n))["launchedInstance"]["firstBoot"] for n in range(3)]
    assert boots == ["SUCCEEDED", "UNKNOWN", "STOPPED"]


def test_post_launch_action_outcomes(night: Night) -> None:
    """Actions run one after another: a success, a forced failure, and a timeout."""
    actions = [
        {"actionName": "a-ok", "ssmDocumentName": "doc-ok", "seconds": 10},
        {
            "actionName": "b-fails",
            "ssmDocumentName": "doc-fail",
            "mustSucceedForCutover": True,
            "fail": True,
            "seconds": 5,
        },
        {
            "actionName": "c-slow",
            "ssmDocumentName": "doc-slow",
            "timeoutSeconds": 60,
            "seconds": 900,
            "ssmDocumentType": "COMMAND",
        },
    ]
    emulator, mgn = night(postLaunchActions=actions)
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]

    def statuses() -> list[tuple[str, str]]:
        p = participant(job_of(mgn, job_id))
        found = p.get("postLaunchActionsStatus", {}).get("postLaunchActionsLaunchStatusList", [])
        return [(a["ssmDocument"]["actionName"], a["executionStatus"]) for a in found]

    assert statuses() == [("a-ok", "IN_PROGRESS")]
    emulator.advance(10)
    assert statuses() == [("a-ok", "SUCCESS"), ("b-fails", "IN_PROGRESS")]
    emulator.advance(5)
    assert statuses()[1:] == [("b-fails", "FAILED"), ("c-slow", "IN_PROGRESS")]
    emulator.advance(60)
    done = job_of(mgn, job_id)
    found = participant(done)["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]
    assert [a["executionStatus"] for a in found] == ["SUCCESS", "FAILED", "FAILED"]
    assert found[1]["ssmDocument"]["mustSucceedForCutover"] is True
    assert "doc-fail" in found[1]["failureReason"]
    assert "timed out after 60 seconds" in found[2]["failureReason"]
    assert found[2]["ssmDocumentType"] == "COMMAND" and "seconds" not in found[2]["ssmDocument"]
    assert done["status"] == "COMPLETED"


def test_action_failure_rate(night: Night) -> None:
    """action_failure_rate 1 fails every default action with a reason."""
    _, mgn = night(Faults(post_launch_actions=(SMOKE,), action_failure_rate=1.0))
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    [action] = participant(job_of(mgn, job_id))["postLaunchActionsStatus"][
        "postLaunchActionsLaunchStatusList"
    ]
    assert action["executionStatus"] == "FAILED" and action["failureReason"]


def test_stuck_job_never_completes(night: Night) -> None:
    """A stuck job stays STARTED with its launch IN_PROGRESS, and its server stays busy."""
    emulator, mgn = night(Faults(stuck_job_servers=frozenset({SID}), launch_s=(40, 40)))
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    emulator.advance(10**6)
    job = job_of(mgn, job_id)
    assert job["status"] == "STARTED" and "endDateTime" not in job
    assert participant(job)["launchStatus"] == "IN_PROGRESS"
    assert emulator.active_jobs() == [job_id]
    assert "ec2InstanceID" not in server_of(mgn)["launchedInstance"]
    with pytest.raises(mgn.exceptions.ConflictException) as info:
        mgn.change_server_life_cycle_state(
            sourceServerID=SID, lifeCycle={"state": "READY_FOR_CUTOVER"}
        )
    assert job_id in info.value.response["Error"]["Message"]


def test_fixture_stuck_job(night: Night) -> None:
    """stuckJob in the fixture makes the whole job holding that server stuck."""
    emulator, mgn = night(servers=2)
    emulator.seed(
        {"servers": [{"sourceServerID": sid(1), "state": "READY_FOR_CUTOVER", "stuckJob": True}]}
    )
    free = mgn.start_cutover(sourceServerIDs=[sid(0)])["job"]["jobID"]
    stuck = mgn.start_cutover(sourceServerIDs=[sid(1)])["job"]["jobID"]
    emulator.advance(3600)
    assert emulator.active_jobs() == [stuck] and job_of(mgn, free)["status"] == "COMPLETED"


def test_stuck_job_rate_is_decided_per_job(night: Night) -> None:
    """stuck_job_rate 1 makes every launch job stuck."""
    emulator, mgn = night(Faults(stuck_job_rate=1.0))
    job_id = mgn.start_cutover(sourceServerIDs=[SID])["job"]["jobID"]
    emulator.advance(3600)
    assert job_of(mgn, job_id)["status"] == "STARTED"
