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


def test_the_commands_leave_optional_backends_unimported() -> None:
    """A run pays at its start for every module it imports: the DynamoDB state backend, the
    S3 upload and `status` are imported only by the commands and settings that use them."""
    optional = ["dynamo", "dynamo_journal", "lease", "publish", "status"]
    loaded = f"[m for m in {optional!r} if 'orchestrator.' + m in sys.modules]"
    code = f"import sys, orchestrator.commands; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
