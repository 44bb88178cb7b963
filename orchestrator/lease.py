"""One run per wave across hosts: the lock as a lease on a DynamoDB item, with a fencing token.

The lease is the item (`scope#<account>#<region>#<wave>`, `lease`). Taking it is one conditional
UpdateItem: it succeeds only if the item is absent, released, or expired (`expires_at`, epoch
seconds, is in the past by the taker's clock); it bumps `token` and records the holder (host,
pid, run ID, start, command) for the exit-3 message. A heartbeat thread renews it every
`heartbeat_s` (conditional on the token), and `release` expires it at the end.

Fencing: every journal write is a transaction whose first action is `fence()`, a ConditionCheck
that the lease's token is still ours. A holder that lost its lease (another host took it after it
expired) can write nothing, and since the ledger journals the intent before every
FinalizeCutover, it can send nothing either. Clocks only decide *when* another host may take
over; the token alone decides whose writes count.

A paused or starved holder also stops itself: once its lease's local deadline (the start of its
last successful renewal + `lease_s`, on the monotonic clock) has passed, `fence()` refuses and the
heartbeat declares the lease lost, without trying to renew it, whether or not anyone took over.
`on_lost(why)` is told once, from whichever thread noticed.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from orchestrator.dynamo import ConditionFailed, Table, key
from orchestrator.errors import LockedError, StateWriteError

log = structlog.get_logger(__name__)

LEASE_SK = "lease"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds (or last held) a wave's lease, as the item records it."""

    pid: int
    host: str
    run_id: str
    started_at: str
    command: str
    token: int
    expires_at: float


