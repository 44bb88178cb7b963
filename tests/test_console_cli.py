"""Issue 14 from the outside: `status` on its own, the report's first page, rehearsals that never
reach AWS, and errors a person can act on; each drives `mgn-cutover` as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runhelp import aid, cli_env, mgn_cutover, report, run_args, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

OTHER_ACCOUNT = "222233334444"


def _plan_in_account(folder: Path, wave: str, apps: dict[str, list[str]], account: str) -> Path:
    path = write_plan(folder, wave, apps)
    doc = yaml.safe_load(path.read_text())
    doc["accountID"] = account
    doc["description"] = "Payments stack"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_status_with_the_plan_works_during_a_first_run(emulator: Any, work_dir: Path) -> None:
    """While a wave's first run waits for MGN, `status PLAN --wave W` reads the plan's account,
    names applications, shows journal and MGN state and what is pending since when."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(s, a, accountID=OTHER_ACCOUNT) for a, ids in groups.items() for s in ids
            ]
        }
    )
    emulator.set_faults(stuck=frozenset({sid(0, 1)}))
    plan = _plan_in_account(work_dir, "w", groups, OTHER_ACCOUNT)
    env = cli_env(emulator.url)
    args = run_args(plan, "w", work_dir)
    args[args.index("--timeout") + 1] = "60"
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = ["--state-dir", str(work_dir / "state")]
        deadline = time.monotonic() + 30
        while True:
            out = mgn_cutover(["status", str(plan), "--wave", "w", *state], env)
            if "finalize accepted since" in out.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert run.poll() is None, "the run should still be waiting for the stuck server"
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("wave w: a run is in progress (pid ")
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("s-")}
    assert rows[sid(0, 0)][0] == "app0" and rows[sid(1, 0)][0] == "app1"
    assert "not found" not in out.stdout  # the plan's account was used
    assert rows[sid(0, 0)][-2:] == ["CUTOVER", "DISCONNECTED"]
    assert rows[sid(0, 1)][2] == "accepted" and rows[sid(0, 1)][-2] == "CUTTING_OVER"
    pending = [line for line in lines if line.startswith("  s-")]
    assert len(pending) == 1 and pending[0].split()[:2] == [sid(0, 1), "app0"]
    assert "since 20" in pending[0]
    # Without the plan (compatibility) status still answers from the journal.
    old = mgn_cutover(["status", "--wave", "w", *state], env)
    assert old.returncode == 0 and sid(0, 1) in old.stdout


def test_report_first_page_is_for_the_manager(emulator: Any, work_dir: Path) -> None:
    """report.md opens with the description, account, duration, one row per application (a half
    cut over one flagged), then problem servers with what to do; names everywhere; the CSV
    gains wave and application_name at the end; an emulator run says it is a rehearsal."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), aid(0), accountID=OTHER_ACCOUNT),
                server(sid(0, 1), aid(0), accountID=OTHER_ACCOUNT),
                server(sid(1, 0), aid(1), accountID=OTHER_ACCOUNT),
            ]
        }
    )
    emulator.set_faults(stuck=frozenset({sid(0, 1)}))
    plan = _plan_in_account(work_dir, "w", groups, OTHER_ACCOUNT)
    args = run_args(plan, "w", work_dir)
    args[args.index("--timeout") + 1] = "1"
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-2000:]
    md = (work_dir / "reports" / "w" / "report.md").read_text()
    first_page = md.split("## Summary")[0]
    assert "**REHEARSAL**" in first_page and emulator.url in first_page
    assert "Payments stack" in first_page and f"account {OTHER_ACCOUNT}" in first_page
    assert "finished:" in first_page and "s)" in first_page  # the run's duration
    assert f"| app0 | {aid(0)} | 1 of 2 | **HALF CUT OVER" in first_page
    assert f"| app1 | {aid(1)} | 1 of 1 | converged |" in first_page
    problems = first_page.split("## Problem servers")[1]
    assert sid(0, 1) in problems and f"app0 ({aid(0)})" in problems and "rerun later" in problems
    assert md.index("## Applications") < md.index("## Problem servers") < md.index("## Summary")
    assert f"### app0 ({aid(0)})" in md
    rep = report(work_dir, "w")
    assert rep["endpoint_url"] == emulator.url and rep["rehearsal"] is True
    [half] = [a for a in rep["applications"] if a["status"] == "partially_cut_over"]
    assert half["name"] == "app0"
    rows = list(csv.reader(io.StringIO((work_dir / "reports" / "w" / "report.csv").read_text())))
    assert rows[0][-2:] == ["wave", "application_name"] and rows[0][0] == "sourceServerID"
    assert {tuple(r[-2:]) for r in rows[1:]} == {("w", "app0"), ("w", "app1")}
    html = (work_dir / "reports" / "w" / "report.html").read_text()
    assert "REHEARSAL" in html


def test_plan_table_and_json_name_applications(emulator: Any, work_dir: Path) -> None:
    """`plan` shows the plan's application names next to their IDs, in the table and JSON."""
    groups = {aid(0): [sid(0, 0)]}
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", groups)
    env = cli_env(emulator.url)
    table = mgn_cutover(["plan", str(plan), "--wave", "w"], env)
    assert table.returncode == 0, table.stderr
    assert f"app0 ({aid(0)})" in table.stdout
    doc = mgn_cutover(["plan", str(plan), "--wave", "w", "--output", "json"], env)
    assert json.loads(doc.stdout)["servers"][0]["application_name"] == "app0"


