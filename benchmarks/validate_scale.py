"""How long `mgn-cutover validate` takes on a 10,000-server plan, and how much memory it needs.

Generates one plan file (50 applications of 200 servers: MGN's per-application maximum) into a
temporary folder, runs `python -m orchestrator validate` on it as a subprocess several times, and
prints the median wall time and the peak RSS next to the goal. The in-process load_waves time
and the time of `--version` are printed too, to tell parsing apart from start-up and imports.

    .venv/bin/python benchmarks/validate_scale.py [--servers N] [--runs N]

Exits 0 unless validate fails.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.plan import dump_wave, load_waves  # noqa: E402

GOAL = "well under 1 s wall time for 10,000 servers"
SERVERS_PER_APPLICATION = 200


def hex17(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:17]


def write_plan(folder: Path, servers: int) -> Path:
    """A valid plan of `servers` servers in applications of at most 200, deterministic IDs."""
    apps = []
    for a in range(0, servers, SERVERS_PER_APPLICATION):
        count = min(SERVERS_PER_APPLICATION, servers - a)
        ids = [f"s-{hex17(f'bench/{a}/{i}')}" for i in range(count)]
        apps.append((f"app-{hex17(f'bench/{a}')}", f"application-{a // 200:03d}", ids))
    path = folder / "wave-scale.yaml"
    path.write_text(dump_wave("wave-scale", apps, region="us-east-1"), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = write_plan(Path(tmp), args.servers)
        command = [sys.executable, "-m", "orchestrator", "validate", str(plan)]
        walls: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            walls.append(time.perf_counter() - started)
            if run.returncode != 0:
                print(run.stdout + run.stderr, file=sys.stderr)
                print(f"validate failed with exit code {run.returncode}", file=sys.stderr)
                return 1
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        startups: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "orchestrator", "--version"], cwd=REPO, capture_output=True
            )
            startups.append(time.perf_counter() - started)
        parses: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            load_waves([plan])
            parses.append(time.perf_counter() - started)
        size_kb = plan.stat().st_size / 1024
    print(f"plan: {args.servers:,} servers, {size_kb:,.0f} KiB")
    print(f"validate (subprocess), median of {args.runs}: {statistics.median(walls):.3f} s")
    print(f"CLI start-up alone (--version), median: {statistics.median(startups):.3f} s")
    print(f"load_waves (in process), median of {args.runs}: {statistics.median(parses):.3f} s")
    print(f"peak RSS of validate: {peak_rss_mb:.0f} MiB")
    print(f"goal: {GOAL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
