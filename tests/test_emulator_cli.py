"""`mgn-cutover simulate` as a user meets it: a subprocess serving until SIGINT."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.emulator import cli as emulator_cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def simulate() -> Iterator[Any]:
    """Start `python -m orchestrator simulate ARGS`; always stopped after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "simulate", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_simulate_serves_boto3_until_sigint(
    simulate: Any, make_mgn_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simulate prints its export line, serves DescribeSourceServers, and exits 0 on SIGINT."""
    proc = simulate("--port", "0", "--servers", "50", "--applications", "5", "--seed", "3")
    line = proc.stdout.readline().strip()
    assert line.startswith("export AWS_ENDPOINT_URL_MGN=http://127.0.0.1:")
    monkeypatch.setenv("AWS_ENDPOINT_URL_MGN", line.partition("=")[2])
    mgn = make_mgn_client()
    pages = mgn.get_paginator("describe_source_servers").paginate(filters={})
    assert sum(len(p["items"]) for p in pages) == 50
    assert len(mgn.list_applications()["items"]) == 5
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err and "50 generated servers" in err


def test_simulate_stops_on_sigterm_with_faults(simulate: Any, make_mgn_client: Any) -> None:
    """Fault flags reach the server (uninitialized account) and SIGTERM exits 0."""
    proc = simulate("--servers", "1", "--uninitialized", "--throttle", "ListWaves=5")
    url = proc.stdout.readline().strip().partition("=")[2]
    mgn = make_mgn_client(url)
    with pytest.raises(mgn.exceptions.UninitializedAccountException):
        mgn.list_waves()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "uninitialized=True" in err


def test_simulate_bad_fixture_exits_2(simulate: Any, tmp_path: Path) -> None:
    """An invalid fixture is reported without a traceback and exits 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("servers: [{sourceServerID: nope}]\n")
    proc = simulate("--fixture", str(bad))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "sourceServerID" in err and "Traceback" not in err


def test_plan_flag_seeds_ready_servers(tmp_path: Path) -> None:
    """--plan seeds each planned server ready for finalize, in a wave named after the plan."""
    (tmp_path / "w.yaml").write_text(
        "wave: wave-07\naccountID: '444444444444'\napplications:\n"
        "  - applicationID: app-0a1b2c3d4e5f6a7b8\n    sourceServerIDs: [s-0a1b2c3d4e5f6a7b8]\n"
    )
    parser = argparse.ArgumentParser()
    emulator_cli.add_arguments(parser)
    emulator, summary = emulator_cli.build_emulator(parser.parse_args(["--plan", str(tmp_path)]))
    assert summary.startswith("1 servers ready")
    [server] = emulator.store.servers("444444444444")
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    [wave] = emulator.store.account("444444444444").waves.values()
    assert wave["name"] == "wave-07"


def _refused(simulate: Any, *args: str) -> str:
    proc = simulate(*args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and out == ""
    return str(err)


def test_unknown_quota_operation_is_refused(simulate: Any) -> None:
    """--quota Finalize=5 exits 2 and suggests FinalizeCutover."""
    err = _refused(simulate, "--servers", "1", "--quota", "Finalize=5")
    assert "'Finalize'" in err and "did you mean FinalizeCutover" in err


def test_unseeded_stuck_servers_are_refused(simulate: Any) -> None:
    """--stuck and --stuck-job naming servers that were not seeded exit 2 naming them."""
    err = _refused(simulate, "--servers", "2", "--stuck", "s-0000000000000000a")
    assert "--stuck names" in err and "s-0000000000000000a" in err
    err = _refused(simulate, "--servers", "2", "--stuck-job", "s-0000000000000000b")
    assert "--stuck-job names" in err and "s-0000000000000000b" in err


def test_wave_plan_as_fixture_is_refused(simulate: Any) -> None:
    """A wave plan passed as --fixture exits 2 naming the file and pointing at --plan."""
    plan = REPO / "waves" / "wave-01-payments.yaml"
    err = _refused(simulate, "--fixture", str(plan))
    assert str(plan) in err and "not an emulator fixture" in err and "--plan" in err


def test_bad_night_flags_are_refused(simulate: Any) -> None:
    """A failure rate above 1 or a reversed duration range exits 2 without a traceback."""
    assert "launch_failure_rate" in _refused(simulate, "--launch-failure-rate", "2")
    assert "MIN:MAX" in _refused(simulate, "--boot-duration", "90:30")


def test_night_flags_and_exports(simulate: Any, make_mgn_client: Any) -> None:
    """The night flags reach the emulator, moto serves EC2, and every variable is exported:
    with the printed environment alone, boto3 sees the launched instance in moto."""
    fixture = REPO / "waves" / "fixtures" / "wave-01-demo.yaml"
    proc = simulate(
        "--fixture", str(fixture), "--time-scale", "3600", "--launch-duration", "3600",
        "--post-launch-action", "smoke=AWS-RunShellScript,must-succeed,timeout=60",
    )  # fmt: skip
    lines = [proc.stdout.readline().strip() for _ in range(7)]
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines[:6])
    assert set(env) == {
        "AWS_ENDPOINT_URL_MGN",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
    assert lines[6] == "unset AWS_PROFILE AWS_SESSION_TOKEN"
    sid, account = "s-37f758ca982656978", "111122223333"
    mgn = make_mgn_client(env["AWS_ENDPOINT_URL_MGN"])
    mgn.change_server_life_cycle_state(
        sourceServerID=sid, accountID=account, lifeCycle={"state": "READY_FOR_CUTOVER"}
    )
    job = mgn.start_cutover(sourceServerIDs=[sid], accountID=account)["job"]
    assert mgn.describe_jobs(accountID=account)["items"][0]["status"] != "COMPLETED"
    for _ in range(100):  # an hour at 3600x is one real second
        [seen] = mgn.describe_jobs(filters={"jobIDs": [job["jobID"]]}, accountID=account)["items"]
        if seen["status"] == "COMPLETED":
            break
        time.sleep(0.05)
    [p] = seen["participatingServers"]
    [action] = p["postLaunchActionsStatus"]["postLaunchActionsLaunchStatusList"]
    assert action["ssmDocument"]["mustSucceedForCutover"] is True
    ec2 = boto3.client(
        "ec2",
        endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=None,
    )
    sts = boto3.client(
        "sts",
        endpoint_url=env["AWS_ENDPOINT_URL_STS"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/r", RoleSessionName="night")
    assert ec2.describe_instance_status()["InstanceStatuses"] == []
    assumed = boto3.client(
        "ec2",
        endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=creds["Credentials"]["AccessKeyId"],
        aws_secret_access_key=creds["Credentials"]["SecretAccessKey"],
        aws_session_token=creds["Credentials"]["SessionToken"],
    )
    found = assumed.describe_instance_status()["InstanceStatuses"]
    assert [s["InstanceId"] for s in found] == [p["launchedEc2InstanceID"]]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "time_scale=3600.0" in err


def test_no_moto_invents_instance_ids(simulate: Any) -> None:
    """--no-moto prints no EC2 endpoint (instance IDs are invented) but still the credentials."""
    proc = simulate("--servers", "1", "--no-moto")
    lines = [proc.stdout.readline().strip() for _ in range(5)]
    assert lines[0].startswith("export AWS_ENDPOINT_URL_MGN=")
    assert not any("AWS_ENDPOINT_URL_EC2" in line for line in lines)
    assert "export AWS_ACCESS_KEY_ID=testing" in lines
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "invented instance IDs" in err


def test_state_flag_seeds_servers_ready_for_the_night(tmp_path: Path) -> None:
    """--state READY_FOR_CUTOVER seeds generated and planned servers unlaunched, replicating."""
    (tmp_path / "w.yaml").write_text(
        "wave: wave-07\napplications:\n"
        "  - applicationID: app-0a1b2c3d4e5f6a7b8\n    sourceServerIDs: [s-0a1b2c3d4e5f6a7b8]\n"
    )
    parser = argparse.ArgumentParser()
    emulator_cli.add_arguments(parser)
    for args in (["--plan", str(tmp_path)], ["--servers", "5"]):
        ns = parser.parse_args([*args, "--state", "READY_FOR_CUTOVER"])
        emulator, summary = emulator_cli.build_emulator(ns)
        servers = emulator.store.servers(None)
        assert servers and {s["lifeCycle"]["state"] for s in servers} == {"READY_FOR_CUTOVER"}
        assert all("launchedInstance" not in s for s in servers)
        assert all(s["dataReplicationInfo"]["lagDuration"] for s in servers)
        assert "StartCutover" in summary or "READY_FOR_CUTOVER" in summary


def test_state_flag_is_refused_with_a_fixture(simulate: Any) -> None:
    """--state with --fixture exits 2: the fixture sets each server's state."""
    err = _refused(simulate, "--fixture", str(REPO / "waves" / "fixtures" / "wave-01-demo.yaml"),
                   "--state", "READY_FOR_CUTOVER")  # fmt: skip
    assert "--state goes with --servers or --plan" in err
