"""Runs on several "hosts" sharing one DynamoDB state table (moto in server mode).

Each host is a real `mgn-cutover run` subprocess with its own working, report and state folders;
only the table is shared. Leases are short (4 s, heartbeat 1 s) so expiry is quick; waits are
real but bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.dynamo import TableSettings, init_table
from tests.moto_dynamo import serialize
from tests.runhelp import (
    aid,
    cli_env,
    finalized_after_success,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")

TABLE = "mgn-cutover-state"
LEASE_S = 4.0  # long enough for a refused run to start under load; short to wait out


@pytest.fixture(autouse=True)
def _moto_one_call_at_a_time() -> None:
    """Our writers run in several threads; moto's DynamoDB is not thread-safe (moto_dynamo)."""
    serialize()


@pytest.fixture
def table(moto_url: str) -> str:
    """The state table, created as `state init` does."""
    init_table(TableSettings(TABLE, region="us-east-1", endpoint_url=moto_url))
    return moto_url


def state_env(emulator_url: str, dynamo_url: str) -> dict[str, str]:
    return cli_env(
        emulator_url,
        {
            "MGN_CUTOVER_STATE_BACKEND": "dynamodb",
            "MGN_CUTOVER_STATE_TABLE": TABLE,
            "MGN_CUTOVER_STATE_ENDPOINT_URL": dynamo_url,
            "MGN_CUTOVER_STATE_LEASE_S": str(LEASE_S),
            "MGN_CUTOVER_STATE_HEARTBEAT_S": "1",
        },
    )


def seed_wave(handle: Any, work: Path, wave: str, apps: int, per_app: int) -> tuple[Path, set[str]]:
    groups = {aid(a): [sid(a, n) for n in range(per_app)] for a in range(apps)}
    handle.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    return write_plan(work, wave, groups), {s for ids in groups.values() for s in ids}


def host(work: Path, name: str) -> Path:
    folder = work / name
    folder.mkdir()
    return folder


class Run:
    """A `mgn-cutover run` subprocess whose JSON log is read line by line."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []

    def wait_for(self, event: str, count: int = 1, timeout_s: float = 60.0) -> None:
        """Read the log until the `count`th `event` (the process keeps running)."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        seen = sum(e.get("event") == event for e in self.events)
        while seen < count:
            assert time.monotonic() < deadline, f"no {event} x{count}: {self.events[-5:]}"
            line = self.proc.stderr.readline()
            assert line, f"the run ended before {event} x{count}: {self.events[-5:]}"
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
            seen += self.events[-1].get("event") == event

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout_s)
        for line in err.splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


