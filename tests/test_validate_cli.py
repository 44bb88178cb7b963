"""`mgn-cutover validate` as a user runs it: a subprocess, its exit code, its output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
APP = "app-0a1b2c3d4e5f6a7b8"
S1 = "s-0a1b2c3d4e5f6a7b8"
VALID = f"wave: wave-01\napplications:\n  - applicationID: {APP}\n    sourceServerIDs: [{S1}]\n"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


# A small parent measures the command's own peak RSS: a child forked from pytest itself would
# count pytest's memory (Linux charges the pre-exec copy to the child).
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def validate(*args: str | Path, env: dict[str, str] | None = None, timeout_s: float = 60) -> Run:
    """Run `python -m orchestrator validate ARGS`; measure its wall time and its own peak RSS."""
    command = [sys.executable, "-m", "orchestrator", "validate", *map(str, args)]
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(rss_file), *command],
            capture_output=True,
            cwd=REPO,
            env=env,
            timeout=timeout_s,
        )
        seconds = time.monotonic() - started
        rss_kib = int(rss_file.read_text()) if rss_file.exists() else 0
    return Run(
        proc.returncode,
        proc.stdout.decode(),
        proc.stderr.decode(),
        seconds,
        rss_kib / 1024,
    )


def test_repository_waves_validate() -> None:
    """The committed waves/ folder validates: exit 0, one summary line per wave."""
    run = validate("waves")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.splitlines() == [
        "waves/wave-01-payments.yaml: wave wave-01: 3 applications, 10 servers",
        "waves/wave-02-core-banking.yaml: wave wave-02: 39 applications, 349 servers",
    ]


def test_wave_flag_selects_one_wave_or_lists_the_names() -> None:
    """--wave NAME shows that wave only; an unknown name exits 2 naming the waves there are."""
    run = validate("waves", "--wave", "wave-02")
    assert run.code == 0 and run.stdout.startswith("waves/wave-02-core-banking.yaml: wave wave-02")
    run = validate("waves", "--wave", "wave-9")
    assert run.code == 2
    assert run.stderr == (
        '--wave: no wave named "wave-9" in the plan files (waves found: wave-01, wave-02)\n'
    )


def test_bad_files_print_every_error_located_without_traceback(tmp_path: Path) -> None:
    """Errors of several files come out at once as file:line:col lines, exit 2, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace(APP, "app-1").replace("wave-01", "../w") + "extra: 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("wave: [\n")
    run = validate(bad, broken, tmp_path / "missing.yaml")
    assert run.code == 2 and run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        f'{bad}:1:7: wave: "../w" is not a safe wave name (1-64 letters, digits, ".", "_" or '
        '"-", starting with a letter or digit; it names the report folder)',
        f'{bad}:3:20: applications[0].applicationID: "app-1" is not an MGN application ID '
        "(app- and 17 letters or digits)",
        f'{bad}:5:1: unknown key "extra" (allowed: wave, description, accountID, region, '
        "applications)",
        f"{broken}:2:1: invalid YAML: did not find expected node content "
        "(while parsing a flow node)",
        f"{tmp_path / 'missing.yaml'}: no such file or directory",
    ]


def test_config_and_environment_errors_join_plan_errors(tmp_path: Path) -> None:
    """--config and MGN_CUTOVER_* problems are printed with the plan's, all in one run."""
    config = tmp_path / "config.yaml"
    config.write_text("concurrency: 0\naws_secret_access_key: wJalrXUtnFEMI\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(VALID.replace(S1, "s-1"))
    env = {**os.environ, "MGN_CUTOVER_FINALIZE_RATE": "fast"}
    run = validate(plan, "--config", config, env=env)
    assert run.code == 2 and "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == (
        f"{config}:1:14: concurrency: expected an integer from 1 to 1000, got the number 0"
    )
    assert lines[1].startswith(f"{config}:2:1: aws_secret_access_key: credentials are not")
    assert lines[2] == (
        'env MGN_CUTOVER_FINALIZE_RATE: expected a number > 0 and <= 10000, got the string "fast"'
    )
    assert lines[3].startswith(f'{plan}:4:23: applications[0].sourceServerIDs[0]: "s-1" is not')
    assert len(lines) == 4 and "wJalrXUtnFEMI" not in run.stderr


def test_alias_bomb_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    """A billion-laughs plan is refused in seconds, the process staying small."""
    lines = ['lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"lol{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nwave: *l11\n")
    run = validate(bomb, timeout_s=30)
    assert run.code == 2 and "Traceback" not in run.stderr
    assert "YAML anchors and aliases are not allowed" in run.stderr
    assert 0 < run.peak_rss_mb < 200  # bounded memory; time is bounded by timeout_s


def test_twenty_megabyte_file_refused_before_reading(tmp_path: Path) -> None:
    """A 20 MB plan is refused by its size, quickly and without being loaded into memory."""
    big = tmp_path / "big.yaml"
    entry = f"      - {S1}\n".encode()
    with big.open("wb") as f:
        f.write(VALID.encode())
        f.write(entry * (20_000_000 // len(entry)))
    run = validate(big, timeout_s=30)
    assert run.code == 2 and "Traceback" not in run.stderr
    size = big.stat().st_size
    assert size > 20_000_000
    assert run.stderr == f"{big}: file is {size:,} bytes, over the 8,388,608-byte limit\n"
    assert 0 < run.peak_rss_mb < 200  # bounded memory; time is bounded by timeout_s


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe\x00w\x00a", b"wave: !!python/object/apply:os.system ['echo pwned']\n", b"[" * 5000],
)
def test_hostile_bytes_exit_2_without_traceback(tmp_path: Path, payload: bytes) -> None:
    """UTF-16, code-execution tags and deep nesting are refused with exit 2, no traceback."""
    path = tmp_path / "hostile.yaml"
    path.write_bytes(payload)
    run = validate(path)
    assert run.code == 2 and run.stderr.startswith(f"{path}:1:")
    assert "Traceback" not in run.stderr and "pwned" not in run.stdout
