"""`mgn-cutover simulate`: serve the emulator in the foreground for a rehearsal.

The first line on stdout is `export AWS_ENDPOINT_URL_MGN=http://HOST:PORT` (flushed at once, so
a parent reading the pipe learns the port when --port 0); a summary goes to stderr. SIGINT and
SIGTERM stop the server cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from orchestrator.emulator.args import add_arguments as add_arguments  # re-exported
from orchestrator.emulator.engine import Emulator
from orchestrator.emulator.errors import FixtureError
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.generate import generate, seed_ready
from orchestrator.emulator.plans import load_planned_waves
from orchestrator.emulator.seed import load_fixture, seed_fixture
from orchestrator.emulator.server import start_server
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID
from orchestrator.errors import ConfigError


def faults_from_args(ns: argparse.Namespace) -> Faults:
    """The Faults the flags ask for; FixtureError when a value is out of range."""
    return Faults(
        quota_per_s=dict(ns.quota),
        latency_ms=ns.latency_ms,
        jitter_ms=ns.jitter_ms,
        error_rate=ns.error_rate,
        drop_rate=ns.drop_rate,
        drop_after_apply=ns.drop_after_apply,
        visibility_lag_s=ns.visibility_lag,
        stuck=frozenset(ns.stuck),
        stuck_rate=ns.stuck_rate,
        first_boot_delay_s=ns.first_boot_delay,
        uninitialized=ns.uninitialized,
        access_denied=ns.access_denied,
    )


def build_emulator(ns: argparse.Namespace) -> tuple[Emulator, str]:
    """The emulator the flags describe, seeded; also a one-line description of the seeding."""
    emulator = Emulator(faults=faults_from_args(ns), seed=ns.seed, strict=ns.strict)
    store = emulator.store
    if ns.fixture is not None:
        count = seed_fixture(store, load_fixture(ns.fixture))
        return emulator, f"{count} servers from {ns.fixture}"
    if ns.plan:
        waves = load_planned_waves(ns.plan)
        count = sum(seed_ready(store, w.groups, w.account_id, w.name) for w in waves)
        return emulator, f"{count} servers ready for finalize from {len(waves)} planned waves"
    servers = ns.servers or 0
    applications = ns.applications
    if applications is None:
        applications = max(1, servers // 10) if servers else 0
    generate(store, servers=servers, applications=applications, seed=ns.seed)
    if not servers and not applications:
        return emulator, "no servers (seed them with POST /_emulator/seed)"
    return emulator, f"{servers} generated servers over {applications} applications"


async def serve(emulator: Emulator, host: str, port: int, summary: str) -> None:
    """Serve until SIGINT or SIGTERM."""
    runner, url = await start_server(emulator, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"export AWS_ENDPOINT_URL_MGN={url}", flush=True)
        print(
            f"mgn emulator at {url}: {summary}; {_describe(emulator)}", file=sys.stderr, flush=True
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _describe(emulator: Emulator) -> str:
    faults = emulator.faults
    changed = {
        k: v
        for k, v in faults.to_json().items()
        if v != getattr(Faults(), k) and not (isinstance(v, list | dict) and not v)
    }
    return (
        f"default account {DEFAULT_ACCOUNT_ID}; strict={emulator.strict}; "
        f"faults: {', '.join(f'{k}={v}' for k, v in changed.items()) or 'none'}"
    )


def main(ns: argparse.Namespace) -> int:
    """Run `simulate`; exit 0 after SIGINT/SIGTERM, 2 on bad input (raised as FixtureError)."""
    if ns.applications is not None and (ns.fixture is not None or ns.plan):
        raise FixtureError("simulate: --applications goes with --servers, not --fixture or --plan")
    emulator, summary = build_emulator(ns)
    try:
        asyncio.run(serve(emulator, ns.host, ns.port, summary))
    except OSError as exc:
        raise ConfigError(f"simulate: cannot serve on {ns.host}:{ns.port}: {exc}") from exc
    return 0
