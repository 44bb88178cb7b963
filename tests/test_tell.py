"""A night that tells people: notifications, reports uploaded to S3, cutover windows, through
`mgn-cutover run` as a subprocess (emulator for MGN, moto for S3, a local webhook receiver)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.runhelp import (
    aid,
    cli_env,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)
from tests.test_notify import PATH_TOKEN, TOKEN, Receiver, receiver  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("fake_credentials")


def _wave(emulator: Any, work: Path, blocked: bool = True) -> Path:
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    servers = [server(sid(0, 0), aid(0)), server(sid(0, 1), aid(0))]
    servers.append(server(sid(1, 0), aid(1), firstBoot="WAITING" if blocked else "SUCCEEDED"))
    emulator.seed({"servers": servers})
    return write_plan(work, "w", groups)


async def _run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The CLI as a subprocess without blocking this loop (the webhook receiver lives on it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_run_tells_the_webhook_what_happened(
    emulator: Any,
    work_dir: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """Start, an application finalized, one blocked, the end with the report: each is a JSON
    message Slack and Teams accept; the webhook's token appears in no output or report."""
    plan = _wave(emulator, work_dir)
    env = cli_env(emulator.url, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": receiver.url})
    code, out, err = await _run(run_args(plan, "w", work_dir), env)
    assert code == 1, err[-3000:]
    kinds = [b["mgn_cutover"]["event"] for b in receiver.bodies]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"application_finalized", "application_blocked"} <= set(kinds)
    assert all(isinstance(b["text"], str) and b["text"] for b in receiver.bodies)
    finished = receiver.bodies[-1]
    assert finished["mgn_cutover"]["exit_code"] == 1
    assert "report.md" in finished["mgn_cutover"]["report_location"]
    everything = out + err
    for path in (work_dir / "reports").rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    assert TOKEN not in everything and PATH_TOKEN not in everything


def test_reports_are_uploaded_and_an_s3_failure_never_fails_the_run(
    emulator: Any, work_dir: Path, moto_url: str
) -> None:
    """With report_uri every report file lands in S3 (encrypted) and the summary line says
    where; a missing bucket is logged and said, and the exit code is the run's own."""
    plan = _wave(emulator, work_dir, blocked=False)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket="night-reports")
    extra = {"AWS_ENDPOINT_URL_S3": moto_url, "MGN_CUTOVER_REPORT_URI": "s3://night-reports/mgn/"}
    out = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url, extra))
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = report(work_dir, "w")["run_id"]
    assert f"uploaded=s3://night-reports/mgn/w/{run_id}/" in out.stdout
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="night-reports")["Contents"]}
    names = {"report.json", "report.md", "report.csv", "report.html"}
    assert keys == {f"mgn/w/{run_id}/{n}" for n in names}
    head = s3.head_object(Bucket="night-reports", Key=f"mgn/w/{run_id}/report.json")
    assert head["ServerSideEncryption"] == "AES256"

    extra["MGN_CUTOVER_REPORT_URI"] = "s3://no-such-bucket/"
    again = mgn_cutover(run_args(plan, "w", work_dir), cli_env(emulator.url, extra))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "uploaded=" not in again.stdout
    failed = [json.loads(x) for x in again.stderr.splitlines() if "report_upload_failed" in x]
    assert failed and "NoSuchBucket" in failed[0]["summary"]


def test_a_run_started_before_its_window_sends_nothing_and_exits_6(
    emulator: Any, work_dir: Path
) -> None:
    """--not-before in the future: nothing read, nothing sent, exit 6 saying when it opens."""
    plan = _wave(emulator, work_dir)
    opens = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="seconds")
    out = mgn_cutover(run_args(plan, "w", work_dir, "--not-before", opens), cli_env(emulator.url))
    assert out.returncode == 6, out.stderr
    assert "window opens" in out.stderr
    assert emulator.calls("DescribeSourceServers") == 0
    assert emulator.calls("FinalizeCutover") == 0


def test_when_the_window_closes_nothing_new_is_sent(emulator: Any, work_dir: Path) -> None:
    """--not-after passing mid-run: what was not started is not_attempted, "window closed";
    what was sent is still confirmed by the reconciler."""
    groups = {aid(a): [sid(a, 0)] for a in range(12)}
    emulator.seed({"servers": [server(ids[0], a) for a, ids in groups.items()]})
    plan = write_plan(work_dir, "w", groups)
    closes = (datetime.now(UTC) + timedelta(seconds=4)).isoformat(timespec="milliseconds")
    args = run_args(plan, "w", work_dir, "--not-after", closes)
    args[args.index("--finalize-rate") + 1] = "2"
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    got = outcomes(report(work_dir, "w"))
    finalized = [s for s, o in got.items() if o == "finalized"]
    late = [r for r in report(work_dir, "w")["servers"] if r["outcome"] == "not_attempted"]
    assert finalized and late, got
    assert all("window closed" in r["reason"] for r in late)
    assert emulator.calls("FinalizeCutover") == len(finalized)
    assert report(work_dir, "w")["stop_reason"] == "window_closed"
