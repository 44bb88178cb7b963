"""Secrets: credentials never reach any output, and reports and state are private to the owner.

Every command runs under a wide-open umask (000) with distinctive credentials; then stdout,
stderr and every byte of every file under report_dir and state_dir (the SQLite journal and its
WAL included) are searched for them.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, run_args, server, sid, write_plan

ACCESS_KEY_ID = "AKIAQX7SECRETPROBE42"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYsecretProbe9"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjSESSIONPROBEdistinctive0123456789+/abcdefTOKEN=="
# Needles: each value whole, and long enough pieces of each that a partial echo is caught too.
NEEDLES = tuple(
    {
        v
        for value in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
        for v in (value, value[:12], value[-12:], value[8:24])
    }
)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Distinctive credentials in the environment the commands inherit."""
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


# `sh` sets the umask, then execs the tool (same pid, so a signal reaches the tool itself).
UMASK_000 = ("/bin/sh", "-c", 'umask 000 && exec "$@"', "sh", sys.executable, "-m", "orchestrator")


def open_umask_run(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run mgn-cutover with umask 000, so only the tool itself can make its files private."""
    return subprocess.run(
        [*UMASK_000, *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def leaks(blob: bytes) -> list[str]:
    """The needles found in `blob`."""
    return [n for n in NEEDLES if n.encode() in blob]


def test_no_command_output_or_file_holds_a_credential(
    secret_env: dict[str, str], emulator: Any, work_dir: Path
) -> None:
    """plan, run with faults, report, status and an access-denied run leak no credential."""
    assert cli_env(emulator.url)["AWS_SECRET_ACCESS_KEY"] == SECRET_ACCESS_KEY  # really used
    groups = {aid(a): [sid(a, n) for n in range(6)] for a in range(3)}
    entries = [server(s, a) for a, ids in groups.items() for s in ids]
    entries[0] = server(sid(0, 0), aid(0), "READY_FOR_CUTOVER")  # a blocked application
    emulator.seed({"servers": entries})
    plan = write_plan(work_dir, "sec", groups)
    env = cli_env(emulator.url)
    dirs = ["--state-dir", str(work_dir / "state"), "--report-dir", str(work_dir / "reports")]
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(label: str, args: list[str], expect: int) -> None:
        out = open_umask_run(args, env)
        assert out.returncode == expect, (label, out.stdout, out.stderr[-3000:])
        outputs.append((label, out))

    run("plan", ["plan", str(plan), "--wave", "sec"], 1)
    run("plan-json", ["plan", str(plan), "--wave", "sec", "--output", "json"], 1)
    emulator.set_faults(error_rate=0.3, drop_rate=0.1, quota_per_s={"FinalizeCutover": 20})
    run("run", run_args(plan, "sec", work_dir, "--max-attempts", "2"), 1)
    assert emulator.failed() > 0  # errors were logged, with their messages
    console = run_args(plan, "sec", work_dir)
    console[console.index("--log-format") + 1] = "console"
    run("run-console", console, 1)
    emulator.set_faults(error_rate=0.0, drop_rate=0.0, quota_per_s={})
    run("report", ["report", "--wave", "sec", *dirs], 1)
    run("status", ["status", "--wave", "sec", *dirs], 0)
    emulator.set_faults(access_denied=True)
    run("denied", run_args(plan, "sec", work_dir), 4)
    run("denied-plan", ["plan", str(plan), "--wave", "sec"], 4)

    for label, out in outputs:
        assert leaks(out.stdout.encode()) == [], (label, "stdout")
        assert leaks(out.stderr.encode()) == [], (label, "stderr")
    files = [p for d in ("reports", "state") for p in (work_dir / d).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"report.json", "report.md", "report.csv", "journal.sqlite3", "run.lock"} <= names
    for path in files:
        assert leaks(path.read_bytes()) == [], path


def private_violations(*roots: Path) -> list[str]:
    """Every file or folder under `roots` (themselves included) that group or others can use."""
    paths = [*roots, *(p for r in roots for p in r.rglob("*"))]
    modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in paths}
    return [f"{p} is {m:o}" for p, m in modes.items() if m & 0o077]


def test_reports_and_state_are_private_even_under_umask_000(
    fake_credentials: dict[str, str], emulator: Any, work_dir: Path
) -> None:
    """Every file and folder the tool writes, the WAL of a killed run included, is owner-only."""
    groups = {aid(0): [sid(0, n) for n in range(10)]}
    emulator.seed({"servers": [server(s, aid(0)) for s in groups[aid(0)]]})
    plan = write_plan(work_dir, "priv", groups)
    emulator.set_faults(latency_ms=100)
    args = run_args(plan, "priv", work_dir, "--concurrency", "2")
    with subprocess.Popen(
        [*UMASK_000, *args],
        env=cli_env(emulator.url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"finalize_accepted"' in line:
                proc.send_signal(signal.SIGKILL)  # the journal's WAL is left as it was
                break
        proc.communicate(timeout=60)
    state = work_dir / "state"
    # A rehearsal's state lives in its MGN's own folder (state_dir/rehearsal@host-port/).
    assert list(state.glob("*/priv/journal.sqlite3-wal")), sorted(state.rglob("*"))
    assert private_violations(state) == []

    emulator.set_faults(latency_ms=0)
    out = open_umask_run(args, cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    again = open_umask_run(
        [
            "report",
            "--wave",
            "priv",
            "--state-dir",
            str(state),
            "--report-dir",
            str(work_dir / "reports"),
        ],
        cli_env(emulator.url),
    )
    assert again.returncode == 0, again.stderr
    assert (work_dir / "reports" / "priv" / "report.csv").exists()
    assert private_violations(work_dir / "reports", state) == []


def test_assumed_role_credentials_appear_nowhere(
    secret_env: dict[str, str], emulator: Any, work_dir: Path, moto_url: str
) -> None:
    """assume-role through moto's STS: neither the caller's credentials nor any key, secret or
    session token STS issued for the roles reach stdout, stderr, reports or the journal."""
    from moto.sts.models import sts_backends

    ids = {
        "222222222222": [sid(7, n) for n in range(3)],
        "333333333333": [sid(8, n) for n in range(3)],
    }
    emulator.seed(
        {
            "servers": [
                server(s, aid(7 if a == "222222222222" else 8), accountID=a)
                for a, v in ids.items()
                for s in v
            ]
        }
    )
    plan = work_dir / "roles.yaml"
    plan.write_text(
        "wave: roles\napplications:\n"
        + "".join(
            f'  - applicationID: {aid(7 if a == "222222222222" else 8)}\n    accountID: "{a}"\n'
            f"    sourceServerIDs: [{', '.join(v)}]\n"
            for a, v in ids.items()
        )
    )
    config = work_dir / "c.yaml"
    config.write_text("account_access: assume-role\nrole_arn: arn:aws:iam::{accountID}:role/R\n")
    env = cli_env(emulator.url, {"AWS_ENDPOINT_URL_STS": moto_url})
    out = open_umask_run([*run_args(plan, "roles", work_dir), "--config", str(config)], env)
    assert out.returncode == 0, out.stderr[-3000:]
    issued = [
        value
        for regions in sts_backends.values()
        for backend in regions.values()
        for role in backend.assumed_roles
        for value in (role.access_key_id, role.secret_access_key, role.session_token)
    ]
    assert len(issued) == 6  # one AssumeRole per account
    needles = [*NEEDLES, *issued, *(v[8:24] for v in issued)]
    blobs = [out.stdout.encode(), out.stderr.encode()]
    blobs += [
        p.read_bytes()
        for d in ("reports", "state")
        for p in (work_dir / d).rglob("*")
        if p.is_file()
    ]
    for blob in blobs:
        assert [n for n in needles if n.encode() in blob] == []
