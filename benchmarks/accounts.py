"""Many accounts in one wave (`make bench BENCH=accounts`, or run this file directly).

A accounts x N servers each, every account's FinalizeCutover quota Q/s (the emulator keeps one
bucket per account, as MGN's quotas are per account and region), 20 ms latency, C s visibility
lag. One `mgn-cutover run` over the whole wave (global view): each (account, region) has its own
client and limiters, so the run is bound by the slowest account: N/Q + C. Reports wall/bound,
CPU per API call of the run process and its peak RSS. The emulator runs in its own process,
seeded through `POST /_emulator/seed`.

    .venv/bin/python benchmarks/accounts.py [--accounts 10] [--servers 400] [--quota 50]
        [--profile FILE.prof]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # the harness: emulator process, measured runs

PER_APPLICATION = 10


def seed(url: str, accounts: list[str], servers: int) -> dict[str, Any]:
    """Seed every account with `servers` servers ready for finalize; the plan document."""
    fixture: dict[str, Any] = {"servers": []}
    apps = []
    for a, account in enumerate(accounts):
        for app in range(servers // PER_APPLICATION):
            app_id = f"app-{a:02d}{app:015d}"
            ids = [f"s-{a:02d}{app:08d}{n:07d}" for n in range(PER_APPLICATION)]
            fixture["servers"] += [
                {
                    "sourceServerID": sid,
                    "applicationID": app_id,
                    "accountID": account,
                    "state": "CUTTING_OVER",
                    "firstBoot": "SUCCEEDED",
                }
                for sid in ids
            ]
            apps.append({"applicationID": app_id, "accountID": account, "sourceServerIDs": ids})
    request = urllib.request.Request(
        f"{url}/_emulator/seed",
        data=json.dumps(fixture).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as resp:
        resp.read()
    return {"wave": "accounts", "region": "us-east-1", "applications": apps}


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _phases(run: bench.Measured) -> dict[str, float]:
    """Where the fixed cost sits, from the run's own log stamps: process start to `run_started`
    (interpreter, imports, plan, config, the clients and ListManagedAccounts), `run_started` to
    the first accepted FinalizeCutover (the pre-flight's first reads), and `run_finished` to the
    process's end (the report; the journal's run record is written before `run_finished`)."""
    start = run.started + run.wall_offset_s
    stamps: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with run.stderr.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            name = event.get("event")
            if name in ("run_started", "finalize_accepted", "run_finished") and name not in stamps:
                stamps[name] = _stamp(event["timestamp"]).timestamp()
                if "cpu_s" in event:
                    cpu[name] = float(event["cpu_s"])
    if len(stamps) < 3:
        return {}
    phases = {
        "to_run_started_s": round(stamps["run_started"] - start, 3),
        "to_first_finalize_s": round(stamps["finalize_accepted"] - stamps["run_started"], 3),
        "after_run_finished_s": round(run.ended + run.wall_offset_s - stamps["run_finished"], 3),
    }
    if len(cpu) == 2:  # the run's own CPU: run_started to run_finished
        phases["run_cpu_s"] = round(cpu["run_finished"] - cpu["run_started"], 3)
    return phases


def main(argv: list[str] | None = None) -> int:
    bench.compile_package()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--servers", type=int, default=400, help="per account")
    parser.add_argument("--quota", type=float, default=50.0, help="FinalizeCutover/s per account")
    parser.add_argument("--lag", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--profile", type=Path, help="cProfile the run into this file")
    args = parser.parse_args(argv)
    accounts = [f"{200000000000 + i:012d}" for i in range(args.accounts)]
    bound_s = args.servers / args.quota + args.lag
    folder = Path(tempfile.mkdtemp(prefix="accounts-"))
    emu_args = ["--quota", f"FinalizeCutover={args.quota:g}", "--latency-ms", "20"]
    emu_args += ["--visibility-lag", f"{args.lag:g}"]
    with bench.emulator(emu_args, folder, bench.clean_env(None, folder)) as emu:
        plan = folder / "accounts.yaml"
        plan.write_text(yaml.safe_dump(seed(emu.url, accounts, args.servers), sort_keys=False))
        cmd = [bench.PYTHON]
        if args.profile is not None:
            cmd += ["-m", "cProfile", "-o", str(args.profile)]
        cmd += ["-m", "orchestrator", "run", str(plan), "--wave", "accounts"]
        cmd += ["--state-dir", str(folder / "state"), "--report-dir", str(folder / "reports")]
        cmd += ["--concurrency", str(args.concurrency), "--finalize-rate", f"{args.quota:g}"]
        cmd += ["--describe-rate", "50", "--poll-interval", "0.5", "--log-format", "json"]
        cmd += ["--timeout", f"{max(120.0, 4 * bound_s):g}"]
        emu_cpu = emu.cpu_s()
        run = bench.measure(
            cmd, bench.clean_env(emu.url, folder), folder, "run", timeout_s=120 + 4 * bound_s
        )
        stats = emu.get("stats")
        emulator_cpu_s = emu.cpu_s() - emu_cpu
    report = folder / "reports" / "accounts" / "report.json"
    doc = json.loads(report.read_text())
    outcomes = Counter(s["outcome"] for s in doc["servers"])
    # The run itself (started_at to finished_at: pre-flight, finalize, reconcile) against the
    # bound, apart from the process's fixed costs (imports, the plan, clients, the report).
    run_phase_s = (_stamp(doc["finished_at"]) - _stamp(doc["started_at"])).total_seconds()
    calls = sum(stats["calls"].values())
    phases = _phases(run)
    result = {
        "scenario": "accounts",
        "accounts": args.accounts,
        "servers_per_account": args.servers,
        "quota_per_account": args.quota,
        "bound_s": bound_s,
        "exit_code": run.returncode,
        "outcomes": dict(outcomes),
        "wall_s": round(run.wall_s, 2),
        "wall_over_bound": round(run.wall_s / bound_s, 3),
        "run_phase_s": round(run_phase_s, 2),
        "run_phase_over_bound": round(run_phase_s / bound_s, 3),
        "fixed_s": round(run.wall_s - run_phase_s, 2),
        **phases,
        "calls": stats["calls"],
        "throttled": stats["throttled"],
        "cpu_s": round(run.cpu_s, 2),
        "cpu_ms_per_call": round(1000 * run.cpu_s / max(1, calls), 3),
        "run_cpu_ms_per_call": (
            round(1000 * phases["run_cpu_s"] / max(1, calls), 3) if "run_cpu_s" in phases else None
        ),
        "peak_rss_mb": round(run.maxrss_kb / 1024, 1),
        "emulator_cpu_s": round(emulator_cpu_s, 2),
        "folder": str(folder),
    }
    print(json.dumps(result))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
