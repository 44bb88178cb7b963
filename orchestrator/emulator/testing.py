"""Running the emulator inside a test: a background thread with its own loop, and a handle.

    with running_emulator(servers=10, applications=2, faults=Faults(error_rate=0.1)) as mgn:
        client = boto3.client("mgn", endpoint_url=mgn.url)
        ...
        assert mgn.calls("FinalizeCutover") == 10
        mgn.advance(600)              # ten minutes of the night pass at once
        assert max(mgn.launches().values(), default=0) <= 1   # no server launched twice

Every handle method runs on the emulator's loop (`run_coroutine_threadsafe`), so it is safe to
call from the test's thread, or from another event loop, while requests are being served.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.emulator.engine import Emulator
from orchestrator.emulator.errors import ResponseShapeError
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.generate import generate, seed_ready
from orchestrator.emulator.seed import load_fixture, seed_fixture
from orchestrator.emulator.server import start_server
from orchestrator.emulator.state import iso, jcopy
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0


class EmulatorHandle:
    """A running emulator, seen from the test: its URL, counters, servers, faults and seeding."""

    def __init__(self, emulator: Emulator, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.emulator = emulator
        self.url = url
        self.account_id = DEFAULT_ACCOUNT_ID
        self._loop = loop

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT_S)

    def calls(self, op: str) -> int:
        """Requests that reached `op` (throttled, failed and refused ones included)."""
        return self._on_loop(lambda: self.emulator.stats.calls[op])

    def calls_for(self, server_id: str, op: str) -> int:
        """Requests to `op` that named `server_id`."""
        return self._on_loop(lambda: self.emulator.stats.by_server[(server_id, op)])

    def throttled(self, op: str | None = None) -> int:
        """ThrottlingException answers, for one operation or all."""
        stats = self.emulator.stats
        return self._on_loop(
            lambda: sum(stats.throttled.values()) if op is None else stats.throttled[op]
        )

    def failed(self, op: str | None = None) -> int:
        """Injected InternalServerExceptions plus dropped connections, for one operation or all."""
        return self._on_loop(lambda: self.emulator.stats.failed(op))

    def stats(self) -> dict[str, Any]:
        """Every counter, as GET /_emulator/stats shows them."""
        return self._on_loop(self.emulator.stats.to_json)

    def request_log(self) -> list[dict[str, Any]]:
        """The request log: time, op, status, outcome, servers touched, accountID."""
        return self._on_loop(lambda: [dict(e) for e in self.emulator.stats.log])

    def server(self, server_id: str, account_id: str | None = None) -> dict[str, Any]:
        """The server's true current SourceServer JSON; ApiError(ResourceNotFound) if unknown."""
        return self._on_loop(
            lambda: jcopy(self.emulator.store.record(account_id, server_id).current)
        )

    def servers(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Every server's true current SourceServer JSON in the account."""
        return self._on_loop(lambda: jcopy(self.emulator.store.servers(account_id)))

    def advance(self, seconds: float) -> None:
        """Let `seconds` of clock time pass at once: jobs, first boots, lag and quotas see it.

        With `time_scale` k, a launch drawn as d emulated seconds takes d / k clock seconds.
        """
        self._on_loop(lambda: self.emulator.advance(seconds))

    def jobs(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Every job of the account as DescribeJobs would show it now, oldest first."""

        def read() -> list[dict[str, Any]]:
            store = self.emulator.store
            now = store.clock()
            return [j.view(now, iso) for j in store.account(account_id).jobs.values()]

        return self._on_loop(read)

    def job(self, job_id: str, account_id: str | None = None) -> dict[str, Any]:
        """One job as DescribeJobs would show it now; KeyError when unknown."""
        for found in self.jobs(account_id):
            if found["jobID"] == job_id:
                return found
        raise KeyError(job_id)

    def active_jobs(self, account_id: str | None = None) -> list[str]:
        """IDs of the account's jobs that have not completed (they hold job quota)."""
        return self._on_loop(
            lambda: [j.job_id for j in self.emulator.store.active_jobs(account_id)]
        )

    def launches(self, account_id: str | None = None) -> Counter[str]:
        """LAUNCH jobs per source server ID: each accepted StartCutover counts once per server.

        `max(launches().values()) <= 1` proves no server was launched twice; requests that were
        refused, throttled or dropped before apply are not launches (see calls_for for those).
        """

        def count() -> Counter[str]:
            out: Counter[str] = Counter()
            for job in self.emulator.store.account(account_id).jobs.values():
                if job.type == "LAUNCH":
                    out.update(s.server_id for s in job.servers)
            return out

        return self._on_loop(count)

    def seed(self, fixture: Mapping[str, Any] | str | Path) -> int:
        """Seed a fixture (dict or YAML path); returns how many servers it added."""
        data = load_fixture(fixture)
        return self._on_loop(lambda: seed_fixture(self.emulator.store, data))

    def generate(self, **kwargs: Any) -> list[str]:
        """Seed generated servers (see generate.generate); returns their IDs."""
        return self._on_loop(lambda: generate(self.emulator.store, **kwargs))

    def seed_ready(
        self,
        groups: Iterable[tuple[str, Sequence[str]]],
        account_id: str | None = None,
        wave_name: str | None = None,
    ) -> int:
        """Seed (applicationID, [sourceServerIDs]) groups ready for FinalizeCutover."""
        items = list(groups)
        return self._on_loop(lambda: seed_ready(self.emulator.store, items, account_id, wave_name))

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.emulator.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some faults from the next request on; returns the faults now in force."""

        def apply() -> Faults:
            self.emulator.set_faults(self.emulator.faults.updated(changes))
            return self.emulator.faults

        return self._on_loop(apply)

    def identify(self, access_key: str, account_id: str) -> None:
        """Calls signed with `access_key` come from member account `account_id` (identity.py)."""
        self._on_loop(lambda: self.emulator.identities.register(access_key, account_id))

    def reset_counters(self) -> None:
        """Zero every counter and empty the request log."""
        self._on_loop(self.emulator.stats.reset)

    def reset(self) -> None:
        """Forget every server, application and wave, and zero the counters."""

        def clear() -> None:
            self.emulator.store.clear()
            self.emulator.stats.reset()

        self._on_loop(clear)


@contextmanager
def running_emulator(
    *,
    fixture: Mapping[str, Any] | str | Path | None = None,
    servers: int = 0,
    applications: int | None = None,
    seed: int = 0,
    faults: Faults | None = None,
    strict: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.monotonic,
    ec2_endpoint_url: str | None = None,
) -> Iterator[EmulatorHandle]:
    """Serve an emulator on a background thread for the `with` block; yields its handle.

    `applications` defaults to one per 10 generated servers. `clock` may be a test's fake clock
    (the handle's advance() moves time too). With `ec2_endpoint_url` (moto in server mode),
    launched instances are real moto instances (ec2.py). In strict mode, a response the
    emulator built against the model raises ResponseShapeError when the block exits normally.
    """
    emulator = Emulator(
        faults=faults, seed=seed, strict=strict, clock=clock, ec2_endpoint_url=ec2_endpoint_url
    )
    if fixture is not None:
        seed_fixture(emulator.store, load_fixture(fixture))
    if servers or applications:
        generate(emulator.store, servers=servers, applications=applications, seed=seed)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="mgn-emulator", daemon=True)
    thread.start()
    try:
        runner, url = asyncio.run_coroutine_threadsafe(
            start_server(emulator, host, port), loop
        ).result(CALL_TIMEOUT_S)
        try:
            yield EmulatorHandle(emulator, loop, url)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(CALL_TIMEOUT_S)
            emulator.close()
        if emulator.stats.emulator_errors:
            raise ResponseShapeError("; ".join(emulator.stats.emulator_errors[:5]))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        loop.close()