class Lease:
    """A wave's lease; `acquire` and `release`, or use as a context manager."""

    def __init__(
        self,
        table: Table,
        scope: str,
        wave: str,
        *,
        run_id: str,
        lease_s: float,
        heartbeat_s: float,
        command: str | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        now_iso: Callable[[], str] = _utc_now,
    ) -> None:
        self.table = table
        self.scope = scope
        self.wave = wave
        self.run_id = run_id
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self._command = command if command is not None else shlex.join(sys.argv)[:500]
        self._wall, self._mono, self._now_iso = wall, mono, now_iso
        self.token: int | None = None
        self.lost: str | None = None
        self._valid_until = 0.0
        self._on_lost: Callable[[str], None] | None = None
        self._lost_told = threading.Lock()
        self._stopping = threading.Event()
        self._beat: threading.Thread | None = None

    # -- taking and giving back ---------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease at once, or raise LockedError naming the holder.

        Raises StateWriteError if the table cannot be reached, RuntimeError if already held.
        """
        if self.token is not None:
            raise RuntimeError(f"wave {self.wave} lease is already held by this Lease")
        started = self._mono()
        now = self._wall()
        values = {
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":now": {"N": repr(now)},
            ":exp": {"N": repr(now + self.lease_s)},
            ":host": {"S": socket.gethostname()},
            ":pid": {"N": str(os.getpid())},
            ":run": {"S": self.run_id},
            ":started": {"S": self._now_iso()},
            ":cmd": {"S": self._command},
            ":wave": {"S": self.wave},
        }
        try:
            out = self.table.call(
                "UpdateItem",
                TableName=self.table.name,
                Key=key(self.scope, LEASE_SK),
                UpdateExpression=(
                    "SET #token = if_not_exists(#token, :zero) + :one, #host = :host, #pid = :pid,"
                    " #run = :run, #started = :started, #cmd = :cmd, #exp = :exp, #wave = :wave"
                    " REMOVE #released"
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR attribute_exists(#released) OR #exp < :now"
                ),
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ConditionFailed:
            raise LockedError(self._locked_message(self.holder())) from None
        old = out.get("Attributes") or {}
        previous = int(old["token"]["N"]) if "token" in old else 0
        self.token = previous + 1
        self._valid_until = started + self.lease_s
        if old and "released_at" not in old:
            # Not released: the last holder died or was cut off, and its lease ran out.
            log.warning(
                "wave_lock_taken_over",
                wave=self.wave,
                host=old.get("host", {}).get("S"),
                pid=old.get("pid", {}).get("N"),
                run_id=old.get("run_id", {}).get("S"),
                token=self.token,
            )

    def release(self) -> None:
        """Stop the heartbeat and expire the lease (if still ours); a no-op if not held."""
        self.stop_heartbeat()
        token, self.token = self.token, None
        if token is None or self.lost is not None:
            return
        try:
            self.table.call(
                "UpdateItem",
                TableName=self.table.name,
                Key=key(self.scope, LEASE_SK),
                UpdateExpression="SET #exp = :zero, #released = :now",
                ConditionExpression="#token = :token",
                ExpressionAttributeNames=_names("#exp", "#released", "#token"),
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":now": {"S": self._now_iso()},
                    ":token": {"N": str(token)},
                },
            )
        except ConditionFailed:
            log.warning("lease_release_refused", wave=self.wave, reason="another run holds it")
        except StateWriteError as err:  # it expires on its own
            log.warning("lease_release_failed", wave=self.wave, error=str(err))

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- keeping it -----------------------------------------------------------------------------

    def renew(self) -> None:
        """Push the expiry `lease_s` ahead, if the token is still ours.

        Raises ConditionFailed if another run took the lease, StateWriteError if DynamoDB
        could not be reached.
        """
        if self.token is None:
            raise RuntimeError(f"wave {self.wave} lease is not held")
        started = self._mono()
        self.table.call(
            "UpdateItem",
            TableName=self.table.name,
            Key=key(self.scope, LEASE_SK),
            UpdateExpression="SET #exp = :exp",
            ConditionExpression="#token = :token",
            ExpressionAttributeNames=_names("#exp", "#token"),
            ExpressionAttributeValues={
                ":exp": {"N": repr(self._wall() + self.lease_s)},
                ":token": {"N": str(self.token)},
            },
        )
        self._valid_until = max(self._valid_until, started + self.lease_s)

    def heartbeat_once(self) -> bool:
        """One heartbeat: renew, or declare the lease lost. Returns False once it is lost."""
        if self.lost is not None:
            return False
        if self._mono() >= self._valid_until:
            self.lose("its lease expired before it was renewed (paused, starved or cut off)")
            return False
        try:
            self.renew()
        except ConditionFailed:
            self.lose("another run took the lease over")
            return False
        except StateWriteError as err:
            log.warning("lease_renew_failed", wave=self.wave, error=str(err))
        return True

    def start_heartbeat(self) -> None:
        """Renew every `heartbeat_s` in a daemon thread until `stop_heartbeat` or loss."""
        self._stopping.clear()

        def beat() -> None:
            while not self._stopping.wait(self.heartbeat_s):
                if not self.heartbeat_once():
                    return

        self._beat = threading.Thread(target=beat, name=f"lease-{self.wave}", daemon=True)
        self._beat.start()

    def stop_heartbeat(self) -> None:
        self._stopping.set()
        beat, self._beat = self._beat, None
        if beat is not None and beat is not threading.current_thread():
            beat.join(timeout=10)

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Tell `callback(why)` once when the lease is lost (now, if it already is)."""
        self._on_lost = callback
        if self.lost is not None:
            callback(self.lost)

    def lose(self, why: str) -> None:
        """Record that the lease is lost; nothing more may be written under it."""
        with self._lost_told:
            if self.lost is not None:
                return
            self.lost = why
        log.error("lease_lost", wave=self.wave, reason=why, token=self.token)
        if self._on_lost is not None:
            self._on_lost(why)

    # -- fencing --------------------------------------------------------------------------------

    def fence(self) -> dict[str, Any]:
        """The ConditionCheck that leads every journal transaction: our token still holds.

        Raises StateWriteError when the lease is lost, or its local deadline has passed.
        """
        if self.lost is None and self.token is not None and self._mono() >= self._valid_until:
            self.lose("its lease expired before it was renewed (paused, starved or cut off)")
        if self.lost is not None or self.token is None:
            raise StateWriteError(f"lease lost: {self.lost or 'not held'}")
        return {
            "ConditionCheck": {
                "TableName": self.table.name,
                "Key": key(self.scope, LEASE_SK),
                "ConditionExpression": "#token = :token",
                "ExpressionAttributeNames": {"#token": "token"},
                "ExpressionAttributeValues": {":token": {"N": str(self.token)}},
            }
        }

    # -- who holds it ---------------------------------------------------------------------------

    def holder(self) -> LeaseHolder | None:
        """The holder the item records, or None if there is no usable record."""
        item = self.table.get(self.scope, LEASE_SK)
        if item is None:
            return None
        try:
            return LeaseHolder(
                pid=int(item["pid"]),
                host=str(item["host"]),
                run_id=str(item["run_id"]),
                started_at=str(item["started_at"]),
                command=str(item["command"]),
                token=int(item["token"]),
                expires_at=float(item["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _locked_message(self, found: LeaseHolder | None) -> str:
        if found is None:
            return f"wave {self.wave} is locked by an unknown holder (table {self.table.name})"
        left_s = max(0.0, found.expires_at - self._wall())
        return (
            f"wave {self.wave} is locked by pid {found.pid} on host {found.host} "
            f"since {found.started_at} (run {found.run_id}, command {found.command}); its lease "
            f"in table {self.table.name} expires in {left_s:.0f} s unless renewed"
        )


_NAMES = {
    "#token": "token",
    "#host": "host",
    "#pid": "pid",
    "#run": "run_id",
    "#started": "started_at",
    "#cmd": "command",
    "#exp": "expires_at",
    "#wave": "wave",
    "#released": "released_at",
}


def _names(*placeholders: str) -> dict[str, str]:
    return {p: _NAMES[p] for p in placeholders}
