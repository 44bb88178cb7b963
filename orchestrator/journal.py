"""The per-wave journal: what was sent to MGN for each server, durable before it is sent.

FinalizeCutover cannot be undone, so a run records its *intent* before each call and the outcome
after it; a rerun reads it to know which servers may already be finalizing. The journal lives in
`<root>/<wave>/journal.sqlite3` (folder 0700, file 0600), `<root>` being the MGN's folder of
`state_dir` (`state.state_root`).

A journal belongs to one MGN: its `meta` records the MGN scope (`aws`, or `rehearsal@host-port`
for an emulator) and the account and region of the runs that wrote it; `Journal.open` refuses one
written for another (JournalError, exit 2). A journal that records no MGN (written before it
did) belongs to real AWS.

Durability: WAL mode with `synchronous=NORMAL`. A committed record survives the process being
killed (SIGKILL included): it is in the WAL, which the next open replays. It may not survive a
power loss or kernel crash; we do not promise that.

Commits: outside a run (or with no `on_failure` to tell), one committed transaction per
`record_*` call. In a run (`on_failure` bound, on the event loop), commits are grouped, as the
DynamoDB journal groups them: an intent is still committed before `record_intent_soon` returns
(the intents of one turn of the loop share one transaction), while results (accepted, converged,
failed) are written behind, within `WRITE_BEHIND_S`, in the next transaction. A result lost to a
crash is safe: its intent is there, so the next run reads MGN before anything is sent again. A
result that cannot be written calls `on_failure` (the run stops, exit 5) and every later write
raises StateWriteError. Reads see every result recorded before them.

The journal stores server and application IDs, states, timestamps and MGN error codes and
messages; nothing passed to it is a credential, and nothing here may ever be given one.

A damaged or unknown journal is never replaced by a fresh one: `Journal.open` raises JournalError.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from orchestrator.errors import JournalError, StateWriteError
from orchestrator.files import ensure_private_dir, fsync_dir, wave_dir
from orchestrator.outcome import RunRecord, record_json, run_record_from_dict

log = structlog.get_logger(__name__)

WRITE_BEHIND_S = 0.05  # in a run, results are committed at most this long after they happen
MAX_BEHIND = 500  # ... or as soon as this many wait
SCHEMA_VERSION = (
    3  # 2: the night's steps (launch, revert, archive) and approvals; 3: approvals name their run
)
AWS_SCOPE = "aws"  # the MGN of a journal that records none: real AWS
JOURNAL_FILE = "journal.sqlite3"
MAX_MESSAGE_CHARS = 500
_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = frozenset({"meta", "servers", "runs"})  # version 1; version 2 adds _STEP_TABLES

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE servers (
    source_server_id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('intent', 'accepted', 'converged', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    intent_at TEXT,
    finalized_at TEXT,
    converged_at TEXT,
    error_code TEXT,
    error_message TEXT,
    run_id TEXT
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    dry_run INTEGER NOT NULL,
    pid INTEGER,
    host TEXT,
    exit_code INTEGER,
    interrupted INTEGER,
    record_json TEXT
);
"""

# Version 2: one row per (server, step) of the night, and one approval per application.
_STEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    source_server_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    step TEXT NOT NULL CHECK (step IN ('launch', 'approval', 'revert', 'archive')),
    status TEXT NOT NULL CHECK (status IN ('intent', 'accepted', 'done', 'failed')),
    job_id TEXT,
    detail TEXT,
    at TEXT NOT NULL,
    run_id TEXT,
    PRIMARY KEY (source_server_id, step)
);
CREATE TABLE IF NOT EXISTS approvals (
    application_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    PRIMARY KEY (application_id, run_id)
);
"""
# Version 3: an approval names the run it approves; a version 2 approval named none, so it is
# kept with run_id '' (history) and approves no run.
_APPROVALS_V3 = """
ALTER TABLE approvals RENAME TO approvals_v2;
CREATE TABLE approvals (
    application_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    PRIMARY KEY (application_id, run_id)
);
INSERT INTO approvals SELECT application_id, '', approved_by, approved_at FROM approvals_v2;
DROP TABLE approvals_v2;
"""
_STEP_TABLES = frozenset({"steps", "approvals"})

_ENTRY_COLUMNS = (
    "source_server_id, application_id, status, attempts, intent_at, finalized_at, "
    "converged_at, error_code, error_message, run_id"
)


@dataclass(frozen=True)
class JournalEntry:
    """One server's journaled state. Times are ISO 8601 UTC strings."""

    source_server_id: str
    application_id: str
    status: str  # "intent" | "accepted" | "converged" | "failed"
    attempts: int  # FinalizeCutover attempts sent, over all runs
    intent_at: str | None  # the most recent intent
    finalized_at: str | None  # first time a FinalizeCutover was accepted or confirmed done
    converged_at: str | None  # first time MGN showed CUTOVER + DISCONNECTED
    error_code: str | None
    error_message: str | None
    run_id: str | None  # run that last touched it


