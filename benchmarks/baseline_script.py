"""The loop a typical cutover script runs, as the baseline `benchmarks/run.py` measures against.

Sequential boto3: FinalizeCutover for each server in turn, then DescribeSourceServers for each
server in turn until it shows CUTOVER + DISCONNECTED, sleeping between polls. boto3 is used as
a script would use it: a default client (legacy retry mode, 5 attempts, no client-side rate
limit; 429s are retried with botocore's own backoff, `Retry-After` ignored), endpoint, region and
credentials from the environment. Deliberately no batching, no concurrency, no pacing.

    python benchmarks/baseline_script.py IDS_FILE [--poll-interval S]

IDS_FILE holds one source server ID per line. Prints one summary line; exits 0 when every
server converged, 1 otherwise (an exception after boto3's retries ends the script, as it would).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import boto3


def converged(item: dict[str, object]) -> bool:
    life = item.get("lifeCycle") or {}
    repl = item.get("dataReplicationInfo") or {}
    return (
        isinstance(life, dict)
        and isinstance(repl, dict)
        and life.get("state") == "CUTOVER"
        and repl.get("dataReplicationState") == "DISCONNECTED"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ids_file", type=Path)
    p.add_argument("--poll-interval", type=float, default=0.5, metavar="S")
    ns = p.parse_args()
    ids = [line.strip() for line in ns.ids_file.read_text().splitlines() if line.strip()]
    mgn = boto3.client("mgn")
    started = time.monotonic()
    for server_id in ids:
        mgn.finalize_cutover(sourceServerID=server_id)
    finalized = time.monotonic()
    polls = 0
    for server_id in ids:
        while True:
            polls += 1
            page = mgn.describe_source_servers(filters={"sourceServerIDs": [server_id]})
            items = page.get("items") or []
            if items and converged(items[0]):
                break
            time.sleep(ns.poll_interval)
    done = time.monotonic()
    print(
        f"baseline: {len(ids)} servers finalized in {finalized - started:.2f} s, "
        f"converged after {done - started:.2f} s ({polls} describe calls)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
