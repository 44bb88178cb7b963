"""Where a run's journal and lock live: one small interface over two backends.

| state_backend | lock                                 | journal                             |
|---------------|--------------------------------------|-------------------------------------|
| sqlite        | flock on `<root>/<wave>/run.lock`    | `<root>/<wave>/journal.sqlite3`     |
| dynamodb      | a lease item in state_table (lease)  | items in state_table (dynamo_journal)|

A journal belongs to one MGN. `<root>` is `state_dir` itself for real AWS (the layout journals
always had) and `state_dir/rehearsal@<host>-<port>/` for any other endpoint (an emulator: a
rehearsal), so a rehearsal never reads or writes the night's journal or lock; the SQLite journal
also records its MGN (and the wave's account and region) and is refused for another. With
DynamoDB, the journal and lease are scoped by (MGN, account, region, wave); a wave name's scopes
are indexed so that `report` and `status`, which know only the wave, find it.

`open_run_state` takes the lock and opens the journal for a run; `open_journal` opens a wave's
journal to read (report, status) or to approve in. Both backends keep the same promises
(tests/test_state.py runs one contract over both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import structlog

from orchestrator import endpoints
from orchestrator.config import Config, flag_overrides, load_config
from orchestrator.errors import ConfigError, JournalError
from orchestrator.journal import AWS_SCOPE, Journal, JournalEntry, JournalOwner, StepEntry
from orchestrator.ledger import Writer
from orchestrator.lock import WaveLock, holder_alive, holder_of
from orchestrator.outcome import RunRecord
from orchestrator.stop import Stop, StopReason

if TYPE_CHECKING:  # the DynamoDB backend is imported only by the runs that use it
    from orchestrator.dynamo import TableSettings

log = structlog.get_logger(__name__)


class RunJournal(Writer, Protocol):
    """What a run, `report` and `status` need of a journal (the ledger writes the Writer part)."""

    @property
    def path(self) -> Path | str:
        """Where it is (a file, or a DynamoDB table and scope), for messages and the report."""
        ...

    def entries(self) -> dict[str, JournalEntry]: ...

    def start_run(
        self, run_id: str, *, started_at: str, dry_run: bool, pid: int, host: str
    ) -> None: ...

    def finish_run(self, run_id: str, record: RunRecord) -> None: ...

    def last_run_record(self) -> RunRecord | None: ...

    def run_record(self, run_id: str) -> RunRecord | None: ...

    def steps(self) -> dict[str, dict[str, StepEntry]]: ...

    def record_approval(self, application_id: str, *, run_id: str, by: str, at: str) -> None: ...

    def approvals(self, run_id: str) -> dict[str, tuple[str, str]]: ...


@dataclass
class RunStateStore:
    """An open journal under a held lock, for one run."""

    journal: RunJournal
    where: str
    _binders: list[Callable[[Callable[[str], None]], None]] = field(default_factory=list)

    def bind(self, stop: Stop) -> None:
        """A lost lease, or a result that could not be written behind, stops the run at once
        (LOCAL_STATE, exit 5). Call it inside the run's event loop."""
        loop = asyncio.get_running_loop()

        def lost(why: str) -> None:
            # From the heartbeat or writer thread; once the loop is closed the run is over.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.request, StopReason.LOCAL_STATE, why)

        for binder in self._binders:
            binder(lost)


def mgn_scope(config: Config) -> str:
    """The MGN a command's state belongs to: `aws` for real AWS (no endpoint, or an AWS host),
    `rehearsal@<host>-<port>` for any other endpoint. Read the way boto3 chooses the endpoint
    (`endpoints.mgn_endpoint`), so `run`, `status`, `approve` and `report` given the same settings
    and environment find the same journal. Raises ConfigError for a malformed endpoint variable.
    """
    return endpoint_scope(endpoints.mgn_endpoint(config, os.environ).url)


def endpoint_scope(url: str | None) -> str:
    """`aws` for no endpoint (boto3 chooses real AWS) or an AWS host, else
    `rehearsal@<host>-<port>` (see `mgn_scope`)."""
    if url is None or endpoints.is_aws_url(url):
        return AWS_SCOPE
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # '@' is in no wave name (plan.WAVE_NAME_RE): this folder never collides with a wave's.
    return "rehearsal@" + re.sub(r"[^A-Za-z0-9.-]", "_", f"{parts.hostname or '-'}-{port}")


def state_root(config: Config) -> Path:
    """The folder holding each wave's folder (journal and lock) for this MGN (module doc)."""
    scope = mgn_scope(config)
    return config.state_dir if scope == AWS_SCOPE else config.state_dir / scope


def scope_of(account_id: str | None, region: str | None, wave: str, mgn: str = AWS_SCOPE) -> str:
    """The partition of one (MGN, account, region, wave): lease and journal items share it.
    Real AWS keeps the partition journals always had (`scope#...`)."""
    head = "scope" if mgn == AWS_SCOPE else f"scope@{mgn}"
    return f"{head}#{account_id or '-'}#{region or '-'}#{wave}"


def table_settings(config: Config) -> TableSettings:
    """How to reach state_table. Raises ConfigError when the backend has no table."""
    from orchestrator.dynamo import TableSettings

    if config.state_table is None:
        raise ConfigError(
            "state_backend dynamodb needs state_table (--state-table, MGN_CUTOVER_STATE_TABLE); "
            "create the table once with `mgn-cutover state init --table NAME`"
        )
    return TableSettings(
        table=config.state_table,
        region=config.state_region or config.region,
        profile=config.profile,
        endpoint_url=config.state_endpoint_url,
    )


