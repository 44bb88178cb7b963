"""`mgn-cutover simulate`: serve the emulator in the foreground for a rehearsal.

The first line on stdout is `export AWS_ENDPOINT_URL_MGN=http://HOST:PORT` (flushed at once, so
a parent reading the pipe learns the port when --port 0); the next lines are every other
variable a rehearsal needs (EC2 and STS endpoints when moto runs, dummy credentials, region); a
summary goes to stderr. When moto is installed and no --ec2-endpoint-url is given, simulate
starts moto in server mode on 127.0.0.1 for EC2 (and STS), so launched instances are moto's and
a rehearsal never reaches real AWS. SIGINT and SIGTERM stop the server cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.emulator.args import add_arguments as add_arguments  # re-exported
from orchestrator.emulator.engine import Emulator
from orchestrator.emulator.errors import ApiError, FixtureError
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.generate import generate, seed_ready
from orchestrator.emulator.plans import load_planned_waves
from orchestrator.emulator.seed import load_fixture, seed_fixture
from orchestrator.emulator.server import start_server
from orchestrator.emulator.state import REGION
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, Store
from orchestrator.errors import ConfigError

DUMMY_KEY = "testing"


def faults_from_args(ns: argparse.Namespace) -> Faults:
    """The Faults the flags ask for; FixtureError when a value is out of range."""
    return Faults(
        quota_per_s=dict(ns.quota),
        latency_ms=ns.latency_ms,
        jitter_ms=ns.jitter_ms,
        error_rate=ns.error_rate,
        fail_first=dict(ns.fail_first),
        drop_rate=ns.drop_rate,
        drop_after_apply=ns.drop_after_apply,
        visibility_lag_s=ns.visibility_lag,
        stuck=frozenset(ns.stuck),
        stuck_rate=ns.stuck_rate,
        first_boot_delay_s=ns.first_boot_delay,
        uninitialized=ns.uninitialized,
        access_denied=ns.access_denied,
        time_scale=ns.time_scale,
        launch_s=ns.launch_duration or (0.0, 0.0),
        boot_s=ns.boot_duration or (0.0, 0.0),
        action_s=ns.action_duration or (0.0, 0.0),
        launch_failure_rate=ns.launch_failure_rate,
        boot_failure_rate=ns.boot_failure_rate,
        action_failure_rate=ns.action_failure_rate,
        stuck_job_servers=frozenset(ns.stuck_job),
        stuck_job_rate=ns.stuck_job_rate,
        post_launch_actions=tuple(ns.post_launch_actions),
        max_active_jobs=ns.max_active_jobs,
        max_active_job_servers=ns.max_active_job_servers,
    )


def build_emulator(
    ns: argparse.Namespace, ec2_endpoint_url: str | None = None
) -> tuple[Emulator, str]:
    """The emulator the flags describe, seeded; also a one-line description of the seeding.

    FixtureError when --stuck or --stuck-job names a server that was not seeded.
    """
    emulator = Emulator(
        faults=faults_from_args(ns),
        seed=ns.seed,
        strict=ns.strict,
        ec2_endpoint_url=ec2_endpoint_url,
    )
    emulator, summary = _seed(emulator, ns)
    _check_named_servers(emulator.store, ns)
    return emulator, summary


def _check_named_servers(store: Store, ns: argparse.Namespace) -> None:
    seeded = {sid for acct in store.accounts.values() for sid in acct.servers}
    for flag, ids in (("--stuck", ns.stuck), ("--stuck-job", ns.stuck_job)):
        unknown = sorted(set(ids) - seeded)
        if unknown:
            raise FixtureError(
                f"simulate: {flag} names server(s) that were not seeded: {', '.join(unknown)}"
                f" ({len(seeded)} servers seeded)"
            )


def _seed(emulator: Emulator, ns: argparse.Namespace) -> tuple[Emulator, str]:
    store = emulator.store
    if ns.fixture is not None:
        count = seed_fixture(store, load_fixture(ns.fixture))
        return emulator, f"{count} servers from {ns.fixture}"
    if ns.plan:
        waves = load_planned_waves(ns.plan)
        life = ns.state or "CUTTING_OVER"
        count = sum(seed_ready(store, w.groups, w.account_id, w.name, life) for w in waves)
        ready = "finalize" if life == "CUTTING_OVER" else "StartCutover"
        return emulator, f"{count} servers ready for {ready} from {len(waves)} planned waves"
    servers = ns.servers or 0
    applications = ns.applications
    if applications is None:
        applications = max(1, servers // 10) if servers else 0
    life = ns.state or "CUTTING_OVER"
    generate(store, servers=servers, applications=applications, seed=ns.seed, states={life: 1.0})
    if not servers and not applications:
        return emulator, "no servers (seed them with POST /_emulator/seed)"
    return emulator, f"{servers} generated servers ({life}) over {applications} applications"


def exports(mgn_url: str, ec2_url: str | None, sts_url: str | None) -> list[str]:
    """The shell lines that point a rehearsal's clients at the emulator (and moto)."""
    lines = [f"export AWS_ENDPOINT_URL_MGN={mgn_url}"]
    if ec2_url:
        lines.append(f"export AWS_ENDPOINT_URL_EC2={ec2_url}")
    if sts_url:
        lines.append(f"export AWS_ENDPOINT_URL_STS={sts_url}")
    lines += [
        f"export AWS_ACCESS_KEY_ID={DUMMY_KEY}",
        f"export AWS_SECRET_ACCESS_KEY={DUMMY_KEY}",
        f"export AWS_DEFAULT_REGION={REGION}",
        "unset AWS_PROFILE AWS_SESSION_TOKEN",
    ]
    return lines