@pytest.mark.parametrize(
    ("extra", "env_extra", "service", "setting"),
    [
        (["--verify-instances"], {}, "EC2", "--verify-instances"),
        ([], {"MGN_CUTOVER_REPORT_URI": "s3://bucket/reports/"}, "S3", "report_uri"),
        (
            [],
            {"MGN_CUTOVER_NOTIFY_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:111122223333:night"},
            "SNS",
            "notify_sns_topic_arn",
        ),
    ],
)
def test_a_rehearsal_never_calls_real_aws(
    emulator: Any,
    work_dir: Path,
    extra: list[str],
    env_extra: dict[str, str],
    service: str,
    setting: str,
) -> None:
    """With MGN on an emulator, a run that would call real EC2, S3 or SNS is refused (exit 2,
    naming the variable to set) before anything is sent."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    env = cli_env(emulator.url, env_extra)
    out = mgn_cutover(run_args(plan, "w", work_dir, *extra), env)
    assert out.returncode == 2, out.stdout + out.stderr[-2000:]
    assert f"AWS_ENDPOINT_URL_{service}" in out.stderr and setting in out.stderr
    assert out.stdout.startswith("wave w: refused exit=2 why:")
    assert emulator.calls("FinalizeCutover") == 0 and emulator.calls("DescribeSourceServers") == 0


def test_plan_verify_instances_in_a_rehearsal_needs_a_local_ec2(
    emulator: Any, work_dir: Path, moto_url: str
) -> None:
    """`plan --verify-instances` on the emulator is refused without AWS_ENDPOINT_URL_EC2, and
    runs with it set to a local endpoint."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    args = ["plan", str(plan), "--wave", "w", "--verify-instances"]
    refused = mgn_cutover(args, cli_env(emulator.url))
    assert refused.returncode == 2 and "AWS_ENDPOINT_URL_EC2" in refused.stderr
    allowed = mgn_cutover(args, cli_env(emulator.url, {"AWS_ENDPOINT_URL_EC2": moto_url}))
    assert allowed.returncode in (0, 1), allowed.stderr[-2000:]
    assert "AWS_ENDPOINT_URL_EC2" not in allowed.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("source", ["AWS_ENDPOINT_URL_MGN", "--endpoint-url"])
def test_an_unreachable_endpoint_is_named_within_5_s(work_dir: Path, source: str) -> None:
    """A closed port: within 5 s stderr names the setting the endpoint came from and says it is
    retrying; the run then exits 1 (nothing sent, every server not_attempted)."""
    url = f"http://127.0.0.1:{_free_port()}"
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    args = run_args(plan, "w", work_dir, "--max-attempts", "4")
    env = cli_env(url)
    if source == "--endpoint-url":
        del env["AWS_ENDPOINT_URL_MGN"]
        args += ["--endpoint-url", url]
    started = time.monotonic()
    seen_at = None
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            event = json.loads(line)
            if event["event"] == "call_retry" and source in event["error"]:
                seen_at = time.monotonic() - started
                break
        rest = proc.stderr.read()
        stdout = proc.stdout.read()
        assert proc.wait(timeout=60) == 1, rest[-2000:]
    assert seen_at is not None and seen_at < 5.0, seen_at
    assert url in rest and source in rest
    assert stdout.startswith("wave w: total=1 not_attempted=1 exit=1")


def test_missing_credentials_hint_that_no_endpoint_means_real_aws(work_dir: Path) -> None:
    """No MGN endpoint and no credentials: exit 4, and the message says an unset
    AWS_ENDPOINT_URL_MGN means real AWS."""
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    env = cli_env("unused")
    for name in ("AWS_ENDPOINT_URL_MGN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        del env[name]
    env.pop("AWS_SESSION_TOKEN", None)
    out = mgn_cutover(run_args(plan, "w", work_dir), env)
    assert out.returncode == 4, out.stderr[-2000:]
    assert "AWS_ENDPOINT_URL_MGN is unset, so this is real AWS" in out.stderr


def test_an_invalid_endpoint_variable_is_refused_by_name(work_dir: Path) -> None:
    """AWS_ENDPOINT_URL_MGN that is not a URL: exit 2 naming the variable, nothing tried."""
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env("localhost:8080"))
    assert out.returncode == 2
    assert "AWS_ENDPOINT_URL_MGN" in out.stderr and "not an http:// or https:// URL" in out.stderr
