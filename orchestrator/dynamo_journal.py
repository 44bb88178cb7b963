"""The journal on DynamoDB: the same promises as the SQLite journal, across hosts, fenced.

One item per (scope, server) (`server#<id>`) and per run (`run#<id>`, its record zlib-compressed
in `runpart#<id>#<n>` items: a 2,000-server record is over DynamoDB's 400 KB item limit as JSON).
Every write is one TransactWriteItems led by the lease's fencing check (`Lease.fence`), so a run
that lost its lease writes nothing. The transitions are conditional as the ledger's are: an
acceptance or failure needs the server's intent (`attribute_exists`), a run is started once and
finished only if started.

Durability and order: `record_intent` is synchronous: it returns only once DynamoDB has the
intent, so it is durable before FinalizeCutover is sent. Results (accepted, converged, failed)
are written behind by one thread, in order, batched into transactions of up to 99 items; a
failed one stops the run (`on_failure`) and every later write raises StateWriteError.
`finish_run` and `close` flush them first; an intent for a server with a result still queued
flushes too, so one server's items are always written in the order they were recorded.

Whole items: once `entries()` has been read under the lease (the run does so at its start),
the journal knows every server item, and while it holds the lease it is their only writer. From
then on each write is a Put of the server's whole item, conditional on the revision (`rev`) it
last read or wrote, instead of an Update expression: DynamoDB charges the same for either, and
the benchmark's moto evaluates a Put some 25 times faster. Before that read (or after any write
failed) writes are Update expressions, which need no knowledge of the item.
"""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import structlog

from orchestrator.dynamo import MAX_TRANSACTION, ConditionFailed, Item, Table, key, marshal
from orchestrator.errors import JournalError, StateWriteError
from orchestrator.journal import MAX_MESSAGE_CHARS, JournalEntry, StepEntry
from orchestrator.lease import Lease
from orchestrator.outcome import RunRecord, record_json, run_record_from_dict

log = structlog.get_logger(__name__)

PART_BYTES = 350_000  # per record part: under DynamoDB's 400 KB item limit
# How long a run's intents gather before each group commit: at 100 finalizes/s, ~3 intents per
# transaction instead of one, for at most 20 ms more before each FinalizeCutover.
INTENT_LINGER_S = 0.02


def wave_index(wave: str) -> str:
    """The partition listing the scopes a wave name has run in."""
    return f"wave#{wave}"


@dataclass(frozen=True)
class _Write:
    """One queued result: the item it updates and its Update action."""

    server_id: str
    action: dict[str, Any]
    what: str