@contextmanager
def open_run_state(
    config: Config,
    wave: str,
    *,
    run_id: str,
    account_id: str | None,
    region: str | None,
) -> Iterator[RunStateStore]:
    """Take the wave's lock and open its journal for a run, on the configured backend.

    Raises LockedError (exit 3) naming the holder; JournalError (exit 2) for a damaged journal;
    StateWriteError (exit 5) if the state cannot be reached or written; ConfigError.
    """
    mgn = mgn_scope(config)
    if config.state_backend == "sqlite":
        root = state_root(config)
        owner = JournalOwner(mgn, account_id, region)
        lock = WaveLock(root, wave, run_id=run_id)
        with lock, Journal.open(root, wave, owner=owner) as journal:
            store = RunStateStore(journal, str(journal.path))

            def bind_journal(failed: Callable[[str], None]) -> None:
                journal.on_failure = failed  # from now on, commits are grouped

            store._binders.append(bind_journal)
            yield store
        return
    from orchestrator.dynamo import Table
    from orchestrator.dynamo_journal import INTENT_LINGER_S, DynamoJournal
    from orchestrator.lease import Lease

    table = Table(table_settings(config))
    try:
        lease = Lease(
            table,
            scope_of(account_id, region, wave, mgn),
            wave,
            run_id=run_id,
            lease_s=config.state_lease_s,
            heartbeat_s=config.state_heartbeat_s,
        )
        with lease:
            lease.start_heartbeat()
            dynamo = DynamoJournal(
                table, lease.scope, wave, lease=lease, intent_linger_s=INTENT_LINGER_S
            )
            store = RunStateStore(dynamo, f"dynamodb:{table.name}/{lease.scope}")

            def bind(lost: Callable[[str], None]) -> None:
                lease.on_lost(lambda why: lost(f"lease lost: {why}"))
                dynamo.on_failure = lost

            store._binders.append(bind)
            log.info("state_lease", table=table.name, scope=lease.scope, token=lease.token)
            with dynamo:
                yield store
    finally:
        table.close()


@contextmanager
def open_journal(config: Config, wave: str, *, create: bool = False) -> Iterator[RunJournal]:
    """A wave's journal to read (report, status) or to approve in; created only when `create`
    (SQLite: `approve` before the wave's first run).

    Only this MGN's journal is opened (`mgn_scope`). With DynamoDB, the wave's scope is the one
    its runs recorded against this MGN; `account_id` and `region` choose among several. Raises
    JournalError if there is none, it is ambiguous, or it was written for another MGN.
    """
    mgn = mgn_scope(config)
    if config.state_backend == "sqlite":
        owner = JournalOwner(mgn)
        with Journal.open(state_root(config), wave, create=create, owner=owner) as journal:
            yield journal
        return
    from orchestrator.dynamo import Table
    from orchestrator.dynamo_journal import DynamoJournal, wave_index

    table = Table(table_settings(config))
    try:
        wanted = scope_of(config.account_id, config.region, wave, mgn).split("#")
        scopes = [str(i["sk"]) for i in table.query(wave_index(wave), wanted[0] + "#")]
        chosen = [
            s
            for s in scopes
            if all(w == "-" or w == got for w, got in zip(wanted, s.split("#"), strict=False))
        ]
        if not chosen:
            raise JournalError(f"no journal for wave {wave!r} in table {table.name}")
        if len(chosen) > 1:
            raise JournalError(
                f"wave {wave!r} ran in several accounts or regions in table {table.name} "
                f"({', '.join(chosen)}): give --account-id and --region"
            )
        yield DynamoJournal(table, chosen[0], wave, lease=None)
    finally:
        table.close()


def run_holding(config: Config, wave: str, journal: RunJournal) -> str | None:
    """The ID of the run that holds the wave's lock (SQLite: a live holder of the lock file;
    DynamoDB: an unexpired lease) for this MGN, or None when no run does. Only reads: never
    takes the lock. Raises StateWriteError if DynamoDB cannot be read."""
    if config.state_backend == "sqlite":
        holder = holder_of(state_root(config), wave)
        return holder.run_id if holder is not None and holder_alive(holder) else None
    from orchestrator.dynamo_journal import DynamoJournal
    from orchestrator.lease import Lease

    if not isinstance(journal, DynamoJournal):
        return None
    lease = Lease(journal.table, journal.scope, wave, run_id="-", lease_s=0, heartbeat_s=0)
    found = lease.holder()
    return found.run_id if found is not None and found.expires_at > time.time() else None


def cmd_state(ns: argparse.Namespace) -> int:
    """`state init --table NAME`: create the DynamoDB state table, or report the existing one.

    Raises StateWriteError (exit 5) if DynamoDB refuses.
    """
    from orchestrator.dynamo import TableSettings, init_table

    config = load_config(ns.config, os.environ, flag_overrides(vars(ns)))
    settings = TableSettings(
        table=ns.table,
        region=config.state_region or config.region,
        profile=config.profile,
        endpoint_url=config.state_endpoint_url,
    )
    for line in init_table(settings):
        print(line)
    print(f"use it with: state_backend: dynamodb, state_table: {ns.table}")
    return 0
