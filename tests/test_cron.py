"""Unattended runs: JSON lines under cron, partial reruns, and the operations docs kept honest.

Under cron (no terminal, `--log-format auto`), stderr carries only JSON lines and stdout carries
exactly one plain summary line (`wave W: total=N ... exit=E report=PATH`); docs/operations.md
says so, and documents the crontab, the systemd units, the exit codes and the IAM policy.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import build_parser
from orchestrator.report import EXIT_MEANINGS
from orchestrator.state import endpoint_scope
from tests.runhelp import (
    aid,
    cli_env,
    outcomes,
    report,
    run_args,
    server,
    sid,
    small_night,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SUMMARY_LINE = re.compile(
    r"^wave (\S+): total=\d+( \w+=\d+)* exit=(\d) report=(\S+report\.md)"
    r"( uploaded=\S+)?( why: .+)?$"
)
REFUSAL_LINE = re.compile(r"^wave (\S+): refused exit=(\d+) why: (.+)$")
PER_SERVER_KEYS = ("wave", "applicationID", "sourceServerID")


def cron_args(plan: Path, wave: str, work: Path, *extra: str) -> list[str]:
    """`run` arguments as a crontab line would give them: no --log-format (auto)."""
    args = run_args(plan, wave, work, *extra)
    at = args.index("--log-format")
    del args[at : at + 2]
    return args


def as_cron(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run mgn-cutover the way cron does: stdin, stdout and stderr are not terminals."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_events(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object; fails on the first line that is not one."""
    events = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line is not JSON: {line!r}")
        assert isinstance(event, dict), line
        events.append(event)
    return events


def assert_cron_output(out: subprocess.CompletedProcess[str], wave: str) -> list[dict[str, Any]]:
    """stdout is the one summary line; stderr is JSON events, each with the keys it promises."""
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    match = SUMMARY_LINE.match(lines[0])
    assert match, lines[0]
    assert match.group(1) == wave and int(match.group(3)) == out.returncode
    assert Path(match.group(4)).is_file()
    events = json_events(out.stderr)
    assert events, "a run logs at least run_started and run_finished"
    for event in events:
        assert {"event", "level", "timestamp"} <= set(event), event
        assert event.get("wave") == wave and event.get("run_id"), event  # every event, issue 14
        if "sourceServerID" in event:
            assert all(event.get(k) for k in PER_SERVER_KEYS), event
            assert event["wave"] == wave
    return events


def test_cron_run_writes_json_lines_and_one_summary_line(emulator: Any, work_dir: Path) -> None:
    """A cron run with warnings, blocks, retries and failures keeps stderr pure JSON lines."""
    big = aid(0)  # 201 servers: the plan warns (MGN allows 200 per application)
    groups = {big: [sid(0, n) for n in range(201)], aid(1): [sid(1, 0), sid(1, 1)]}
    emulator.seed(
        {
            "servers": [
                *(server(s, big) for s in groups[big]),
                server(sid(1, 0), aid(1), firstBoot="WAITING"),
                server(sid(1, 1), aid(1)),
            ]
        }
    )
    plan = write_plan(work_dir, "cron", groups)
    emulator.set_faults(error_rate=0.3, fault_ops=frozenset({"FinalizeCutover"}))
    out = as_cron(cron_args(plan, "cron", work_dir, "--max-attempts", "2"), cli_env(emulator.url))
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    events = assert_cron_output(out, "cron")
    names = Counter(e["event"] for e in events)
    for expected in (
        "plan_warning",
        "run_started",
        "preflight_done",
        "finalize_retry",
        "finalize_accepted",
        "server_unconfirmed",  # a 5xx on every attempt: it may have gone through
        "server_converged",
        "run_finished",
    ):
        assert names[expected] > 0, (expected, names)
    got = Counter(outcomes(report(work_dir, "cron")).values())
    assert got["blocked"] == 2 and got["unconfirmed"] > 0 and got["finalized"] > 0


