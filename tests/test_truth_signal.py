"""A signal ends the run within the stop's grace even when the webhook never answers, and the
report names the notifications it dropped (issue 21, point 8).

The CLI as a subprocess against the emulator over HTTP; the webhook is a local TCP socket that
takes connections and never answers.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, report, run_args, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

TOKEN = "tok3nNeverShown"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A webhook URL whose server accepts TCP connections (the kernel's backlog) and never
    answers a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook/{TOKEN}?token={TOKEN}"
    finally:
        sock.close()


def test_sigterm_with_a_black_holed_webhook_exits_within_3_s_and_reports_the_dropped(
    emulator: Any, work_dir: Path, black_hole: str
) -> None:
    """SIGTERM while the webhook hangs on run_started: the process ends within ~3 s (not the
    notifier's 10 s per attempt), and report.json's warnings name the notifications dropped,
    the URL redacted."""
    groups = {aid(0): [sid(0, 0)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0), stuck=True),  # keeps the run polling
                server(sid(1, 0), aid(1), firstBoot="WAITING"),  # blocked: one more event
            ]
        }
    )
    plan = write_plan(work_dir, "w", groups)
    env = cli_env(emulator.url, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": black_hole})
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *run_args(plan, "w", work_dir)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stderr:
            if json.loads(line).get("event") == "preflight_done":
                break
        time.sleep(0.3)  # the application_blocked event is queued behind run_started
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took_s = time.monotonic() - sent_at
        rest = proc.stderr.read()
    assert proc.returncode == 1, rest[-3000:]
    assert took_s < 3.0, took_s
    rep = report(work_dir, "w")
    assert rep["interrupted"] is True
    [lost] = [w for w in rep["warnings"] if w.startswith("notifications not delivered")]
    assert "run_started" in lost and "application_blocked" in lost, lost
    assert "127.0.0.1" in lost and TOKEN not in json.dumps(rep)
    assert "notifications not delivered" in (work_dir / "reports" / "w" / "report.md").read_text()
    events = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    [timeout] = [e for e in events if e["event"] == "notify_flush_timeout"]
    assert timeout["level"] == "warning" and timeout["dropped"][0] == "run_started"
    assert TOKEN not in rest
