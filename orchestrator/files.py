"""Private folders and durable renames for the journal, the lock and the report."""

from __future__ import annotations

import os
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