@dataclass(frozen=True)
class JournalOwner:
    """The MGN a journal describes: its scope (`aws`, `rehearsal@host-port`) and, for a run,
    the wave's account and region (None: not checked, not recorded)."""

    scope: str
    account_id: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class StepEntry:
    """One step of the night for one server, as journaled."""

    status: str  # intent | accepted | done | failed
    job_id: str | None
    detail: str | None
    at: str
    run_id: str | None


class Journal:
    """One wave's journal, open on one SQLite connection; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, wave: str) -> None:
        self._conn = conn
        self._mutex = threading.Lock()
        self.path = path
        self.wave = wave
        # Set by a run (state.RunStateStore.bind): commits are then grouped (module docstring).
        self.on_failure: Callable[[str], None] | None = None
        self._behind: list[Callable[[sqlite3.Cursor], None]] = []  # results not yet committed
        self._flush_at: asyncio.TimerHandle | None = None
        self._intents: list[tuple[Callable[[sqlite3.Cursor], None], asyncio.Future[None]]] = []
        self._intents_due = False
        self._failed: StateWriteError | None = None
        self.commits = 0  # write transactions committed (benchmarks count them)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        wave: str,
        *,
        create: bool = True,
        owner: JournalOwner | None = None,
    ) -> Journal:
        """Open the wave's journal, creating it (atomically, schema included) if allowed.

        `owner` is the MGN the caller talks to (`state` always gives it): the journal must
        belong to it, and records it (its account and region too, when given). Without one
        nothing is checked, and a new journal belongs to real AWS.

        Raises JournalError if the wave folder would fall outside state_dir, the file is not a
        sound journal (not SQLite, damaged, tables missing), was written by a newer schema,
        belongs to another wave or another MGN (endpoint, account or region), or does not exist
        and create is False.
        """
        try:
            folder = wave_dir(state_dir, wave)
        except ValueError as exc:
            raise JournalError(f"refusing journal path: {exc}") from exc
        path = folder / JOURNAL_FILE
        if not create and not path.exists():
            raise JournalError(f"no journal for wave {wave!r} at {path}")
        try:
            if create:
                ensure_private_dir(folder)
                if not path.exists():
                    _create(path, wave, owner or JournalOwner(AWS_SCOPE))
            if path.stat().st_mode & 0o777 != 0o600:
                path.chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot create or secure journal {path}: {exc}") from exc
        _check_header(path)
        try:
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        try:
            version = _check_journal(conn, path, wave)
            if owner is not None:
                _check_owner(conn, path, owner)
            _configure(conn, path)
            if version < SCHEMA_VERSION:
                _upgrade(conn, version)
            if owner is not None:
                _claim(conn, owner, create)
        except sqlite3.Error as exc:
            conn.close()
            raise _damaged(path, str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, wave)

    def close(self) -> None:
        """Commit what is written behind (a failure is logged: the run has reported it), then
        close the connection; further calls raise JournalError."""
        self.flush()
        with self._mutex:
            self._conn.close()

    def flush(self) -> None:
        """Commit every result written behind now; never raises (a failure goes to
        `on_failure`, and later writes raise StateWriteError)."""
        handle, self._flush_at = self._flush_at, None
        if handle is not None:
            handle.cancel()
        if not self._behind or self._failed is not None:
            return
        try:
            with self._tx():
                pass  # _tx commits the results written behind first
        except (StateWriteError, JournalError) as err:
            log.error("journal_write_failed", error=str(err))

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def entries(self) -> dict[str, JournalEntry]:
        """Every journaled server, by source server ID. Raises JournalError on a read failure."""
        with self._tx(write=False) as cur:
            rows = cur.execute(f"SELECT {_ENTRY_COLUMNS} FROM servers ORDER BY 1").fetchall()
        return {row[0]: JournalEntry(*row) for row in rows}

    def entry(self, server_id: str) -> JournalEntry | None:
        """One server's entry, or None if never journaled. Raises JournalError on a read failure."""
        with self._tx(write=False) as cur:
            sql = f"SELECT {_ENTRY_COLUMNS} FROM servers WHERE source_server_id = ?"
            row = cur.execute(sql, (server_id,)).fetchone()
        return None if row is None else JournalEntry(*row)

    def record_intent(self, server_id: str, application_id: str, *, at: str, run_id: str) -> None:
        """Record, durably, that a FinalizeCutover is about to be sent; counts the attempt.

        Keeps finalized_at and converged_at from earlier records, so an earlier acceptance stays
        visible. Raises JournalError if the write fails: the caller must then not send.
        """
        with self._tx() as cur:
            _intent(cur, server_id, application_id, at, run_id)

    async def record_intent_soon(
        self, server_id: str, application_id: str, *, at: str, run_id: str
    ) -> None:
        """`record_intent` for a caller on the event loop; in a run, the intents of one turn of
        the loop are committed together. Committed on return; raises StateWriteError as
        record_intent does (the caller must then not send)."""
        if self.on_failure is None:
            self.record_intent(server_id, application_id, at=at, run_id=run_id)
            return
        self._raise_failed()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._intents.append(
            (lambda cur: _intent(cur, server_id, application_id, at, run_id), done)
        )
        if not self._intents_due:
            self._intents_due = True
            loop.call_soon(self._commit_intents)
        await done

    def _commit_intents(self) -> None:
        batch, self._intents, self._intents_due = self._intents, [], False
        try:
            with self._tx() as cur:
                for write, _ in batch:
                    write(cur)
        except (StateWriteError, JournalError) as err:
            for _, done in batch:
                if not done.done():
                    done.set_exception(StateWriteError(str(err)))
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    def record_accepted(self, server_id: str, *, at: str, run_id: str) -> None:
        """Record that MGN accepted (or already had) the finalize; keeps the first finalized_at.

        Raises JournalError if the server has no entry (no intent was recorded) or the write fails.
        """

        def write(cur: sqlite3.Cursor) -> None:
            cur.execute(
                "UPDATE servers SET status = 'accepted', finalized_at = COALESCE(finalized_at, ?),"
                " error_code = NULL, error_message = NULL, run_id = ? WHERE source_server_id = ?",
                (at, run_id, server_id),
            )
            if cur.rowcount == 0:
                raise JournalError(f"no intent journaled for server {server_id} in {self.path}")

        self._result(write)

    def record_converged(
        self,
        server_id: str,
        *,
        at: str,
        run_id: str,
        application_id: str | None = None,
        finalized: bool = False,
    ) -> None:
        """Record that MGN shows the server CUTOVER + DISCONNECTED; keeps the first converged_at.

        `finalized`: the finalize was ours (sets finalized_at if it was never recorded, e.g.
        after an ambiguous call). Creates the entry (zero attempts) for a server found already
        cut over. Raises JournalError if the entry is missing and no application_id is given,
        StateWriteError if the write fails.
        """

        def write(cur: sqlite3.Cursor) -> None:
            cur.execute(
                "UPDATE servers SET status = 'converged', converged_at = COALESCE(converged_at, ?),"
                " finalized_at = CASE WHEN ? THEN COALESCE(finalized_at, ?) ELSE finalized_at END,"
                " application_id = COALESCE(?, application_id), error_code = NULL,"
                " error_message = NULL, run_id = ? WHERE source_server_id = ?",
                (at, int(finalized), at, application_id, run_id, server_id),
            )
            if cur.rowcount == 0:
                if application_id is None:
                    raise JournalError(f"server {server_id} is not in journal {self.path}")
                cur.execute(
                    "INSERT INTO servers (source_server_id, application_id, status, converged_at,"
                    " run_id) VALUES (?, ?, 'converged', ?, ?)",
                    (server_id, application_id, at, run_id),
                )

        self._result(write)

    def record_failed(self, server_id: str, *, code: str, message: str, run_id: str) -> None:
        """Record a failure with MGN's error; keeps attempts, finalized_at and converged_at.

        The entry keeps no failure time (that is in the run's log and report); the message is
        cut to about 500 characters. Raises JournalError if the server has no entry,
        StateWriteError if the write fails.
        """

        def write(cur: sqlite3.Cursor) -> None:
            cur.execute(
                "UPDATE servers SET status = 'failed', error_code = ?, error_message = ?,"
                " run_id = ? WHERE source_server_id = ?",
                (_truncate(code, 100), _truncate(message, MAX_MESSAGE_CHARS), run_id, server_id),
            )
            if cur.rowcount == 0:
                raise JournalError(f"server {server_id} is not in journal {self.path}")

        self._result(write)

    def start_run(
        self, run_id: str, *, started_at: str, dry_run: bool, pid: int, host: str
    ) -> None:
        """Record that a run started. Raises JournalError if run_id exists or the write fails."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, started_at, dry_run, pid, host) VALUES (?, ?, ?, ?, ?)",
                (run_id, started_at, int(dry_run), pid, host),
            )

    def finish_run(self, run_id: str, record: RunRecord) -> None:
        """Store the finished run's whole record for `mgn-cutover report`.

        Config values that are not JSON types (a Path) are stored, and read back, as strings.

        Raises JournalError if the run was never started, the record is for another wave, or
        the write fails.
        """
        if record.wave != self.wave:
            raise JournalError(f"run record of wave {record.wave!r} in journal of {self.wave!r}")
        data = record_json(record)
        with self._tx() as cur:
            cur.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, interrupted = ?, record_json = ?"
                " WHERE run_id = ?",
                (record.finished_at, record.exit_code, int(record.interrupted), data, run_id),
            )
            if cur.rowcount == 0:
                raise JournalError(f"run {run_id} was never started in {self.path}")

    def last_run_record(self) -> RunRecord | None:
        """The wave's record: the most recently finished real run's, or while the wave has
        never really run, the latest dry run's; None if no run finished.

        Raises JournalError if the stored record cannot be read back.
        """
        with self._tx(write=False) as cur:
            row = cur.execute(
                "SELECT run_id, record_json FROM runs WHERE record_json IS NOT NULL"
                " ORDER BY dry_run ASC, finished_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        try:
            return run_record_from_dict(json.loads(row[1]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise JournalError(f"run {row[0]} in {self.path} has an unreadable record") from exc

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
        """Record one step of the night for a server (launch, revert, archive): its intent
        before the call, its result after. A job ID, once known, is kept.

        Raises StateWriteError if the write fails: for an intent, the caller must not send.
        """
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO steps (source_server_id, application_id, step, status, job_id,"
                " detail, at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (source_server_id, step) DO UPDATE SET status = excluded.status,"
                " job_id = COALESCE(excluded.job_id, job_id), detail = excluded.detail,"
                " at = excluded.at, run_id = excluded.run_id",
                (
                    server_id,
                    application_id,
                    step,
                    status,
                    job_id,
                    None if detail is None else _truncate(detail, MAX_MESSAGE_CHARS),
                    at,
                    run_id,
                ),
            )

    def steps(self) -> dict[str, dict[str, StepEntry]]:
        """Every recorded step: {server: {step: entry}}. Raises JournalError on a read failure."""
        with self._tx(write=False) as cur:
            rows = cur.execute(
                "SELECT source_server_id, step, status, job_id, detail, at, run_id FROM steps"
            ).fetchall()
        out: dict[str, dict[str, StepEntry]] = {}
        for sid, step, status, job_id, detail, at, run_id in rows:
            out.setdefault(sid, {})[step] = StepEntry(status, job_id, detail, at, run_id)
        return out

    def record_approval(self, application_id: str, *, run_id: str, by: str, at: str) -> None:
        """Record that `by` approved finalizing an application in run `run_id` (the first
        approval of that run stands).

        Raises StateWriteError if the write fails.
        """
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO approvals (application_id, run_id, approved_by, approved_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (application_id, run_id) DO NOTHING",
                (application_id, run_id, _truncate(by, 200), at),
            )

    def approvals(self, run_id: str) -> dict[str, tuple[str, str]]:
        """{application: (approved by, at)} of run `run_id` alone. Raises JournalError on a
        read failure."""
        with self._tx(write=False) as cur:
            rows = cur.execute(
                "SELECT application_id, approved_by, approved_at FROM approvals WHERE run_id = ?",
                (run_id,),
            ).fetchall()
        return {app: (by, at) for app, by, at in rows}

    def run_record(self, run_id: str) -> RunRecord | None:
        """The record of the finished run whose ID is or starts with `run_id` (at least 6
        characters), or None. Raises JournalError if it is ambiguous or cannot be read back."""
        with self._tx(write=False) as cur:
            rows = cur.execute(
                "SELECT run_id, record_json FROM runs WHERE record_json IS NOT NULL"
                " AND substr(run_id, 1, length(?)) = ? ORDER BY finished_at DESC",
                (run_id, run_id),
            ).fetchall()
        if not rows or len(run_id) < 6:
            return None
        if len(rows) > 1:
            ids = ", ".join(r[0] for r in rows[:5])
            raise JournalError(f"run {run_id!r} is ambiguous in {self.path}: {ids}")
        try:
            return run_record_from_dict(json.loads(rows[0][1]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise JournalError(f"run {rows[0][0]} in {self.path} has an unreadable record") from exc

    def _result(self, write: Callable[[sqlite3.Cursor], None]) -> None:
        """A result: in a run on the event loop, written behind; else committed at once."""
        self._raise_failed()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.on_failure is None:
            with self._tx() as cur:
                write(cur)
            return
        self._behind.append(write)
        if len(self._behind) >= MAX_BEHIND:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = loop.call_later(WRITE_BEHIND_S, self.flush)

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise StateWriteError(f"an earlier journal write failed: {self._failed}")

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Cursor]:
        """One committed transaction; sqlite errors become JournalError, nothing half-written.
        A write commits the results written behind first, in the same transaction; a read
        commits them before it reads."""
        if not write and self._behind and self._failed is None:
            self.flush()
        error = StateWriteError if write else JournalError
        behind: list[Callable[[sqlite3.Cursor], None]] = []
        with self._mutex:
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                self._lost_behind(behind, exc)
                raise error(f"journal {self.path}: {exc}") from exc
            try:
                if write and self._failed is None:
                    behind, self._behind = self._behind, []
                    for earlier in behind:
                        earlier(cur)
                yield cur
                cur.execute("COMMIT")
                self.commits += write
            except sqlite3.Error as exc:
                self._rollback()
                self._lost_behind(behind, exc)
                raise error(f"journal {self.path}: {exc}") from exc
            except BaseException as exc:
                self._rollback()
                self._lost_behind(behind, exc)
                raise
            finally:
                cur.close()

    def _lost_behind(
        self, behind: list[Callable[[sqlite3.Cursor], None]], exc: BaseException
    ) -> None:
        """Results written behind were rolled back with a failed transaction: tell the run."""
        lost = len(behind) + len(self._behind)
        self._behind = []
        if not lost or self._failed is not None:
            return
        self._failed = StateWriteError(f"journal {self.path}: {lost} results not written: {exc}")
        if self.on_failure is not None:
            self.on_failure(str(self._failed))

    def _rollback(self) -> None:
        # The original error matters more than a failed rollback (e.g. the connection is closed).
        with suppress(sqlite3.Error):
            self._conn.rollback()


def _intent(cur: sqlite3.Cursor, server_id: str, application_id: str, at: str, run_id: str) -> None:
    cur.execute(
        "INSERT INTO servers (source_server_id, application_id, status, attempts,"
        " intent_at, run_id) VALUES (?, ?, 'intent', 1, ?, ?)"
        " ON CONFLICT (source_server_id) DO UPDATE SET"
        " application_id = excluded.application_id, status = 'intent',"
        " attempts = attempts + 1, intent_at = excluded.intent_at,"
        " error_code = NULL, error_message = NULL, run_id = excluded.run_id",
        (server_id, application_id, at, run_id),
    )


def _create(path: Path, wave: str, owner: JournalOwner) -> None:
    """Build a complete journal in a temp file, then link it into place: never a half journal."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(_SCHEMA + _STEPS_SCHEMA)
            meta = [("schema_version", str(SCHEMA_VERSION)), ("wave", wave)]
            meta.append(("mgn_scope", owner.scope))  # born belonging to its MGN
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta)
        finally:
            conn.close()
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        with suppress(FileExistsError):  # another process created it meanwhile: use theirs
            os.link(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all, with a message that says so."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc}") from exc
    if head != _SQLITE_MAGIC:
        raise _damaged(path, "the file is empty" if not head else "not an SQLite database")


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Version 1 -> 3: add the steps and approvals tables; 2 -> 3: approvals gain their run.
    In one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        script = _STEPS_SCHEMA if version < 2 else _APPROVALS_V3
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_journal(conn: sqlite3.Connection, path: Path, wave: str) -> int:
    """Check integrity, schema version, wave and tables, in that order; return the version."""
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise _damaged(path, f"integrity check: {'; '.join(problems[:5])}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        raise _damaged(path, "no meta table (not an mgn-cutover journal?)")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    version = meta.get("schema_version")
    if version is None or not str(version).isdigit():
        raise JournalError(f"journal {path} has no valid schema_version ({version!r})")
    if int(version) > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}, newer than version {SCHEMA_VERSION} "
            "that this mgn-cutover understands: upgrade mgn-cutover"
        )
    if meta.get("wave") != wave:
        raise JournalError(f"journal {path} belongs to wave {meta.get('wave')!r}, not {wave!r}")
    needed = _TABLES | (_STEP_TABLES if int(version) >= 2 else frozenset())
    missing = sorted(needed - tables)
    if missing:
        raise _damaged(path, f"missing tables: {', '.join(missing)}")
    return int(version)


