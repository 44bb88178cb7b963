"""The wave lock: one holder at a time, takeover after a crash, clear messages."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.errors import LockedError
from orchestrator.lock import LOCK_FILE, LockHolder, WaveLock

WAVE = "wave-1"
STARTED = "2025-03-01T10:00:00Z"
REPO = Path(__file__).resolve().parent.parent


def fixed_clock() -> str:
    return STARTED


def recorded(lock: WaveLock) -> LockHolder | None:
    """The holder the lock file records (None when it is empty: released cleanly)."""
    text = lock.path.read_text()
    return LockHolder(**json.loads(text)) if text else None


@contextmanager
def holder_process(state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the wave's lock until it is killed or its stdin closes."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from orchestrator.lock import WaveLock
        lock = WaveLock(Path({str(state_dir)!r}), {WAVE!r}, command="mgn-cutover run",
                        clock=lambda: {STARTED!r})
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_second_acquire_from_another_process_fails_at_once(tmp_path: Path) -> None:
    """While another process holds the lock, acquire raises LockedError naming pid, host, time."""
    with holder_process(tmp_path) as proc:
        lock = WaveLock(tmp_path, WAVE)
        with pytest.raises(LockedError) as info:
            lock.acquire()
        assert recorded(lock) == LockHolder(
            proc.pid, socket.gethostname(), STARTED, "mgn-cutover run"
        )
    message = str(info.value)
    assert f"wave {WAVE} is locked by pid {proc.pid} on host {socket.gethostname()}" in message
    assert f"since {STARTED} (command mgn-cutover run)" in message


def test_lock_of_a_sigkilled_process_is_taken_over(tmp_path: Path) -> None:
    """After the holder is SIGKILLed, acquire succeeds and records the new holder."""
    with holder_process(tmp_path) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    lock = WaveLock(tmp_path, WAVE, command="mgn-cutover run", clock=fixed_clock)
    with lock:
        assert recorded(lock) == LockHolder(
            os.getpid(), socket.gethostname(), STARTED, "mgn-cutover run"
        )


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"pid": "12"}', b"\xff\xfe", b"[1, 2]"])
def test_garbled_holder_file_says_unknown_holder(tmp_path: Path, content: bytes) -> None:
    """A held lock whose file is empty or garbled raises LockedError saying "unknown holder"."""
    path = tmp_path / WAVE / LOCK_FILE
    path.parent.mkdir()
    path.write_bytes(content)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockedError, match="unknown holder"):
            WaveLock(tmp_path, WAVE).acquire()
    finally:
        os.close(fd)
    with WaveLock(tmp_path, WAVE) as lock:  # once free, the garbled content is overwritten
        assert recorded(lock) is not None


def test_held_lock_of_a_dead_pid_says_so(tmp_path: Path) -> None:
    """If the recorded local pid is dead yet the flock is held, the message says so."""
    path = tmp_path / WAVE / LOCK_FILE
    path.parent.mkdir()
    pid = dead_pid()
    record = {"pid": pid, "host": socket.gethostname(), "started_at": STARTED, "command": "x"}
    path.write_text(json.dumps(record))
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a child that inherited the fd would
        with pytest.raises(LockedError, match=f"pid {pid} is no longer running.*inherited"):
            WaveLock(tmp_path, WAVE).acquire()
    finally:
        os.close(fd)


def test_release_then_reacquire(tmp_path: Path) -> None:
    """A released lock can be taken again, by this object or another, and reads as free between."""
    lock = WaveLock(tmp_path, WAVE, clock=fixed_clock)
    lock.acquire()
    with pytest.raises(LockedError):
        WaveLock(tmp_path, WAVE).acquire()
    lock.release()
    assert recorded(lock) is None
    lock.release()  # a second release is a no-op
    with WaveLock(tmp_path, WAVE):
        pass
    lock.acquire()
    lock.release()


def test_lock_fd_is_not_inherited_by_subprocesses(tmp_path: Path) -> None:
    """A child started while the lock is held does not keep it after the parent releases."""
    lock = WaveLock(tmp_path, WAVE)
    lock.acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        close_fds=False,
    )
    try:
        lock.release()
        with WaveLock(tmp_path, WAVE):
            pass
    finally:
        child.communicate(timeout=30)


def test_lock_file_and_folder_are_private(tmp_path: Path) -> None:
    """The lock file is 0600 and its folder 0700 even with umask 0."""
    old = os.umask(0)
    try:
        with WaveLock(tmp_path, WAVE) as lock:
            modes = (
                stat.S_IMODE(lock.path.stat().st_mode),
                stat.S_IMODE(lock.folder.stat().st_mode),
            )
    finally:
        os.umask(old)
    assert modes == (0o600, 0o700)


def test_wave_outside_state_dir_is_refused(tmp_path: Path) -> None:
    """A wave name that would escape state_dir raises ValueError before any file is made."""
    with pytest.raises(ValueError, match="not a plain folder name"):
        WaveLock(tmp_path / "state", "..")


def test_a_holder_that_has_not_written_yet_is_still_named(tmp_path: Path) -> None:
    """Two runs started together: the loser waits briefly for the winner's record, then names it."""
    import fcntl
    import os
    import threading

    folder = tmp_path / "w"
    folder.mkdir(mode=0o700)
    fd = os.open(folder / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, record not written yet
        record = {"pid": 4242, "host": "winner", "started_at": "T", "command": "mgn-cutover run"}

        def write_late() -> None:
            os.pwrite(fd, json.dumps(record).encode(), 0)

        timer = threading.Timer(0.2, write_late)
        timer.start()
        with pytest.raises(LockedError, match="pid 4242 on host winner"):
            WaveLock(tmp_path, "w").acquire()
        timer.join()
    finally:
        os.close(fd)