class DynamoJournal:
    """One wave's journal in the state table; `lease` None opens it read-only."""

    def __init__(
        self,
        table: Table,
        scope: str,
        wave: str,
        *,
        lease: Lease | None,
        write_behind: bool = True,
        on_failure: Callable[[str], None] | None = None,
        intent_linger_s: float = 0.0,
    ) -> None:
        self.table = table
        self.scope = scope
        self.wave = wave
        self.path = f"dynamodb table {table.name}, {scope}"
        self._lease = lease
        self._write_behind = write_behind
        self.on_failure = on_failure
        self._queue: deque[_Write] = deque()
        self._queued: dict[str, int] = {}  # server -> results queued or being written
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._failed: StateWriteError | None = None
        self._worker: threading.Thread | None = None
        # Group commit of intents (record_intent_soon): waiting intents and their committer.
        self._intents: deque[tuple[str, dict[str, Any], asyncio.Future[None]]] = deque()
        self._committer: asyncio.Future[None] | None = None
        self._intent_linger_s = intent_linger_s
        self.intent_batches = 0
        # Each server's item as last read or written (see the module doc); None: not known.
        self._mirror: dict[str, Item] | None = None
        self._server_writes = 0

    # -- reads ----------------------------------------------------------------------------------

    def entries(self) -> dict[str, JournalEntry]:
        """Every journaled server, by source server ID. Raises StateWriteError if unreachable."""
        items = list(self.table.query(self.scope, "server#"))
        knowable = self._mirror is None and self._lease is not None and not self._server_writes
        if knowable and all(isinstance(v, _SCALARS) for i in items for v in i.values()):
            self._mirror = {str(i["sk"]).removeprefix("server#"): i for i in items}
        found = (_entry(i) for i in items)
        return {e.source_server_id: e for e in sorted(found, key=lambda e: e.source_server_id)}

    def entry(self, server_id: str) -> JournalEntry | None:
        item = self.table.get(self.scope, f"server#{server_id}")
        return None if item is None else _entry(item)

    def last_run_record(self) -> RunRecord | None:
        """The wave's record: the latest finished real run's, else the latest dry run's."""
        runs = [r for r in self.table.query(self.scope, "run#") if r.get("finished_at")]
        if not runs:
            return None
        runs.sort(key=lambda r: (r["finished_at"], r["started_at"]), reverse=True)
        runs.sort(key=lambda r: bool(r["dry_run"]))
        return self._record(runs[0])

    def run_record(self, run_id: str) -> RunRecord | None:
        """The finished run whose ID is or starts with `run_id` (6+ characters), or None.
        Raises JournalError if it is ambiguous or unreadable."""
        if len(run_id) < 6:
            return None
        runs = [r for r in self.table.query(self.scope, f"run#{run_id}") if r.get("finished_at")]
        if not runs:
            return None
        if len(runs) > 1:
            ids = ", ".join(str(r["run_id"]) for r in runs[:5])
            raise JournalError(f"run {run_id!r} is ambiguous in {self.path}: {ids}")
        return self._record(runs[0])

    def _record(self, run: Item) -> RunRecord:
        run_id = str(run["run_id"])
        parts = list(self.table.query(self.scope, f"runpart#{run_id}#"))
        try:
            if len(parts) != int(run["parts"]):
                raise ValueError(f"{len(parts)} of {run['parts']} parts")
            blob = b"".join(bytes(p["data"]) for p in sorted(parts, key=lambda p: p["sk"]))
            return run_record_from_dict(json.loads(zlib.decompress(blob)))
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error) as exc:
            raise JournalError(f"run {run_id} in {self.path} has an unreadable record") from exc

    # -- the ledger's writes --------------------------------------------------------------------

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        """Record, durably and now, that a FinalizeCutover is about to be sent.

        Raises StateWriteError if it cannot be written (the lease lost, DynamoDB unreachable or
        throttled past our retries, an earlier result failed): then it must not be sent.
        """
        self._raise_failed()
        if self._queued.get(server_id):
            self.flush()
        action = self._intent_action(server_id, application_id, at, run_id)
        try:
            self._transact([action], 1, f"intent of {server_id}")
        except StateWriteError as err:
            # The run stops now: later intents fail at once instead of waiting on DynamoDB again.
            self._failed = self._failed or err
            raise

    async def record_intent_soon(
        self, server_id: str, application_id: str, *, at: str, run_id: str
    ) -> None:
        """`record_intent`, group-committed: the intents that arrive while one transaction is
        on its way, or within `intent_linger_s` before it, go together (up to 99), so a run at
        100 finalizes/s does not wait 100 round trips a second. Returns once this intent is
        durable.

        Raises StateWriteError as record_intent does (then it must not be sent).
        """
        self._raise_failed()
        if self._queued.get(server_id):
            await asyncio.to_thread(self.flush)
        action = self._intent_action(server_id, application_id, at, run_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._intents.append((server_id, action, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_intents())
        await done

    async def _commit_intents(self) -> None:
        while self._intents:
            # Let the intents of this turn of the loop (and `intent_linger_s`) gather.
            await asyncio.sleep(self._intent_linger_s)
            batch: list[tuple[str, dict[str, Any], asyncio.Future[None]]] = []
            seen: set[str] = set()
            while self._intents and len(batch) < MAX_TRANSACTION - 1:
                if self._intents[0][0] in seen:
                    break
                batch.append(self._intents.popleft())
                seen.add(batch[-1][0])
            what = f"intent of {batch[0][0]}" if len(batch) == 1 else f"{len(batch)} intents"
            try:
                self._raise_failed()
                await asyncio.to_thread(self._transact, [a for _, a, _ in batch], len(batch), what)
            except Exception as err:  # noqa: BLE001 -- every waiter must hear of any failure
                failed = err if isinstance(err, StateWriteError) else StateWriteError(str(err))
                self._failed = self._failed or failed
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(StateWriteError(str(failed)))
            else:
                self.intent_batches += 1
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _intent_action(
        self, server_id: str, application_id: str, at: str, run_id: str
    ) -> dict[str, Any]:
        sets = {"application_id": application_id, "status": "intent", "intent_at": at,
                "run_id": run_id}  # fmt: skip
        put = self._put(server_id, sets, bump=True, remove=_ERROR, create=True)
        if put is not None:
            return put
        return self._update(
            server_id,
            "SET #app = :app, #status = :intent, #attempts = if_not_exists(#attempts, :zero)"
            " + :one, #intent_at = :at, #run = :run REMOVE #code, #message",
            {":app": application_id, ":intent": "intent", ":zero": 0, ":one": 1, ":at": at,
             ":run": run_id},
        )  # fmt: skip

    def record_accepted(self, server_id: str, *, at: str, run_id: str) -> None:
        """Record that MGN accepted the finalize; keeps the first finalized_at. Needs an intent."""
        sets = {"status": "accepted", "run_id": run_id}
        action = self._put(
            server_id, sets, first={"finalized_at": at}, remove=_ERROR, create=False
        ) or self._update(
            server_id,
            "SET #status = :accepted, #finalized_at = if_not_exists(#finalized_at, :at),"
            " #run = :run REMOVE #code, #message",
            {":accepted": "accepted", ":at": at, ":run": run_id},
            condition="attribute_exists(pk)",
        )
        self._result(_Write(server_id, action, f"no intent journaled for server {server_id}"))

    def record_converged(
        self,
        server_id: str,
        *,
        at: str,
        run_id: str,
        application_id: str | None = None,
        finalized: bool = False,
    ) -> None:
        """Record CUTOVER + DISCONNECTED; keeps the first converged_at; creates the entry (zero
        attempts) for a server found cut over when `application_id` is given."""
        sets = [
            "#status = :converged",
            "#converged_at = if_not_exists(#converged_at, :at)",
            "#attempts = if_not_exists(#attempts, :zero)",
            "#run = :run",
        ]
        values: dict[str, object] = {
            ":converged": "converged",
            ":at": at,
            ":zero": 0,
            ":run": run_id,
        }
        if finalized:
            sets.append("#finalized_at = if_not_exists(#finalized_at, :at)")
        if application_id is not None:
            sets.append("#app = :app")
            values[":app"] = application_id
        first: dict[str, object] = {"converged_at": at, "attempts": 0}
        if finalized:
            first["finalized_at"] = at
        put_sets: dict[str, object] = {"status": "converged", "run_id": run_id}
        if application_id is not None:
            put_sets["application_id"] = application_id
        put = self._put(
            server_id, put_sets, first=first, remove=_ERROR, create=application_id is not None
        )
        action = put or self._update(
            server_id,
            "SET " + ", ".join(sets) + " REMOVE #code, #message",
            values,
            condition=None if application_id is not None else "attribute_exists(pk)",
        )
        self._result(_Write(server_id, action, f"server {server_id} is not in {self.path}"))

    def record_failed(self, server_id: str, *, code: str, message: str, run_id: str) -> None:
        """Record a definitive refusal with MGN's error (message cut to ~500). Needs an intent."""
        sets = {
            "status": "failed",
            "error_code": _truncate(code, 100),
            "error_message": _truncate(message, MAX_MESSAGE_CHARS),
            "run_id": run_id,
        }
        action = self._put(server_id, sets, create=False) or self._update(
            server_id,
            "SET #status = :failed, #code = :code, #message = :message, #run = :run",
            {
                ":failed": "failed",
                ":code": sets["error_code"],
                ":message": sets["error_message"],
                ":run": run_id,
            },
            condition="attribute_exists(pk)",
        )
        self._result(_Write(server_id, action, f"server {server_id} is not in {self.path}"))

    # -- the night's steps and approvals (the launch night on main, issue 10) -------------------

    def record_step(
        self,
        server_id: str,
        application_id: str,
        step: str,
        status: str,
        *,
        at: str,
        run_id: str,
        job_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record one step of the night for a server, synchronously and fenced (an intent must
        be durable before its call); a job ID, once known, is kept.

        Raises StateWriteError if it cannot be written: for an intent, the caller must not send.
        """
        self._raise_failed()
        sets = ["#app = :app", "#step = :step", "#status = :status", "#at = :at", "#run = :run"]
        values: dict[str, object] = {
            ":app": application_id, ":step": step, ":status": status, ":at": at, ":run": run_id,
        }  # fmt: skip
        if job_id is not None:
            sets.append("#job = :job")
            values[":job"] = job_id
        remove = ""
        if detail is None:
            remove = " REMOVE #detail"
        else:
            sets.append("#detail = :detail")
            values[":detail"] = _truncate(detail, MAX_MESSAGE_CHARS)
        expression = "SET " + ", ".join(sets) + remove
        names = {f"#{k}": v for k, v in _STEP_NAMES.items() if f"#{k}" in expression}
        action = {
            "Update": {
                "TableName": self.table.name,
                "Key": key(self.scope, f"step#{server_id}#{step}"),
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _values(values),
            }
        }
        self._transact([action], 1, f"{step} of {server_id}")

    def steps(self) -> dict[str, dict[str, StepEntry]]:
        """Every recorded step: {server: {step: entry}}."""
        out: dict[str, dict[str, StepEntry]] = {}
        for item in self.table.query(self.scope, "step#"):
            server_id = str(item["sk"]).split("#")[1]
            out.setdefault(server_id, {})[str(item["step"])] = StepEntry(
                str(item["status"]), item.get("job_id"), item.get("detail"), str(item["at"]),
                item.get("run_id"),
            )  # fmt: skip
        return out

    def record_approval(self, application_id: str, *, run_id: str, by: str, at: str) -> None:
        """Record that `by` approved finalizing an application in run `run_id`; the first
        approval of that run stands.

        Not fenced: `approve` is given from anywhere while the run holds the lease.
        Raises StateWriteError if it cannot be written.
        """
        # One item per (application, run); items from before approvals named their run
        # (`approval#<app>`, no run_id) approve no run.
        item = {"pk": self.scope, "sk": f"approval#{application_id}#{run_id}",
                "application_id": application_id, "run_id": run_id,
                "approved_by": _truncate(by, 200), "approved_at": at}  # fmt: skip
        with suppress(ConditionFailed):  # approved before: that approval stands
            self.table.call(
                "PutItem",
                TableName=self.table.name,
                Item=_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )

    def approvals(self, run_id: str) -> dict[str, tuple[str, str]]:
        """{application: (approved by, at)} of run `run_id` alone."""
        return {
            str(i["application_id"]): (str(i["approved_by"]), str(i["approved_at"]))
            for i in self.table.query(self.scope, "approval#")
            if i.get("run_id") == run_id and i.get("application_id") is not None
        }

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, *, started_at: str, dry_run: bool, pid: int, host: str
    ) -> None:
        """Record that a run started. Raises JournalError if run_id exists, StateWriteError if
        it cannot be written."""
        run = {
            "pk": self.scope,
            "sk": f"run#{run_id}",
            "run_id": run_id,
            "started_at": started_at,
            "dry_run": dry_run,
            "pid": pid,
            "host": host,
        }
        index = {"pk": wave_index(self.wave), "sk": self.scope, "wave": self.wave}
        actions = [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": _item(run),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self.table.name, "Item": _item(index)}},
        ]
        self._transact(actions, 2, f"run {run_id} already exists in {self.path}")

    def finish_run(self, run_id: str, record: RunRecord) -> None:
        """Flush every result, then store the run's whole record for `report` and `status`.

        Raises JournalError if the run was never started or the record is another wave's,
        StateWriteError if anything cannot be written.
        """
        if record.wave != self.wave:
            raise JournalError(f"run record of wave {record.wave!r} in journal of {self.wave!r}")
        self.flush()
        blob = zlib.compress(record_json(record).encode(), 6)
        parts = [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]
        update = {
            "Update": {
                "TableName": self.table.name,
                "Key": key(self.scope, f"run#{run_id}"),
                "UpdateExpression": "SET finished_at = :f, exit_code = :e, interrupted = :i,"
                " parts = :n",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": _values(
                    {
                        ":f": record.finished_at,
                        ":e": record.exit_code,
                        ":i": record.interrupted,
                        ":n": len(parts),
                    }
                ),
            }
        }
        puts = [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": _item(
                        {"pk": self.scope, "sk": f"runpart#{run_id}#{n:04d}", "data": part}
                    ),
                }
            }
            for n, part in enumerate(parts)
        ]
        self._transact([update, *puts], 1 + len(puts), f"run {run_id} was never started")

    # -- write-behind ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued result is written. Raises StateWriteError if one failed."""
        with self._cond:
            while (self._queue or self._busy) and self._failed is None:
                self._cond.wait()
        self._raise_failed()

    def close(self) -> None:
        """Flush what is queued (a failure is logged: the run has reported it) and stop."""
        try:
            self.flush()
        except StateWriteError as err:
            log.error("journal_write_failed", error=str(err))
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
        counts = self.table.counts
        log.info(
            "state_writes",
            table=self.table.name,
            requests=dict(counts.requests),
            items_written=counts.items_written,
        )

    def __enter__(self) -> DynamoJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _result(self, write: _Write) -> None:
        self._raise_failed()
        if not self._write_behind:
            self._transact([write.action], 1, write.what)
            return
        with self._cond:
            self._queue.append(write)
            self._queued[write.server_id] = self._queued.get(write.server_id, 0) + 1
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._drain, name=f"journal-{self.wave}", daemon=True
                )
                self._worker.start()
            self._cond.notify_all()

    def _drain(self) -> None:
        """The writer thread: batches of consecutive results, one item at most once each."""
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch: list[_Write] = []
                seen: set[str] = set()
                while self._queue and len(batch) < MAX_TRANSACTION - 1:
                    if self._queue[0].server_id in seen:
                        break
                    batch.append(self._queue.popleft())
                    seen.add(batch[-1].server_id)
                self._busy = True
            try:
                what = batch[0].what if len(batch) == 1 else f"{len(batch)} results"
                self._transact([w.action for w in batch], len(batch), what, batch)
            except Exception as err:  # noqa: BLE001 -- any failure must stop the run, not this thread
                failed = err if isinstance(err, StateWriteError) else StateWriteError(str(err))
                with self._cond:
                    self._failed = failed
                    self._queue.clear()
                    self._queued.clear()
                if self.on_failure is not None:
                    self.on_failure(str(failed))
            finally:
                with self._cond:
                    for w in batch:
                        left = self._queued.get(w.server_id, 0) - 1
                        if left > 0:
                            self._queued[w.server_id] = left
                        else:
                            self._queued.pop(w.server_id, None)
                    self._busy = False
                    self._cond.notify_all()

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise StateWriteError(f"an earlier journal write failed: {self._failed}")

    # -- one fenced transaction -----------------------------------------------------------------

    def _transact(
        self,
        actions: list[dict[str, Any]],
        items: int,
        what: str,
        batch: Iterable[_Write] = (),
    ) -> None:
        """Fence + actions in one transaction. A failed fence loses the lease (StateWriteError);
        a failed action condition raises JournalError naming `what` (or the batch's culprit)."""
        if self._lease is None:
            raise StateWriteError(f"{self.path} is open read-only")
        fence = self._lease.fence()
        try:
            self.table.transact([fence, *actions], items)
        except ConditionFailed as exc:
            self._mirror = None  # what is in the table is no longer known: Updates from now on
            reasons = exc.reasons
            if not reasons or reasons[0] == "ConditionalCheckFailed":
                self._lease.lose("another run took the lease over (a write was refused)")
                raise StateWriteError(f"lease lost: {self._lease.lost}") from exc
            changed = next(
                (a["Put"]["Item"]["sk"]["S"] for a, r in zip(actions, reasons[1:], strict=False)
                 if r == "ConditionalCheckFailed" and "Put" in a and _old_item(a)),
                None,
            )  # fmt: skip
            if changed is not None:
                why = f"{changed} was changed by another writer in {self.path}"
                raise JournalError(why) from exc
            writes = list(batch)
            culprit = next(
                (w.what for w, r in zip(writes, reasons[1:], strict=False)
                 if r == "ConditionalCheckFailed"),
                what,
            )  # fmt: skip
            raise JournalError(culprit) from exc
        except BaseException:
            self._mirror = None
            raise

    def _put(
        self,
        server_id: str,
        sets: Mapping[str, object],
        *,
        first: Mapping[str, object] | None = None,
        remove: Iterable[str] = (),
        bump: bool = False,
        create: bool,
    ) -> dict[str, Any] | None:
        """The write as a Put of the server's whole item, conditional on its revision; None when
        it must be an Update (the item is not known, or absent and `create` is False).

        `sets` are set, `first` set only where absent (if_not_exists), `remove` removed,
        `bump` adds one to the attempts.
        """
        self._server_writes += 1
        mirror = self._mirror
        if mirror is None:
            return None
        old = mirror.get(server_id)
        if old is None and not create:
            return None  # the Update's condition refuses it, naming the server
        item: Item = {"pk": self.scope, "sk": f"server#{server_id}"} if old is None else dict(old)
        for name, value in (first or {}).items():
            item.setdefault(name, value)
        if bump:
            item["attempts"] = int(item.get("attempts") or 0) + 1
        item.update(sets)
        for name in remove:
            item.pop(name, None)
        put: dict[str, Any] = {"TableName": self.table.name}
        if old is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        elif old.get("rev") is None:  # written by Updates (an older version): no revision yet
            put["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(#rev)"
            put["ExpressionAttributeNames"] = {"#rev": "rev"}
        else:
            put["ConditionExpression"] = "#rev = :rev"
            put["ExpressionAttributeNames"] = {"#rev": "rev"}
            put["ExpressionAttributeValues"] = {":rev": marshal(old["rev"])}
        item["rev"] = int(old.get("rev") or 0) + 1 if old is not None else 1
        put["Item"] = _item(item)
        mirror[server_id] = item
        return {"Put": put}

    def _update(
        self,
        server_id: str,
        expression: str,
        values: dict[str, object],
        *,
        condition: str | None = None,
    ) -> dict[str, Any]:
        names = {f"#{k}": v for k, v in _SERVER_NAMES.items() if f"#{k}" in expression}
        if condition:
            names.update({f"#{k}": v for k, v in _SERVER_NAMES.items() if f"#{k}" in condition})
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": key(self.scope, f"server#{server_id}"),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _values(values),
        }
        if condition:
            update["ConditionExpression"] = condition
        return {"Update": update}


_SCALARS = (str, int, float, bool, bytes, type(None))  # what unmarshal gives back as written
_ERROR = ("error_code", "error_message")

_STEP_NAMES = {
    "app": "application_id",
    "step": "step",
    "status": "status",
    "at": "at",
    "run": "run_id",
    "job": "job_id",
    "detail": "detail",
}
_SERVER_NAMES = {
    "app": "application_id",
    "status": "status",
    "attempts": "attempts",
    "intent_at": "intent_at",
    "finalized_at": "finalized_at",
    "converged_at": "converged_at",
    "code": "error_code",
    "message": "error_message",
    "run": "run_id",
}


def _old_item(action: Mapping[str, Any]) -> bool:
    """Whether a Put replaces an item it read (its condition is on the item's revision)."""
    return "rev" in action["Put"].get("ExpressionAttributeNames", {}).values()


def _entry(item: Item) -> JournalEntry:
    return JournalEntry(
        source_server_id=str(item["sk"]).removeprefix("server#"),
        application_id=str(item["application_id"]),
        status=str(item["status"]),
        attempts=int(item.get("attempts") or 0),
        intent_at=item.get("intent_at"),
        finalized_at=item.get("finalized_at"),
        converged_at=item.get("converged_at"),
        error_code=item.get("error_code"),
        error_message=item.get("error_message"),
        run_id=item.get("run_id"),
    )


def _values(values: Mapping[str, object]) -> dict[str, Any]:
    return {k: marshal(v) for k, v in values.items()}


def _item(values: Mapping[str, object]) -> dict[str, Any]:
    return _values(values)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