def test_cron_run_appended_to_a_log_file_loses_no_line(emulator: Any, work_dir: Path) -> None:
    """`run ... >> cron.log 2>&1`: the process ends without the interpreter's teardown, after
    flushing; every JSON line and the summary line are in the file, and the exit code is kept."""
    plan = small_night(emulator, work_dir, "cronlog")
    log_file = work_dir / "cron.log"
    log_file.write_text("earlier night\n")
    with log_file.open("a") as out:
        code = subprocess.run(
            [sys.executable, "-m", "orchestrator", *cron_args(plan, "cronlog", work_dir)],
            env=cli_env(emulator.url),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        ).returncode
    assert code == 1  # one application blocked
    lines = log_file.read_text().splitlines()
    assert lines[0] == "earlier night"
    events = [json.loads(line) for line in lines[1:] if line.startswith("{")]
    assert [e["event"] for e in events].count("run_finished") == 1
    assert sum(1 for e in events if e["event"] == "server_converged") == 2
    # The run's own CPU seconds, between its start and end events (benchmarks/accounts.py).
    [started] = [e["cpu_s"] for e in events if e["event"] == "run_started"]
    [finished] = [e["cpu_s"] for e in events if e["event"] == "run_finished"]
    assert 0 < started < finished
    summaries = [line for line in lines[1:] if not line.startswith("{")]
    assert len(summaries) == 1 and SUMMARY_LINE.match(summaries[0]), summaries
    assert "exit=1" in summaries[0]