def wait_until_idle(handle: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(handle.stats()["calls"].values()) == len(handle.request_log()):
            return
        time.sleep(0.02)
    raise AssertionError("the emulator still has requests in flight")


def finalize_calls(handle: Any) -> int:
    return sum(1 for e in handle.request_log() if e["op"] == "FinalizeCutover")


def test_a_second_host_exits_3_naming_the_first(emulator: Any, table: str, work_dir: Path) -> None:
    """While host A runs a wave, host B (other folders, same table) exits 3 naming A's pid,
    host and run; once A is done, B may run (and finds nothing left to send)."""
    plan, ids = seed_wave(emulator, work_dir, "two", apps=4, per_app=5)
    emulator.set_faults(quota_per_s={"FinalizeCutover": 2})
    env = state_env(emulator.url, table)
    a_dir, b_dir = host(work_dir, "a"), host(work_dir, "b")
    a = Run(run_args(plan, "two", a_dir, "--finalize-rate", "2"), env, a_dir)
    try:
        a.wait_for("run_started")
        second = mgn_cutover(run_args(plan, "two", b_dir), env)
        assert second.returncode == 3, second.stderr[-2000:]
        events = [json.loads(line) for line in second.stderr.splitlines()]
        [refused] = [e for e in events if e["event"] == "run_refused"]
        assert refused["event"] == "run_refused" and refused["exit_code"] == 3
        assert f"is locked by pid {a.proc.pid} on host" in refused["error"]
        started = next(e for e in a.events if e.get("event") == "run_started")
        assert started["run_id"] in refused["error"]
        emulator.set_faults(quota_per_s={})
        code, _, err = a.finish()
        assert code == 0, err[-3000:]
    finally:
        a.kill()
    again = mgn_cutover(run_args(plan, "two", b_dir), env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert finalize_calls(emulator) == len(ids)
    assert set(outcomes(report(b_dir, "two")).values()) == {"finalized"}


def test_sigkill_mid_pool_then_another_host_resumes_after_the_lease_expires(
    emulator: Any, table: str, work_dir: Path
) -> None:
    """Host A is SIGKILLed mid-pool; host B is refused until A's lease expires, then resumes:
    nothing that had its 200 is sent again, and B's report covers every server. `report` and
    `status` on a third host read the same table."""
    plan, ids = seed_wave(emulator, work_dir, "kill", apps=4, per_app=5)
    emulator.set_faults(latency_ms=20, quota_per_s={"FinalizeCutover": 10})
    env = state_env(emulator.url, table)
    a_dir, b_dir, c_dir = host(work_dir, "a"), host(work_dir, "b"), host(work_dir, "c")
    a = Run(run_args(plan, "kill", a_dir, "--finalize-rate", "10"), env, a_dir)
    try:
        a.wait_for("finalize_accepted", count=5)
        a.proc.send_signal(signal.SIGKILL)
    finally:
        a.kill()
    assert a.proc.returncode == -signal.SIGKILL
    wait_until_idle(emulator)
    sent_by_a = finalize_calls(emulator)
    assert 5 <= sent_by_a < len(ids)

    refused = mgn_cutover(run_args(plan, "kill", b_dir), env)  # A's lease has not expired yet
    assert refused.returncode == 3, refused.stderr[-2000:]
    time.sleep(LEASE_S + 0.5)
    emulator.set_faults(quota_per_s={})
    resumed = mgn_cutover(run_args(plan, "kill", b_dir), env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '"wave_lock_taken_over"' in resumed.stderr
    assert finalized_after_success(emulator.request_log()) == []
    assert finalize_calls(emulator) <= len(ids) + sent_by_a  # only the unanswered are resent
    rep = report(b_dir, "kill")
    assert sorted(outcomes(rep)) == sorted(ids)
    assert set(outcomes(rep).values()) == {"finalized"}
    assert all(r["finalized_at"] and r["converged_at"] for r in rep["servers"])

    common = ["--wave", "kill", "--report-dir", str(c_dir / "reports")]
    rendered = mgn_cutover(["report", *common], env)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert outcomes(report(c_dir, "kill")) == outcomes(rep)
    status = mgn_cutover(["status", *common, "--log-format", "json"], env)
    assert status.returncode == 0, status.stderr[-2000:]
    rows = [line.split() for line in status.stdout.splitlines() if line.startswith("s-")]
    assert {r[0] for r in rows} == ids
    assert all({"finalized", "converged", "CUTOVER", "DISCONNECTED"} <= set(r) for r in rows)


def test_a_paused_holder_resumed_after_a_takeover_sends_nothing_and_exits_5(
    emulator: Any, table: str, work_dir: Path
) -> None:
    """Host A is SIGSTOPped past its lease; host B takes the wave over and finishes it; A, once
    SIGCONTinued, sends no FinalizeCutover, says it lost its lease, and exits 5."""
    plan, _ = seed_wave(emulator, work_dir, "pause", apps=4, per_app=5)
    emulator.set_faults(quota_per_s={"FinalizeCutover": 4})
    env = state_env(emulator.url, table)
    a_dir, b_dir = host(work_dir, "a"), host(work_dir, "b")
    a = Run(run_args(plan, "pause", a_dir, "--finalize-rate", "4"), env, a_dir)
    try:
        a.wait_for("finalize_accepted", count=3)
        a.proc.send_signal(signal.SIGSTOP)
        wait_until_idle(emulator)
        time.sleep(LEASE_S + 0.5)
        emulator.set_faults(quota_per_s={})
        taken = mgn_cutover(run_args(plan, "pause", b_dir), env)
        assert taken.returncode == 0, taken.stderr[-3000:]
        assert set(outcomes(report(b_dir, "pause")).values()) == {"finalized"}
        sent_before = finalize_calls(emulator)
        a.proc.send_signal(signal.SIGCONT)
        code, out, err = a.finish()
    finally:
        a.kill()
    assert code == 5, err[-3000:]
    wait_until_idle(emulator)
    assert finalize_calls(emulator) == sent_before  # A sent nothing after it woke up
    assert finalized_after_success(emulator.request_log()) == []
    lost = [e for e in a.events if e.get("event") == "lease_lost"]
    assert lost, err[-3000:]
    stopping = [e for e in a.events if e.get("event") == "run_stopping"]
    assert stopping and "lease" in stopping[0]["detail"]
    assert "exit=5" in out
    a_report = report(a_dir, "pause")
    assert a_report["stop_reason"] == "local_state" and a_report["exit_code"] == 5
    assert "Traceback" not in err


class _Flaky(BaseHTTPRequestHandler):
    """Forwards to moto, but refuses journal writes of servers as `mode` says."""

    upstream = ""
    mode = "throttled"
    refused = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith("TransactWriteItems") and b"server#" in body:
            type(self).refused += 1
            if self.mode == "throttled":
                status, kind = 400, "com.amazonaws.dynamodb.v20120810#ThrottlingException"
            else:
                status, kind = 503, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable"
            data = json.dumps({"__type": kind, "message": "try again later"}).encode()
            self._answer(status, {"Content-Type": "application/x-amz-json-1.0"}, data)
            return
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request("POST", self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self._answer(resp.status, dict(resp.getheaders()), data)

    def _answer(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server",
                                 "date"):  # fmt: skip
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def flaky(table: str) -> Iterator[type[_Flaky]]:
    handler = type("Flaky", (_Flaky,), {"upstream": table, "refused": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["throttled", "unavailable"])
def test_nothing_is_sent_while_the_intent_cannot_be_recorded(
    emulator: Any, flaky: type[_Flaky], work_dir: Path, mode: str
) -> None:
    """DynamoDB throttles (or fails) every journal write of a server: the run sends no
    FinalizeCutover, says local state could not be written, and exits 5."""
    flaky.mode = mode
    plan, _ = seed_wave(emulator, work_dir, "ddb", apps=2, per_app=3)
    env = state_env(emulator.url, flaky.url)  # type: ignore[attr-defined]
    out = mgn_cutover(run_args(plan, "ddb", work_dir), env)
    assert out.returncode == 5, out.stdout + out.stderr[-3000:]
    assert emulator.calls("FinalizeCutover") == 0
    assert flaky.refused >= 1
    assert "exit=5" in out.stdout
    rep = report(work_dir, "ddb")
    assert rep["stop_reason"] == "local_state"
    assert set(outcomes(rep).values()) == {"not_attempted"}
    reasons = {r["reason"] for r in rep["servers"]}
    assert all("local state could not be written" in r or "journal write failed" in r
               for r in reasons), reasons  # fmt: skip
    stopping = [json.loads(line) for line in out.stderr.splitlines() if "run_stopping" in line]
    assert stopping and ("Throttling" in stopping[0]["detail"] or "503" in stopping[0]["detail"]
                         or "ServiceUnavailable" in stopping[0]["detail"])  # fmt: skip


def test_state_init_creates_the_table_once_and_reports_it_after(
    moto_url: str, fake_credentials: dict[str, str]
) -> None:
    """`state init` creates an on-demand table with point-in-time recovery; a second run
    reports the existing table and exits 0."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    args = ["state", "init", "--table", "waves-state", "--state-endpoint-url", moto_url]
    first = mgn_cutover(args, env)
    assert first.returncode == 0, first.stderr
    assert "created table waves-state (on-demand capacity" in first.stdout
    assert "point-in-time recovery turned on" in first.stdout
    second = mgn_cutover(args, env)
    assert second.returncode == 0, second.stderr
    assert "table waves-state exists (ACTIVE, PAY_PER_REQUEST): kept" in second.stdout
    assert "point-in-time recovery already on" in second.stdout
