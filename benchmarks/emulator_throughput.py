"""How many requests per second the MGN emulator sustains (target: 2,000 req/s).

Starts `python -m orchestrator simulate --port 0 --servers 2000 --applications 200` in its own
process (once with --no-strict, once strict, unless --mode picks one), then drives it from this
process with a raw aiohttp client: many concurrent connections, a fixed number of requests per
phase. Phases: DescribeSourceServers of one server by ID, then FinalizeCutover over every
server (the first call per server succeeds, later ones are 409 conflicts, both full code paths).
Prints requests/s and p50/p99 latency per phase against the bound. Exits 0 unless a run fails
(an unexpected status, a connection error, the emulator not starting).

    .venv/bin/python benchmarks/emulator_throughput.py [--requests N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
TARGET_RPS = 2000.0


@dataclass
class PhaseResult:
    name: str
    requests: int
    seconds: float
    latencies_s: list[float]
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_emulator(
    strict: bool, servers: int, applications: int
) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "orchestrator", "simulate", "--port", "0"]
    args += ["--servers", str(servers), "--applications", str(applications), "--seed", "1"]
    if not strict:
        args.append("--no-strict")
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("export AWS_ENDPOINT_URL_MGN="):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line.partition("=")[2]


async def run_phase(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    bodies: list[bytes],
    concurrency: int,
    allowed: set[int],
) -> PhaseResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies):
            body = bodies[next_index]
            next_index += 1
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    unexpected = {s: n for s, n in statuses.items() if s not in allowed}
    if unexpected:
        raise SystemExit(f"{name}: unexpected statuses {unexpected}")
    return PhaseResult(name, len(bodies), elapsed, latencies, statuses)


async def drive(base: str, requests: int, concurrency: int) -> list[PhaseResult]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{base}/_emulator/servers") as resp:
            ids = [s["sourceServerID"] for s in await resp.json()]
        describe = [
            json.dumps({"filters": {"sourceServerIDs": [ids[i % len(ids)]]}}).encode()
            for i in range(requests)
        ]
        finalize = [
            json.dumps({"sourceServerID": ids[i % len(ids)]}).encode() for i in range(requests)
        ]
        warmup = describe[: min(500, requests)]
        await run_phase(
            session, f"{base}/DescribeSourceServers", "warmup", warmup, concurrency, {200}
        )
        return [
            await run_phase(
                session,
                f"{base}/DescribeSourceServers",
                "DescribeSourceServers(1 ID)",
                describe,
                concurrency,
                {200},
            ),
            await run_phase(
                session,
                f"{base}/FinalizeCutover",
                "FinalizeCutover",
                finalize,
                concurrency,
                {200, 409},
            ),
        ]


def report(mode: str, results: list[PhaseResult]) -> None:
    for r in results:
        verdict = "meets" if r.rps >= TARGET_RPS else "BELOW"
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()))
        print(
            f"{mode:>9}  {r.name:<28} {r.requests:>6} req in {r.seconds:5.2f} s"
            f" = {r.rps:7.0f} req/s "
            f"(p50 {r.percentile_ms(0.50):5.1f} ms, p99 {r.percentile_ms(0.99):5.1f} ms) "
            f"{verdict} target {TARGET_RPS:.0f} req/s [{statuses}]"
        )
    total = sum(r.requests for r in results) / sum(r.seconds for r in results)
    print(
        f"{mode:>9}  {'overall':<28} {total:7.0f} req/s; mean latency "
        f"{1000 * statistics.fmean(x for r in results for x in r.latencies_s):.1f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=10000, help="requests per phase")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--servers", type=int, default=2000)
    p.add_argument("--applications", type=int, default=200)
    p.add_argument("--mode", choices=("both", "strict", "no-strict"), default="both")
    ns = p.parse_args()
    modes = ["no-strict", "strict"] if ns.mode == "both" else [ns.mode]
    print(f"cpus: {os.cpu_count()}; concurrency {ns.concurrency}; {ns.servers} servers")
    for mode in modes:
        proc, base = start_emulator(mode == "strict", ns.servers, ns.applications)
        try:
            results = asyncio.run(drive(base, ns.requests, ns.concurrency))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            print(f"emulator exited {proc.returncode}", file=sys.stderr)
            return 1
        report(mode, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