def test_cron_run_stopped_by_an_account_error_stays_json(emulator: Any, work_dir: Path) -> None:
    """An access-denied run exits 4 and still writes only JSON lines and one summary line."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    emulator.seed({"servers": [server(s, aid(0)) for s in groups[aid(0)]]})
    plan = write_plan(work_dir, "denied", groups)
    emulator.set_faults(access_denied=True)
    out = as_cron(cron_args(plan, "denied", work_dir), cli_env(emulator.url))
    assert out.returncode == 4, out.stdout + out.stderr[-3000:]
    events = assert_cron_output(out, "denied")
    assert any(e["level"] == "error" and "AccessDenied" in json.dumps(e) for e in events)


def test_application_flag_reruns_only_the_named_applications(emulator: Any, work_dir: Path) -> None:
    """After fixing two blocked applications, `--application` twice finalizes only those two."""
    groups = {aid(a): [sid(a, n) for n in range(3)] for a in range(4)}
    entries = [server(s, a) for a, ids in groups.items() for s in ids]
    entries[4] = server(sid(1, 1), aid(1), firstBoot="WAITING")
    entries[8] = server(sid(2, 2), aid(2), "READY_FOR_CUTOVER")
    emulator.seed({"servers": entries})
    plan = write_plan(work_dir, "part", groups)
    first = as_cron(cron_args(plan, "part", work_dir), cli_env(emulator.url))
    assert first.returncode == 1, first.stderr[-3000:]
    assert Counter(outcomes(report(work_dir, "part")).values()) == {"finalized": 6, "blocked": 6}

    # The operator fixes both in MGN, then reruns just those applications.
    emulator.seed({"servers": [server(sid(1, 1), aid(1)), server(sid(2, 2), aid(2))]})
    emulator.reset_counters()
    rerun = as_cron(
        cron_args(plan, "part", work_dir, "--application", aid(1), "--application", aid(2)),
        cli_env(emulator.url),
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_cron_output(rerun, "part")
    fixed = set(groups[aid(1)]) | set(groups[aid(2)])
    merged = report(work_dir, "part")  # the subset merged into the wave's report
    assert outcomes(merged) == dict.fromkeys(
        [s for ids in groups.values() for s in ids], "finalized"
    )
    assert merged["covered_applications"] == sorted([aid(1), aid(2)])
    assert merged["exit_code"] == 0
    by_server = emulator.stats()["by_server"]
    sent = {s: ops["FinalizeCutover"] for s, ops in by_server.items() if "FinalizeCutover" in ops}
    assert sent == dict.fromkeys(fixed, 1)

    # A full rerun now finds everything done: nothing sent, exit 0, the whole wave reported.
    emulator.reset_counters()
    full = as_cron(cron_args(plan, "part", work_dir), cli_env(emulator.url))
    assert full.returncode == 0, full.stderr[-3000:]
    assert emulator.calls("FinalizeCutover") == 0
    assert set(outcomes(report(work_dir, "part")).values()) == {"finalized"}
    assert len(outcomes(report(work_dir, "part"))) == 12


# -- docs/iam-policy.json ------------------------------------------------------------------------

PLAN_ACTIONS = {
    "mgn:DescribeSourceServers",
    "mgn:DescribeJobs",
    "mgn:ListWaves",
    "mgn:ListApplications",
    "mgn:ListManagedAccounts",
    "ec2:DescribeInstanceStatus",
}
RUN_ACTIONS = {"mgn:FinalizeCutover"}
# `run --launch` (StartCutover takes a job, so its Resource cannot be one source server).
NIGHT_ACTIONS = {
    "mgn:StartCutover",
    "mgn:ChangeServerLifeCycleState",
    "mgn:TerminateTargetInstances",
    "mgn:MarkAsArchived",
}
STATE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
}
STATE_INIT_ACTIONS = {
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:UpdateContinuousBackups",
}
STATE_MODULES = ("dynamo.py", "lease.py", "dynamo_journal.py")
# IAM has no action for a transaction: each of its parts needs its own.
TRANSACTION_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _statements() -> dict[str, dict[str, Any]]:
    policy = json.loads((DOCS / "iam-policy.json").read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    return {s["Sid"]: s for s in statements}


def _actions(statement: Mapping[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_iam_policy_grants_exactly_the_actions_plan_and_run_need() -> None:
    """docs/iam-policy.json is valid JSON with a read-only plan statement and a finalize one."""
    statements = _statements()
    assert set(statements) == {
        "PlanReadOnly", "RunFinalize", "RunNight", "StateTable", "StateTableInit"
    }  # fmt: skip
    assert _actions(statements["PlanReadOnly"]) == PLAN_ACTIONS
    assert _actions(statements["RunFinalize"]) == RUN_ACTIONS
    assert _actions(statements["RunNight"]) == NIGHT_ACTIONS
    assert _actions(statements["StateTable"]) == STATE_ACTIONS
    assert _actions(statements["StateTableInit"]) == STATE_INIT_ACTIONS
    for name in ("StateTable", "StateTableInit"):  # that table only, never every table
        assert statements[name]["Resource"] == "arn:aws:dynamodb:*:*:table/mgn-cutover-state"
    for statement in statements.values():
        assert not any("*" in a for a in _actions(statement)), "no wildcard actions"


def test_iam_policy_covers_every_call_the_adapter_makes() -> None:
    """Every AWS operation orchestrator/mgn.py calls (through botocore or the lean calls) is in
    the policy, and nothing else is."""
    source = (ROOT / "orchestrator" / "mgn.py").read_text()
    called = {("mgn", op) for op in re.findall(r'self\._(?:call|list)\(\s*"(\w+)"', source)}
    ec2 = re.findall(r'_invoke\(\s*self\._ec2_client,\s*"(\w+)"', source)
    called |= {("ec2", op) for op in ec2}
    wanted = {f"{c}:{''.join(p.capitalize() for p in op.split('_'))}" for c, op in called}
    lean = re.findall(r'self\._(?:send|page)\(\s*"(\w+)"', source)
    wanted |= {f"mgn:{op}" for op in lean}
    assert {"mgn:FinalizeCutover", "mgn:DescribeSourceServers"} <= wanted
    statements = _statements()
    granted = set().union(
        *(_actions(statements[n]) for n in ("PlanReadOnly", "RunFinalize", "RunNight"))
    )
    assert wanted == granted


def test_iam_policy_covers_every_call_the_state_backend_makes() -> None:
    """Every DynamoDB operation the state modules call (a transaction: each kind of its parts)
    is in the policy's state statements, and nothing else is."""
    source = "\n".join((ROOT / "orchestrator" / m).read_text() for m in STATE_MODULES)
    ops = set(re.findall(r'\.call\(\s*"(\w+)"', source))
    assert "TransactWriteItems" in ops
    ops.discard("TransactWriteItems")
    parts = re.findall(r'\{\s*"(Put|Update|ConditionCheck|Delete)": ', source)
    ops |= {TRANSACTION_PARTS[k] for k in parts}
    statements = _statements()
    granted = _actions(statements["StateTable"]) | _actions(statements["StateTableInit"])
    assert {f"dynamodb:{op}" for op in ops} == granted


