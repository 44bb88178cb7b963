"""The emulator's own exceptions.

EmulatorError                 root of every error the emulator raises on purpose
├── ApiError                  an MGN error response to send: modeled name, HTTP status, body fields
├── ResponseShapeError        strict mode: a response the emulator built breaks the output shape
└── EmulatorInputError        bad input; also an orchestrator InputError, so `simulate` exits 2
    ├── FixtureError          a fixture, seed request, generation request or plan is invalid
    └── FaultsError           a fault setting is out of range or unknown
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import InputError

ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.mgn/"


class EmulatorError(Exception):
    """Root of every error the emulator raises on purpose."""


class ApiError(EmulatorError):
    """An MGN error to serialize: `name` is the modeled shape, `fields` its JSON body members."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        retry_after_s: int | None = None,
        **fields: Any,
    ) -> None:
        self.name = name
        self.message = message
        self.retry_after_s = retry_after_s
        self.fields: dict[str, Any] = {"message": message, **fields}
        super().__init__(f"{name}: {message}")


class ResponseShapeError(EmulatorError):
    """Strict mode: the emulator built a response that its operation's output shape forbids."""


class EmulatorInputError(EmulatorError, InputError):
    """Bad input to the emulator (exits 2 from the CLI)."""

    def __init__(self, message: str) -> None:
        InputError.__init__(self, message)


class FixtureError(EmulatorInputError):
    """A fixture, a seed or generation request, or a plan file is invalid."""


class FaultsError(EmulatorInputError):
    """A fault setting is out of range or unknown."""


def validation_error(
    message: str, reason: str, fields: list[tuple[str, str]] | None = None
) -> ApiError:
    """A ValidationException with MGN's `reason` and `fieldList` members."""
    extra: dict[str, Any] = {"code": "ValidationException", "reason": reason}
    if fields is not None:
        extra["fieldList"] = [{"name": n, "message": m} for n, m in fields]
    return ApiError("ValidationException", message, **extra)


def not_found(server_id: str) -> ApiError:
    """A ResourceNotFoundException for one source server."""
    return ApiError(
        "ResourceNotFoundException",
        f"Source server {server_id} not found",
        code="SOURCE_SERVER_NOT_FOUND",
        resourceId=server_id,
        resourceType="SOURCE_SERVER",
    )


def conflict(server_id: str, message: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    """A ConflictException about a source server's lifecycle state."""
    extra: dict[str, Any] = {
        "code": "INVALID_LIFECYCLE_STATE",
        "resourceId": server_id,
        "resourceType": "SOURCE_SERVER",
    }
    if errors:
        extra["errors"] = errors
    return ApiError("ConflictException", message, **extra)
