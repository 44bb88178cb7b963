"""Hostile input: path-escaping wave names, off-model MGN answers, and two cron runs at once.

The strict emulator refuses to emit answers that break MGN's model, so off-model answers come
from a tiny aiohttp MGN here: it serves DescribeSourceServers from crafted JSON and counts
FinalizeCutover.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestrator.outcome import RunRecord, ServerResult
from orchestrator.report import write_report
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

pytestmark = pytest.mark.usefixtures("fake_credentials")

ESCAPING_NAMES = ("../escape", "../../etc", "a/b", "..", ".", "/tmp/abs", "a\\b", "")


def files_outside(root: Path, allowed: tuple[Path, ...]) -> list[Path]:
    """Every file or folder under `root` that is not one of, or under one of, `allowed`."""
    return [
        p
        for p in root.rglob("*")
        if not any(p == a or a in p.parents or p in a.parents for a in allowed)
    ]


# -- wave names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "../../etc", "a/b", "..", "/tmp/abs"])
def test_cli_refuses_a_wave_name_that_leaves_the_report_folder(tmp_path: Path, name: str) -> None:
    """A plan whose wave name holds `..` or `/` is refused with exit 2 and writes nothing."""
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    plan = work / "plan.yaml"
    plan.write_text(
        f'wave: "{name}"\napplications:\n  - applicationID: {aid(0)}\n'
        f"    name: a\n    sourceServerIDs: [{sid(0, 0)}]\n"
    )
    for command in ("run", "plan"):
        args = (
            run_args(plan, name, work)
            if command == "run"
            else ["plan", str(plan), "--wave", name, "--log-format", "json"]
        )
        out = mgn_cutover(args, cli_env("http://127.0.0.1:9"))
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "not a safe wave name" in out.stderr
        assert "Traceback" not in out.stderr
    assert files_outside(tmp_path, (plan,)) == []


@pytest.mark.parametrize("command", ["report", "status"])
def test_report_and_status_refuse_an_escaping_wave_name(tmp_path: Path, command: str) -> None:
    """`report`/`status --wave ../x` (no plan to validate) exit 2 without touching any path."""
    for name in ("../x", "a/b", ".."):
        dirs = ["--state-dir", str(tmp_path / "state"), "--report-dir", str(tmp_path / "reports")]
        out = mgn_cutover([command, "--wave", name, *dirs], cli_env("http://127.0.0.1:9"))
        assert out.returncode == 2, out.stderr
        assert "not a plain folder name" in out.stderr
    assert list(tmp_path.iterdir()) == []


def _record(wave: str) -> RunRecord:
    return RunRecord(
        wave=wave,
        dry_run=False,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:01:00Z",
        exit_code=0,
        interrupted=False,
        config={},
        servers=[ServerResult(sid(0, 0), aid(0))],
    )


@pytest.mark.parametrize("name", [*ESCAPING_NAMES, "x\x00y"])
def test_write_report_refuses_a_wave_name_that_leaves_report_dir(tmp_path: Path, name: str) -> None:
    """report.write_report raises ValueError for an escaping wave name and writes nothing."""
    report_dir = tmp_path / "a" / "reports"
    report_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match="wave"):
        write_report(_record(name), report_dir)
    assert files_outside(tmp_path, (report_dir,)) == []
    assert list(report_dir.iterdir()) == []


def test_write_report_refuses_a_wave_folder_that_is_a_symlink_out(tmp_path: Path) -> None:
    """A wave folder planted as a symlink to elsewhere is refused, not written through."""
    report_dir, elsewhere = tmp_path / "reports", tmp_path / "elsewhere"
    report_dir.mkdir()
    elsewhere.mkdir()
    (report_dir / "w").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        write_report(_record("w"), report_dir)
    assert list(elsewhere.iterdir()) == []


# -- off-model MGN answers ------------------------------------------------------------------------


def well_formed(server_id: str, app_id: str, state: str = "CUTTING_OVER") -> dict[str, Any]:
    """A SourceServer item as MGN's model describes it."""
    done = state == "CUTOVER"
    return {
        "sourceServerID": server_id,
        "arn": f"arn:aws:mgn:us-east-1:111111111111:source-server/{server_id}",
        "applicationID": app_id,
        "isArchived": False,
        "lifeCycle": {"state": state},
        "dataReplicationInfo": {"dataReplicationState": "DISCONNECTED" if done else "CONTINUOUS"},
        "launchedInstance": {"ec2InstanceID": "i-0123456789abcdef0", "firstBoot": "SUCCEEDED"},
        "sourceProperties": {"identificationHints": {"hostname": f"host-{server_id[-4:]}"}},
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(item: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = item
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda item: item.pop(key)


# Answers that break the model in a way botocore passes through to us.
OFF_MODEL = {
    "unknown_state": _set("lifeCycle.state", "EXPLODED"),
    "lowercase_state": _set("lifeCycle.state", "cutting_over"),
    "null_state": _set("lifeCycle.state", None),
    "numeric_state": _set("lifeCycle.state", 42),
    "list_state": _set("lifeCycle.state", ["CUTTING_OVER"]),
    "empty_lifecycle": _set("lifeCycle", {}),
    "null_lifecycle": _set("lifeCycle", None),
    "missing_lifecycle": _drop("lifeCycle"),
    "unknown_first_boot": _set("launchedInstance.firstBoot", "MAYBE"),
    "null_archived": _set("isArchived", None),
    "missing_archived": _drop("isArchived"),
}


class FakeMgn:
    """A tiny MGN: crafted DescribeSourceServers items, FinalizeCutover counted and applied."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.finalize_calls: Counter[str] = Counter()
        self.finalize_answer: Callable[[dict[str, Any]], Any] = lambda item: item
        self.describe_answer: Callable[[dict[str, Any]], Any] | None = None

    async def describe(self, request: web.Request) -> web.Response:
        filters = (await request.json()).get("filters") or {}
        if self.describe_answer is not None:
            return web.json_response(self.describe_answer(self.items))
        states = filters.get("lifeCycleStates")
        items = [
            self.items[i]
            for i in filters.get("sourceServerIDs", [])
            if i in self.items
            and (states is None or (self.items[i].get("lifeCycle") or {}).get("state") in states)
        ]
        return web.json_response({"items": items})

    async def finalize(self, request: web.Request) -> web.Response:
        server_id = (await request.json())["sourceServerID"]
        self.finalize_calls[server_id] += 1
        item = self.items[server_id]
        done = well_formed(server_id, item["applicationID"], "CUTOVER")
        self.items[server_id] = done
        return web.json_response(self.finalize_answer(copy.deepcopy(done)))

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 for the block; yields the endpoint URL."""
        app = web.Application()
        app.router.add_post("/DescribeSourceServers", self.describe)
        app.router.add_post("/FinalizeCutover", self.finalize)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def run_cli(args: list[str], endpoint: str) -> tuple[int, str, str]:
    """Run mgn-cutover as a subprocess without blocking the loop the fake MGN serves on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        *args,
        env=cli_env(endpoint),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_off_model_answers_are_blocked_as_unknown_state(work_dir: Path) -> None:
    """Each off-model server is blocked with reason unknown_state and never finalized."""
    fake = FakeMgn()
    groups: dict[str, list[str]] = {aid(0): [sid(0, 0), sid(0, 1)]}
    for server_id in groups[aid(0)]:
        fake.items[server_id] = well_formed(server_id, aid(0))
    odd: dict[str, str] = {}
    for n, (name, change) in enumerate(OFF_MODEL.items(), start=1):
        server_id = sid(n, 0)
        groups[aid(n)] = [server_id]
        fake.items[server_id] = well_formed(server_id, aid(n))
        change(fake.items[server_id])
        odd[server_id] = name
    plan = write_plan(work_dir, "odd", groups)
    async with fake.serving() as url:
        code, out, err = await run_cli(run_args(plan, "odd", work_dir, "--timeout", "5"), url)
    assert code == 1, out + err[-3000:]
    assert "Traceback" not in err
    rep = report(work_dir, "odd")
    reasons = {s["sourceServerID"]: s["reason"] or "" for s in rep["servers"]}
    for server_id, name in odd.items():
        assert outcomes(rep)[server_id] == "blocked", name
        assert reasons[server_id].startswith("unknown_state"), (name, reasons[server_id])
        assert fake.finalize_calls[server_id] == 0, name
    for server_id in groups[aid(0)]:
        assert outcomes(rep)[server_id] == "finalized"
        assert fake.finalize_calls[server_id] == 1


# Answers botocore itself would refuse to parse: a structure that is a string, a list or a number.
UNPARSEABLE = {
    "lifecycle_is_string": _set("lifeCycle", "CUTTING_OVER"),
    "launched_instance_is_list": _set("launchedInstance", ["i-0123456789abcdef0"]),
    "replication_info_is_number": _set("dataReplicationInfo", 5),
}


@pytest.mark.parametrize("name", sorted(UNPARSEABLE))
async def test_an_unparseable_item_blocks_only_its_own_server(work_dir: Path, name: str) -> None:
    """One mis-typed server is blocked as unknown_state; its page's other servers proceed."""
    fake = FakeMgn()
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    for app, ids in groups.items():
        for server_id in ids:
            fake.items[server_id] = well_formed(server_id, app)
    UNPARSEABLE[name](fake.items[sid(1, 0)])
    plan = write_plan(work_dir, "bad", groups)
    async with fake.serving() as url:
        code, out, err = await run_cli(run_args(plan, "bad", work_dir), url)
    assert code == 1, out + err[-3000:]
    assert "Traceback" not in err
    rep = report(work_dir, "bad")
    assert outcomes(rep) == {
        sid(0, 0): "finalized",
        sid(0, 1): "finalized",
        sid(1, 0): "blocked",
    }
    reason = next(s["reason"] for s in rep["servers"] if s["sourceServerID"] == sid(1, 0))
    assert reason.startswith("unknown_state"), reason
    assert fake.finalize_calls[sid(1, 0)] == 0


async def test_an_unreadable_page_stops_the_wave_with_a_report_and_nothing_sent(
    work_dir: Path,
) -> None:
    """A Describe answer that is no page at all fails the pre-flight: exit 1, report, no call."""
    fake = FakeMgn()
    groups = {aid(0): [sid(0, 0), sid(0, 1)]}
    for server_id in groups[aid(0)]:
        fake.items[server_id] = well_formed(server_id, aid(0))
    fake.describe_answer = lambda items: {"items": "not a list"}
    plan = write_plan(work_dir, "bad", groups)
    async with fake.serving() as url:
        code, out, err = await run_cli(run_args(plan, "bad", work_dir, "--max-attempts", "2"), url)
    assert code == 1, out + err[-3000:]
    assert "Traceback" not in err
    assert sum(fake.finalize_calls.values()) == 0
    rep = report(work_dir, "bad")
    assert set(outcomes(rep).values()) == {"not_attempted"}
    assert all(s["reason"].startswith("pre-flight failed") for s in rep["servers"])


@pytest.mark.parametrize("value", [1, "yes"])
async def test_a_non_boolean_is_archived_is_never_finalized(work_dir: Path, value: Any) -> None:
    """isArchived that is not a boolean makes the server unknown_state, never finalized."""
    fake = FakeMgn()
    fake.items[sid(0, 0)] = well_formed(sid(0, 0), aid(0))
    fake.items[sid(0, 0)]["isArchived"] = value
    plan = write_plan(work_dir, "arch", {aid(0): [sid(0, 0)]})
    async with fake.serving() as url:
        await run_cli(run_args(plan, "arch", work_dir, "--timeout", "2"), url)
    assert fake.finalize_calls[sid(0, 0)] == 0
    rep = report(work_dir, "arch")
    assert rep["servers"][0]["reason"].startswith("unknown_state")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda item: {**item, "lifeCycle": "CUTOVER"}, id="off_model"),
        pytest.param(lambda item: ["not", "an", "object"], id="not_an_object"),
    ],
)
async def test_an_unreadable_finalize_answer_counts_as_accepted(
    work_dir: Path, answer: Callable[[dict[str, Any]], Any]
) -> None:
    """A 200 to FinalizeCutover with an unreadable body is accepted, polled, never resent."""
    fake = FakeMgn()
    fake.items[sid(0, 0)] = well_formed(sid(0, 0), aid(0))
    fake.finalize_answer = answer
    plan = write_plan(work_dir, "fin", {aid(0): [sid(0, 0)]})
    async with fake.serving() as url:
        code, out, err = await run_cli(run_args(plan, "fin", work_dir), url)
        assert code == 0, out + err[-3000:]
        assert outcomes(report(work_dir, "fin")) == {sid(0, 0): "finalized"}
        code, out, err = await run_cli(run_args(plan, "fin", work_dir), url)
    assert code == 0, out + err[-3000:]
    assert outcomes(report(work_dir, "fin")) == {sid(0, 0): "finalized"}
    assert fake.finalize_calls[sid(0, 0)] == 1