# -- docs/operations.md --------------------------------------------------------------------------


def _operations() -> str:
    return (DOCS / "operations.md").read_text()


def test_operations_doc_explains_every_exit_code() -> None:
    """docs/operations.md has a row for each exit code the tool can return, and no other."""
    rows = re.findall(r"^\| *`?(\d)`? *\|", _operations(), flags=re.MULTILINE)
    assert sorted(int(r) for r in rows) == sorted(EXIT_MEANINGS)


def _doc_commands(text: str) -> list[list[str]]:
    """The arguments of every `mgn-cutover COMMAND ...` in the doc's code blocks."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    commands = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        found = re.search(r"mgn-cutover\s+((?:run|plan|report|status|validate)\b.*)", line)
        if found is None:
            continue
        words = []
        for word in shlex.split(found.group(1)):
            if word in ("&&", "||", ";", "|") or re.match(r"^\d?>", word):
                break  # the shell's business from here on
            words.append(word)
        commands.append(words)
    return commands


def test_operations_doc_commands_parse_with_the_real_cli() -> None:
    """Every mgn-cutover command in docs/operations.md, crontab and unit included, parses."""
    text = _operations()
    assert "crontab" in text and "OnCalendar=" in text and "ExecStart=" in text
    commands = _doc_commands(text)
    assert sum(c[0] == "run" for c in commands) >= 4  # crontab, unit, dry run, --application
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)


def test_cron_run_refused_before_it_starts_is_one_json_line(emulator: Any, work_dir: Path) -> None:
    """Locked (exit 3) and bad input (exit 2) under cron are JSON events, not plain text, and
    one stdout line each."""
    from orchestrator.lock import WaveLock

    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    env = cli_env(emulator.url)
    with WaveLock(work_dir / "state" / endpoint_scope(emulator.url), "w"):
        locked = as_cron(cron_args(plan, "w", work_dir), env)
    assert locked.returncode == 3
    [event] = refused_events(locked.stderr)
    assert event["event"] == "run_refused" and event["exit_code"] == 3
    assert event["wave"] == "w"
    assert "is locked by pid" in event["error"]
    assert_refusal_line(locked, "w", 3, "is locked by pid")
    bad = plan.parent / "bad.yaml"
    bad.write_text("wave: w2\napplications: []\nextra: 1\n")
    refused = as_cron(cron_args(bad, "w2", work_dir), env)
    assert refused.returncode == 2
    [event] = refused_events(refused.stderr)
    assert event["exit_code"] == 2 and len(event["diagnostics"]) >= 2
    assert all(d.startswith(f"{bad}:") for d in event["diagnostics"])
    assert_refusal_line(refused, "w2", 2, str(bad))
    assert emulator.calls("FinalizeCutover") == 0


def refused_events(stderr: str) -> list[dict[str, Any]]:
    """The run_refused events of a stderr that holds only JSON lines."""
    return [e for e in json_events(stderr) if e["event"] == "run_refused"]


def assert_refusal_line(
    out: subprocess.CompletedProcess[str], wave: str, code: int, why: str
) -> None:
    """stdout is exactly one line naming the wave, the exit code and why (cron mails stdout)."""
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    match = REFUSAL_LINE.match(lines[0])
    assert match, lines[0]
    assert match.group(1) == wave and int(match.group(2)) == code == out.returncode
    assert why in match.group(3), lines[0]


def test_every_refused_cron_run_prints_one_summary_line(emulator: Any, work_dir: Path) -> None:
    """Outside the window (6), a misspelt flag (2) and a missing plan (2) each leave one stdout
    line naming the wave, the exit code and why: a refused night is never silent under cron."""
    plan = write_plan(work_dir, "w", {aid(0): [sid(0, 0)]})
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    env = cli_env(emulator.url)
    late = as_cron(cron_args(plan, "w", work_dir, "--not-after", "2000-01-01T00:00:00+00:00"), env)
    assert_refusal_line(late, "w", 6, "window closed")
    [event] = refused_events(late.stderr)
    assert event["event"] == "run_refused" and event["wave"] == "w"
    typo = as_cron([*cron_args(plan, "w", work_dir), "--finalise-rate", "5"], env)
    assert_refusal_line(typo, "w", 2, "bad arguments")
    assert "did you mean --finalize-rate" in typo.stderr
    missing = as_cron(cron_args(work_dir / "nope.yaml", "w", work_dir), env)
    assert_refusal_line(missing, "w", 2, "nope.yaml")
    assert emulator.calls("FinalizeCutover") == 0


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook on a thread: its URL and the JSON bodies it received."""
    bodies: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server_ = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server_.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server_.server_address[1]}/hook", bodies
    finally:
        server_.shutdown()
        server_.server_close()
        thread.join()