def _check_owner(conn: sqlite3.Connection, path: Path, owner: JournalOwner) -> None:
    """Refuse a journal that records another MGN (endpoint scope, account or region)."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    recorded = {
        "mgn_scope": meta.get("mgn_scope", AWS_SCOPE),  # none recorded: written for real AWS
        "account_id": meta.get("account_id"),
        "region": meta.get("region"),
    }
    wanted = {"mgn_scope": owner.scope, "account_id": owner.account_id, "region": owner.region}
    labels = {"mgn_scope": "MGN", "account_id": "account", "region": "region"}
    for name, value in wanted.items():
        if value is not None and recorded[name] is not None and recorded[name] != value:
            raise JournalError(
                f"journal {path} was written for {labels[name]} {recorded[name]}, not {value}: "
                "it is never trusted for another MGN; use another state_dir (or move the "
                "folder aside if that MGN is gone)"
            )


def _claim(conn: sqlite3.Connection, owner: JournalOwner, create: bool) -> None:
    """Record the journal's MGN where it records none yet (a run, or a journal created now);
    a read-only open writes nothing."""
    if not create:
        return
    rows = [("mgn_scope", owner.scope), ("account_id", owner.account_id), ("region", owner.region)]
    conn.executemany(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
        [(k, v) for k, v in rows if v is not None],
    )


def _damaged(path: Path, why: str) -> JournalError:
    return JournalError(
        f"journal {path} is damaged ({why}); refusing to start afresh, since it may record "
        "finalizes in flight: keep the file, check those servers in MGN, then move it aside"
    )


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise JournalError(f"journal {path}: the filesystem does not support WAL mode ({mode})")
    conn.execute("PRAGMA synchronous = NORMAL")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
