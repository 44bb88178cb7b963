"""One run per wave at a time: an exclusive `flock` on `<state_dir>/<wave>/run.lock`.

The kernel releases a flock when its holder dies, however it dies, so a lock left by a crashed or
SIGKILLed run is simply taken over; the holder JSON in the file is only for messages. The file is
never deleted (unlinking a lock file lets two processes lock two different inodes).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import structlog

from orchestrator.errors import LockedError
from orchestrator.files import ensure_private_dir, wave_dir

LOCK_FILE = "run.lock"
_MAX_HOLDER_BYTES = 4096

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a wave's lock, as the holder wrote it."""

    pid: int
    host: str
    started_at: str
    command: str
    run_id: str | None = None  # None: written by a version that did not record it


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class WaveLock:
    """An exclusive, non-blocking lock on one wave; use as a context manager."""

    def __init__(
        self,
        state_dir: Path,
        wave: str,
        *,
        command: str | None = None,
        clock: Callable[[], str] = _utc_now,
        run_id: str | None = None,
    ) -> None:
        """Raises ValueError if the wave's folder would resolve outside state_dir."""
        self.wave = wave
        self.folder = wave_dir(state_dir, wave)
        self.path = self.folder / LOCK_FILE
        self._command = command if command is not None else shlex.join(sys.argv)[:500]
        self._clock = clock
        self._run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once and record this process as its holder.

        Raises LockedError, naming the holder, if another process holds it; RuntimeError if this
        object already holds it; OSError if the lock file cannot be created or written.
        """
        if self._fd is not None:
            raise RuntimeError(f"wave {self.wave} lock is already held by this WaveLock")
        ensure_private_dir(self.folder)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise LockedError(self._locked_message(_read_holder_soon(fd))) from None
            previous = _read_holder(fd)
            if previous is not None:
                # A clean release empties the file: content means the last holder died.
                log.warning("wave_lock_taken_over", wave=self.wave, **asdict(previous))
            os.fchmod(fd, 0o600)
            me = LockHolder(
                os.getpid(), socket.gethostname(), self._clock(), self._command, self._run_id
            )
            _write_holder(fd, me)
        except BaseException:
            os.close(fd)  # closing drops the flock too, if we got it
            raise
        self._fd = fd

    def release(self) -> None:
        """Empty the holder record and drop the lock; a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> WaveLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _locked_message(self, found: LockHolder | None) -> str:
        if found is None:
            return (
                f"wave {self.wave} is locked by an unknown holder "
                f"(lock file {self.path} is empty or unreadable)"
            )
        text = (
            f"wave {self.wave} is locked by pid {found.pid} on host {found.host} "
            f"since {found.started_at} (command {found.command})"
        )
        if found.host == socket.gethostname() and not _alive(found.pid):
            text += (
                f"; pid {found.pid} is no longer running, yet the lock is still held, likely by"
                f" a child process that inherited it: find it with `fuser {self.path}`"
            )
        return text


def holder_of(state_dir: Path, wave: str) -> LockHolder | None:
    """The holder a wave's lock file records, read without locking it (so as never to get in a
    run's way); None if there is none (a clean release empties it) or it cannot be read."""
    try:
        path = wave_dir(state_dir, wave) / LOCK_FILE
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (OSError, ValueError):
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


def holder_alive(holder: LockHolder) -> bool:
    """Whether the holder may still be running: alive on this host, or on another host (which
    cannot be checked from here)."""
    return holder.host != socket.gethostname() or _alive(holder.pid)


def _read_holder_soon(fd: int, wait_s: float = 1.0) -> LockHolder | None:
    """The holder record, allowing a holder that has just taken the lock time to write it."""
    deadline = time.monotonic() + wait_s
    while (found := _read_holder(fd)) is None and time.monotonic() < deadline:
        time.sleep(0.02)  # two runs started together: the winner writes within milliseconds
    return found


def _read_holder(fd: int) -> LockHolder | None:
    """The holder JSON in the lock file, or None if it is empty or garbled."""
    raw = os.pread(fd, _MAX_HOLDER_BYTES, 0)
    try:
        data = json.loads(raw)
        holder = LockHolder(
            pid=data["pid"],
            host=data["host"],
            started_at=data["started_at"],
            command=data["command"],
            run_id=data.get("run_id"),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    types_ok = isinstance(holder.pid, int) and not isinstance(holder.pid, bool)
    strings_ok = all(isinstance(v, str) for v in (holder.host, holder.started_at, holder.command))
    strings_ok = strings_ok and isinstance(holder.run_id, str | None)
    return holder if types_ok and strings_ok and holder.pid > 0 else None


def _write_holder(fd: int, holder: LockHolder) -> None:
    data = json.dumps(asdict(holder)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True
