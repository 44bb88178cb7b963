"""Where a run's journal and lock live: one small interface over two backends.

| state_backend | lock                                 | journal                             |
|---------------|--------------------------------------|-------------------------------------|
| sqlite        | flock on `state_dir/<wave>/run.lock` | `state_dir/<wave>/journal.sqlite3`  |
| dynamodb      | a lease item in state_table (lease)  | items in state_table (dynamo_journal)|

`open_run_state` takes the lock and opens the journal for a run; `open_journal` opens a wave's
journal to read (report, status). Both backends keep the same promises (tests/test_state.py runs
one contract over both). With DynamoDB, the journal and lease are scoped by (account, region,
wave); a wave name's scopes are indexed so that `report` and `status`, which know only the wave,
find it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from orchestrator.config import Config, flag_overrides, load_config
from orchestrator.errors import ConfigError, JournalError
from orchestrator.journal import Journal, JournalEntry, StepEntry
from orchestrator.ledger import Writer
from orchestrator.lock import WaveLock
from orchestrator.outcome import RunRecord
from orchestrator.stop import Stop, StopReason

if TYPE_CHECKING:  # the DynamoDB backend is imported only by the runs that use it
    from orchestrator.dynamo import TableSettings

log = structlog.get_logger(__name__)


class RunJournal(Writer, Protocol):
    """What a run, `report` and `status` need of a journal (the ledger writes the Writer part)."""

    def entries(self) -> dict[str, JournalEntry]: ...

    def start_run(
        self, run_id: str, *, started_at: str, dry_run: bool, pid: int, host: str
    ) -> None: ...

    def finish_run(self, run_id: str, record: RunRecord) -> None: ...

    def last_run_record(self) -> RunRecord | None: ...

    def run_record(self, run_id: str) -> RunRecord | None: ...

    def steps(self) -> dict[str, dict[str, StepEntry]]: ...

    def record_approval(self, application_id: str, *, by: str, at: str) -> None: ...

    def approvals(self) -> dict[str, tuple[str, str]]: ...


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


def scope_of(account_id: str | None, region: str | None, wave: str) -> str:
    """The partition of one (account, region, wave): lease and journal items share it."""
    return f"scope#{account_id or '-'}#{region or '-'}#{wave}"


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
    if config.state_backend == "sqlite":
        with WaveLock(config.state_dir, wave), Journal.open(config.state_dir, wave) as journal:
            store = RunStateStore(journal, str(config.state_dir))

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
            scope_of(account_id, region, wave),
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

    With DynamoDB, the wave's scope is the one its runs recorded; `account_id` and `region`
    choose among several. Raises JournalError if there is none, or it is ambiguous.
    """
    if config.state_backend == "sqlite":
        with Journal.open(config.state_dir, wave, create=create) as journal:
            yield journal
        return
    from orchestrator.dynamo import Table
    from orchestrator.dynamo_journal import DynamoJournal, wave_index

    table = Table(table_settings(config))
    try:
        scopes = [str(i["sk"]) for i in table.query(wave_index(wave), "scope#")]
        wanted = scope_of(config.account_id, config.region, wave).split("#")
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