# -- two runs at once -----------------------------------------------------------------------------


def test_two_cron_runs_of_one_wave_at_once_one_runs_one_exits_3(
    emulator: Any, work_dir: Path
) -> None:
    """Started together, one run finalizes the wave and the other exits 3 naming the holder."""
    groups = {aid(a): [sid(a, n) for n in range(5)] for a in range(2)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = write_plan(work_dir, "twice", groups)
    emulator.set_faults(latency_ms=400)  # the first run is still busy when the second starts
    args = [sys.executable, "-m", "orchestrator", *run_args(plan, "twice", work_dir)]
    env = cli_env(emulator.url)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    with start() as first, start() as second:
        results = {p.pid: (p.communicate(timeout=120), p.returncode) for p in (first, second)}
    codes = sorted(code for _, code in results.values())
    assert codes == [0, 3], {pid: (code, io[1][-2000:]) for pid, (io, code) in results.items()}
    (winner,) = (pid for pid, (_, code) in results.items() if code == 0)
    ((_, loser_err), _) = next(r for pid, r in results.items() if pid != winner)
    assert f"pid {winner}" in loser_err
    assert set(outcomes(report(work_dir, "twice")).values()) == {"finalized"}
    for ids in groups.values():
        for server_id in ids:
            assert emulator.calls_for(server_id, "FinalizeCutover") == 1
