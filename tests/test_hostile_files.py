"""Hostile plan and config files by the thousand: exit 2, `file:line` messages, no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.config import load_config
from orchestrator.errors import ConfigError
from tests.test_plan_hypothesis import TOKENS, VALID

FILES_PER_RUN = 250
LOCATED = re.compile(r"^(?P<path>[^:]+\.yaml):(?P<line>\d+)(:\d+)?: ")

# A file is raw bytes, token soup, or the valid plan with a slice cut out and junk put in.
hostile_file = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(TOKENS), max_size=40).map(lambda t: "".join(t).encode()),
    st.tuples(st.integers(0, len(VALID)), st.integers(0, 40), st.sampled_from(TOKENS)).map(
        lambda c: (VALID[: c[0]] + c[2] + VALID[c[0] + c[1] :]).encode()
    ),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(hostile_file, min_size=FILES_PER_RUN, max_size=FILES_PER_RUN))
def test_thousands_of_hostile_plans_through_the_cli(files: list[bytes]) -> None:
    """2,000 generated plan files (8 x 250): each bad one is named with a line, exit 2, no trace."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, data in enumerate(files):
            (folder / f"plan-{i:04d}.yaml").write_bytes(data)
        out = subprocess.run(
            [sys.executable, "-m", "orchestrator", "validate", str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode in (0, 2), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line]
    assert out.returncode == 0 or lines
    for line in lines:
        assert LOCATED.match(line), line
    # Every file that cannot be a plan (empty, or not UTF-8) is named in a message.
    for i, data in enumerate(files):
        if not data.strip() or not _is_utf8(data):
            assert f"plan-{i:04d}.yaml:" in out.stderr, (i, data)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_file)
def test_hostile_config_files_raise_only_config_error(data: bytes) -> None:
    """Whatever the bytes of a config file, load_config returns or raises ConfigError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(data)
        try:
            load_config(path, {}, {})
        except ConfigError as err:
            assert err.diagnostics
            assert all(d.path == str(path) and d.line >= 0 for d in err.diagnostics)


def test_a_diagnostic_is_always_one_line() -> None:
    """Line and paragraph separators or control characters from a file are printed escaped."""
    from orchestrator.errors import Diagnostic

    text = str(Diagnostic("p.yaml", 3, 1, 'got "a\u2028b\nc\x1bd"'))
    assert text.splitlines() == [text]
    assert text == 'p.yaml:3:1: got "a\\u2028b\\u000ac\\u001bd"'
