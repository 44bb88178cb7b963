"""`mgn-cutover simulate` as a user meets it: a subprocess serving until SIGINT."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
