"""The project's exception tree. Every error we raise on purpose is one of these.

MgnCutoverError                  root; `exit_code` says what the CLI exits with
├── InputError (2)               bad plan, config or arguments; carries every diagnostic
│   ├── PlanError
│   ├── ConfigError
│   └── ApprovalRefused          `approve` for an application no live run is waiting for
├── JournalError (2)             journal corrupt or from a newer schema: never start afresh
│   └── StateWriteError (5)      local state (journal, lock record) could not be written
├── LockedError (3)              another run holds the wave's lock
├── WindowError (6)              started outside its cutover window: nothing sent
├── AccountError (4)             account-wide: uninitialized account, access denied, credentials
└── MgnError (1)                 one call about one server failed; the pool records it and goes on
    ├── RetryableError           throttling, 5xx, dropped connection, timeout
    │   └── ThrottledError
    ├── ConflictError            wrong lifecycle state (HTTP 409)
    ├── NotFoundError            the server does not exist (HTTP 404)
    ├── RequestRejectedError     ValidationException or any other 4xx: never retried
    └── MisattributedError       a 200 naming another server: may have gone through, never resent
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """What `mgn-cutover` exits with; the README's table documents each one."""

    OK = 0  # every server of the wave converged
    NOT_CONVERGED = 1  # something blocked, failed, timed out, not attempted, or interrupted
    BAD_INPUT = 2  # plan, config, arguments, or a corrupt/newer journal
    LOCKED = 3  # another run holds the wave's lock
    ACCOUNT = 4  # account or credential error
    LOCAL_STATE = 5  # local state (journal) could not be written
    OUTSIDE_WINDOW = 6  # started outside its cutover window: nothing was sent
    INTERRUPTED = 130  # Ctrl-C before a command could record anything (128 + SIGINT)


class MgnCutoverError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code: ExitCode = ExitCode.NOT_CONVERGED


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in an input file, located by line and column (1-based)."""

    path: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        # Line 0 means the whole source (a missing file, an environment variable, a flag).
        where = self.path if self.line <= 0 else f"{self.path}:{self.line}"
        if self.line > 0 and self.col > 0:
            where += f":{self.col}"
        # One diagnostic, one line: control and separator characters from a file are escaped.
        message = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in self.message)
        return f"{where}: {prefix}{message}"


class InputError(MgnCutoverError):
    """Bad input: every diagnostic found, not just the first."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, diagnostics: Sequence[Diagnostic] | str) -> None:
        if isinstance(diagnostics, str):
            self.diagnostics: tuple[Diagnostic, ...] = ()
            text = diagnostics
        else:
            self.diagnostics = tuple(diagnostics)
            text = "\n".join(str(d) for d in self.diagnostics)
        super().__init__(text)


class PlanError(InputError):
    """A wave plan file is invalid."""


class ConfigError(InputError):
    """The config file, an environment variable or a flag is invalid."""


class ApprovalRefused(InputError):
    """An approval for an application no live run is waiting for: nothing was recorded."""


class JournalError(MgnCutoverError):
    """The journal cannot be trusted (corrupt, or written by a newer version)."""

    exit_code = ExitCode.BAD_INPUT


class StateWriteError(JournalError):
    """A journal write failed (disk full, read-only, lost lease): nothing more may be sent."""

    exit_code = ExitCode.LOCAL_STATE


class LockedError(MgnCutoverError):
    """Another run holds this wave's lock."""

    exit_code = ExitCode.LOCKED


class WindowError(MgnCutoverError):
    """The run was started outside its cutover window (--not-before / --not-after)."""

    exit_code = ExitCode.OUTSIDE_WINDOW


class AccountError(MgnCutoverError):
    """An account-wide failure: nothing more may be sent for this wave."""

    exit_code = ExitCode.ACCOUNT

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class MgnError(MgnCutoverError):
    """One MGN call failed; `code` is MGN's error code."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")


class RetryableError(MgnError):
    """A transient failure worth another attempt; `retry_after_s` is MGN's hint if it gave one."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(code, message, status)
        self.retry_after_s = retry_after_s
        # True when the request may have reached MGN and taken effect (dropped connection, timeout).
        self.ambiguous = ambiguous


class ThrottledError(RetryableError):
    """MGN throttled the call (HTTP 429)."""


class ConflictError(MgnError):
    """MGN refused the call because of the server's lifecycle state (HTTP 409)."""


class NotFoundError(MgnError):
    """MGN does not know the server (HTTP 404)."""


class RequestRejectedError(MgnError):
    """MGN rejected the request itself (validation or another 4xx): retrying cannot help."""


class MisattributedError(MgnError):
    """An answer that names another server than the call's: not this call's answer, so the call
    may or may not have gone through; resolved by reading the server, never by sending again."""
