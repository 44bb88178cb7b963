"""`mgn-cutover run` on a terminal, under a pseudo-terminal, asserting on what a person sees:
log lines never land on the status line, normal events and retries scroll by readably, the
wait for MGN counts down and names what is pending, counts only grow and add up, and the run
ends with the per-application summary and the problem servers."""

from __future__ import annotations

import itertools
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.runhelp import aid, cli_env, run_args, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

CLEAR = "\x1b[2K"
STATUS = re.compile(r"^\[(\w+) [\d:]+\] (\d+) servers: (.*?) \| [\d.]+/s")


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run mgn-cutover with stdin, stdout and stderr on a pseudo-terminal; all it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env={**env, "COLUMNS": "400"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows at the end: `\\r` returns, ESC[2K clears the line."""
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(raw):
        if raw.startswith(CLEAR, i):
            current = ""
            i += len(CLEAR)
            continue
        char = raw[i]
        if char == "\r":
            if not raw.startswith("\n", i + 1):
                current = ""  # a return without a newline: the next text overwrites
        elif char == "\n":
            lines.append(current)
            current = ""
        else:
            current += char
        i += 1
    if current:
        lines.append(current)
    return lines


def status_lines(raw: str) -> list[str]:
    """Every status line as it was drawn (each draw starts with a return and a clear)."""
    drawn = []
    for part in raw.split("\r" + CLEAR):
        text = part.split("\r\n")[0]
        if STATUS.match(text):
            drawn.append(text)
    return drawn


def counts(status: str) -> dict[str, int]:
    match = STATUS.match(status)
    assert match, status
    found = {name: int(n) for n, name in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", match.group(3))}
    found["total"] = int(match.group(2))
    return found


def test_a_run_on_a_terminal_reads_honestly(emulator: Any, work_dir: Path) -> None:
    """What a person sees on a terminal during and after a run with retries and a stuck server."""
    groups = {aid(0): [sid(0, n) for n in range(3)], aid(1): [sid(1, n) for n in range(3)]}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    emulator.set_faults(
        stuck=frozenset({sid(0, 2)}),
        quota_per_s={"FinalizeCutover": 2.0},
    )
    plan = write_plan(work_dir, "w", groups)
    args = run_args(plan, "w", work_dir, "--timeout", "3")
    del args[args.index("--log-format") : args.index("--log-format") + 2]
    code, raw = run_on_a_terminal(args, cli_env(emulator.url))
    assert code == 1, raw[-3000:]
    lines = screen(raw)
    text = "\n".join(lines)

    # Logs never land on the status line: every line is one or the other, whole.
    for line in lines:
        if STATUS.search(line):
            assert STATUS.match(line), f"a log line was printed onto the status line: {line!r}"
        log_like = re.match(r"^\d\d:\d\d:\d\d  ", line)
        assert not (log_like and "servers:" in line and "|" in line), line

    # The normal events, readable, one per line; per-application, not per server.
    assert any(re.match(r"^\d\d:\d\d:\d\d  run \w{8} started: 6 servers", x) for x in lines)
    assert any("pre-flight done: 6 to finalize" in x for x in lines)
    assert any(f"application app1 ({aid(1)}): finalized, 3/3 converged" in x for x in lines), text
    assert any(f"application app0 ({aid(0)}): HALF CUT OVER, 2/3 converged" in x for x in lines)
    assert not any("server_converged" in x or "finalize_accepted" in x for x in lines)
    # Throttling is visible as it happens.
    assert any(re.search("retrying .*after ThrottlingException", x) for x in lines), text

    # The wait for MGN counts down to the deadline and names what is pending.
    drawn = status_lines(raw)
    assert any("deadline in 0:0" in s and f"pending {sid(0, 2)} (app0)" in s for s in drawn)

    # Counts never go backwards and add up to the total.
    seen = [counts(s) for s in drawn]
    assert seen, raw[-2000:]
    for before, after in itertools.pairwise(seen):
        for name in ("converged", "blocked", "failed", "timed out"):
            assert after.get(name, 0) >= before.get(name, 0), (before, after)
    for c in seen:
        assert sum(v for k, v in c.items() if k != "total") == c["total"] == 6, c
    assert seen[-1]["converged"] == 5 and seen[-1]["timed out"] == 1

    # The end: each application, then the problem servers, then the summary line.
    end = text[text.rindex("Applications:") :]
    assert re.search(r"app0\s+2/3 converged\s+partially_cut_over\s+<-- HALF CUT OVER", end)
    assert re.search(r"app1\s+3/3 converged\s+converged", end)
    assert f"Problem servers (1):\n  {sid(0, 2)}  app0  timed_out:" in end
    assert lines[-1].startswith("wave w: total=6 finalized=5 timed_out=1 exit=1 report=")
