"""`make demo`: rehearse the example wave's whole night against the MGN emulator.

Starts `mgn-cutover simulate` seeded from `waves/fixtures/wave-01-night.yaml` (every server
READY_FOR_CUTOVER; one database server whose first boot fails; a slow smoke test), time-scaled
so the night passes in seconds, then runs `mgn-cutover plan --launch` and `mgn-cutover run
--launch --archive --on-failure revert` on `waves/wave-01-payments.yaml`: launch, watch,
verify, finalize, archive, and the failed application reverted. It prints the summary and where
the report is. Fake credentials only: nothing here can reach AWS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "waves" / "fixtures" / "wave-01-night.yaml"
# A night of launches (2-5 min), boots (1-2 min) and actions, 60 times faster.
NIGHT = (
    "--time-scale", "60",
    "--launch-duration", "120:300",
    "--boot-duration", "60:120",
    "--action-duration", "20:60",
    "--no-moto",
)  # fmt: skip
PLAN = ROOT / "waves" / "wave-01-payments.yaml"
WAVE = "wave-01"


def _env(endpoint: str, empty: Path) -> dict[str, str]:
    """Only fake credentials and empty AWS config files: the demo never reads the real ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MGN_CUTOVER_"))}
    empty.write_text("")
    env.update(
        AWS_ENDPOINT_URL_MGN=endpoint,
        AWS_ACCESS_KEY_ID="AKIADEMODEMODEMODEMO",
        AWS_SECRET_ACCESS_KEY="demo-secret-not-real",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def main() -> int:
    """Run the demo; returns 0 when the run behaved as rehearsed (its exit 1: the gate held)."""
    with tempfile.TemporaryDirectory(prefix="mgn-demo-") as tmp:
        return _demo(Path(tmp) / "empty")


def _demo(empty: Path) -> int:
    cmd = [sys.executable, "-m", "orchestrator"]
    simulator = subprocess.Popen(
        [*cmd, "simulate", "--port", "0", "--fixture", str(FIXTURE), "--latency-ms", "20", *NIGHT],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        first = simulator.stdout.readline().strip()
        if not first.startswith("export AWS_ENDPOINT_URL_MGN="):
            print(f"demo: the emulator did not start ({first!r})", file=sys.stderr)
            return 1
        endpoint = first.split("=", 1)[1]
        print(f"demo: MGN emulator at {endpoint}")
        work = ROOT / "reports" / "demo"
        # A fresh emulator each time, so a fresh journal too: an old one would only poll.
        shutil.rmtree(work, ignore_errors=True)
        common = [str(PLAN), "--wave", WAVE, "--state-dir", str(work / "state")]
        print("\ndemo: step 1, pre-flight (`mgn-cutover plan --launch`)\n", flush=True)
        subprocess.run(
            [*cmd, "plan", *common[:3], "--launch"], env=_env(endpoint, empty), check=False
        )
        print("\ndemo: step 2, the night (`mgn-cutover run --launch --archive`)\n", flush=True)
        run = subprocess.run(
            [
                *cmd, "run", *common,
                "--launch", "--archive", "--on-failure", "revert",
                "--report-dir", str(work),
                "--finalize-rate", "20",
                "--poll-interval", "0.5",
                "--timeout", "30",
                "--log-format", "console",
            ],
            env=_env(endpoint, empty),
            check=False,
        )  # fmt: skip
        report = work / WAVE / "report.md"
        why = "1: payments-db failed its first boot and was reverted"
        print(f"\ndemo: exit code {run.returncode} ({why})")
        print(f"demo: report: {report}")
        if report.exists():
            print("\n" + report.read_text().split("\n## Applications", 1)[0])
        return 0 if run.returncode in (0, 1) else run.returncode
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
