"""Private folders and durable renames for the journal, the lock and the report."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


def wave_dir(base: Path, wave: str) -> Path:
    """`<base>/<wave>` as an absolute path.

    Raises ValueError if the wave name is not a single path component or the folder would
    resolve anywhere but directly under `base` (`..`, a symlink).
    """
    if wave in ("", ".", "..") or any(c in wave for c in "/\\\x00"):
        raise ValueError(f"wave name {wave!r} is not a plain folder name")
    root = base.resolve()
    path = root / wave
    if path.resolve() != path:
        raise ValueError(f"wave folder for {wave!r} resolves outside {root}")
    return path


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700 regardless of umask; tighten it if it exists.

    Raises OSError if a folder cannot be created or its mode changed.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)
        p.chmod(0o700)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in `folder` durable. Raises OSError if the folder cannot be synced."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_atomic(source: Path, path: Path) -> None:
    """Make `path` another name of `source` (already durable), replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        write_atomic(path, _read_parts(source))  # no hard links here: copy


def _read_parts(path: Path, size: int = 1 << 20) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as f:
        yield from iter(lambda: f.read(size), "")


def write_atomic(path: Path, parts: Iterable[str]) -> None:
    """Write `parts` via a 0600 temp file in the same folder, fsync, then rename over `path`."""
    write_all([(path, lambda: parts)])


def write_all(files: Sequence[tuple[Path, Callable[[], Iterable[str]]]]) -> None:
    """Write each file's parts (rendered one file after the other) via its own 0600 temp file
    in the same folder, then rename each over its path once all are on disk: a failure leaves
    every previous file whole and no temp file. Each temp file is fsynced in a thread while the
    next one is rendered (fsync releases the GIL: the disk's part of a 4,000-server report,
    ~15-40 ms here, overlaps the rendering).

    Raises whatever rendering raises, and OSError."""
    written: list[tuple[Path, Path]] = []
    syncs: list[Future[None]] = []
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="mgn-cutover-fsync") as pool:
            for path, parts in files:
                tmp, fd = _write_temp(path, parts())
                written.append((tmp, path))
                syncs.append(pool.submit(_sync_and_close, fd))
        # Leaving the pool waited for every fsync (each closes its descriptor, even on error).
        for sync in syncs:
            sync.result()  # the first fsync error, if any
        while written:
            tmp, path = written[0]
            tmp.replace(path)
            written.pop(0)
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise


def _write_temp(path: Path, parts: Iterable[str], batch_chars: int = 1 << 20) -> tuple[Path, int]:
    """`parts` written to a new 0600 temp file beside `path` (gathered to about `batch_chars`
    per write: many are a single table row): its path and its still open descriptor."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="", closefd=False) as f:
            os.fchmod(fd, 0o600)
            pending: list[str] = []
            size = 0
            for part in parts:
                pending.append(part)
                size += len(part)
                if size >= batch_chars:
                    f.write("".join(pending))
                    pending.clear()
                    size = 0
            f.write("".join(pending))
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return tmp, fd


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