async def serve(
    emulator: Emulator,
    host: str,
    port: int,
    summary: str,
    ec2_url: str | None = None,
    sts_url: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM."""
    runner, url = await start_server(emulator, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print("\n".join(exports(url, ec2_url, sts_url)), flush=True)
        print(
            f"mgn emulator at {url}: {summary}; {_describe(emulator)}", file=sys.stderr, flush=True
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _describe(emulator: Emulator) -> str:
    defaults = Faults().to_json()
    changed = {k: v for k, v in emulator.faults.to_json().items() if v != defaults[k]}
    ec2 = emulator.store.ec2
    return (
        f"default account {DEFAULT_ACCOUNT_ID}; strict={emulator.strict}; "
        f"EC2: {ec2.endpoint_url if ec2 else 'invented instance IDs'}; "
        f"faults: {', '.join(f'{k}={v}' for k, v in changed.items()) or 'none'}"
    )


@contextmanager
def moto_for_ec2(wanted: bool) -> Iterator[str | None]:
    """moto in server mode on 127.0.0.1 for the block (its URL), or None when not wanted or
    not installed."""
    if not wanted:
        yield None
        return
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def main(ns: argparse.Namespace) -> int:
    """Run `simulate`; exit 0 after SIGINT/SIGTERM, 2 on bad input (raised as FixtureError)."""
    if ns.applications is not None and (ns.fixture is not None or ns.plan):
        raise FixtureError("simulate: --applications goes with --servers, not --fixture or --plan")
    if ns.state is not None and ns.fixture is not None:
        raise FixtureError("simulate: --state goes with --servers or --plan; a fixture sets states")
    # Bad flags and fixtures are refused before moto starts.
    emulator, summary = build_emulator(ns, ns.ec2_endpoint_url)
    with moto_for_ec2(ns.moto and not ns.ec2_endpoint_url) as moto_url:
        ec2_url = ns.ec2_endpoint_url or moto_url
        if moto_url:
            emulator.use_ec2(moto_url)
        if emulator.store.ec2 is not None:
            try:
                emulator.store.ec2.warm_up(list(emulator.store.accounts) or [None])
            except ApiError as exc:
                raise ConfigError(f"simulate: {exc.message}") from exc
        try:
            asyncio.run(serve(emulator, ns.host, ns.port, summary, ec2_url, moto_url))
        except OSError as exc:
            raise ConfigError(f"simulate: cannot serve on {ns.host}:{ns.port}: {exc}") from exc
        finally:
            emulator.close()
    return 0
