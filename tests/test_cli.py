"""The command line as a user meets it: a subprocess."""

from __future__ import annotations

import subprocess
import sys


def test_version_prints_and_exits_zero() -> None:
    """`mgn-cutover --version` names the tool and exits 0."""
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("mgn-cutover ")