def test_another_waves_broken_plan_does_not_stop_tonight(emulator: Any, work_dir: Path) -> None:
    """A typo in another wave's file is a loud warning (stderr, report, summary line, the start
    notification), not a refusal; the cross-wave duplicate check still covers the files that
    could be read."""
    plans = work_dir / "plans"
    plans.mkdir()
    plan = write_plan(plans, "tonight", {aid(0): [sid(0, 0)]})
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    (plans / "next-month.yaml").write_text(
        "wave: next-month\napplications:\n  - applicationID: [\n"
    )
    with webhook_receiver() as (url, bodies):
        env = cli_env(emulator.url, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": url})
        out = as_cron(cron_args(plans, "tonight", work_dir), env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert_cron_output(out, "tonight")
    assert "WARNING 1 other plan file(s) skipped" in out.stdout
    [started] = [b for b in bodies if b["mgn_cutover"]["event"] == "run_started"]
    assert "WARNING" in started["text"] and "next-month.yaml" in started["text"]
    events = json_events(out.stderr)
    [skip] = [e for e in events if e["event"] == "plan_file_skipped"]
    assert skip["level"] == "warning" and skip["path"].endswith("next-month.yaml")
    rep = report(work_dir, "tonight")
    assert any("next-month.yaml" in w for w in rep["warnings"])
    assert "next-month.yaml" in (work_dir / "reports" / "tonight" / "report.md").read_text()
    # A readable wave that plans tonight's server is still refused.
    write_plan(plans, "other", {aid(1): [sid(0, 0)]})
    clash = as_cron(cron_args(plans, "tonight", work_dir), env)
    assert clash.returncode == 2 and "is also planned at" in clash.stderr
    assert_refusal_line(clash, "tonight", 2, "is also planned at")
    # Tonight's own broken file is still exit 2.
    plan.write_text(plan.read_text() + "bogus: 1\n")
    (plans / "other.yaml").unlink()
    own = as_cron(cron_args(plans, "tonight", work_dir), env)
    assert own.returncode == 2, own.stdout
