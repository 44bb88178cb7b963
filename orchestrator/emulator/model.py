"""MGN's botocore service model, compiled once into per-shape validator closures.

botocore's ParamValidator skips lengths, value ranges, patterns and enums; the emulator checks
them all, plus required and unknown members, the way MGN's front end does. A validator is a
closure `check(value, path, errors)` that appends `(path, message)` pairs; each shape compiles
once per process (`load_model()` is cached), so a request costs a few dict lookups and calls.
Smithy semantics: a JSON `null` member counts as absent. Patterns are searched, not anchored,
as the model's (ECMAScript) patterns mean. The store never mutates a record it published
(state.py), so a SourceServer that passed its check once is remembered by identity and not
walked again (strict mode then costs little on Describe).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.session

Errors = list[tuple[str, str]]
Check = Callable[[Any, str, Errors], None]

# Shapes whose checked values are immutable records, remembered by identity once valid.
MEMO_SHAPES = frozenset({"SourceServer"})
MEMO_LIMIT = 50_000

# The operations the emulator implements; every other path is an unknown operation.
OPERATIONS = (
    "DescribeSourceServers",
    "FinalizeCutover",
    "StartCutover",
    "ChangeServerLifeCycleState",
    "MarkAsArchived",
    "DisconnectFromService",
    "ListApplications",
    "ListWaves",
    "DescribeJobs",
    "TerminateTargetInstances",
    "ListManagedAccounts",
)
MUTATING = frozenset(
    {
        "FinalizeCutover",
        "StartCutover",
        "ChangeServerLifeCycleState",
        "MarkAsArchived",
        "DisconnectFromService",
        "TerminateTargetInstances",
    }
)


def _fail(errors: Errors, path: str, value: Any, constraint: str) -> None:
    shown = value if isinstance(value, str | int | float | bool) else type(value).__name__
    errors.append((path, f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Compiler:
    """Turns botocore shapes into validator closures, one per shape name."""

    def __init__(self) -> None:
        self._cache: dict[str, Check] = {}

    def compile(self, shape: Any) -> Check:
        key = f"{shape.name}:{shape.type_name}"
        found = self._cache.get(key)
        if found is not None:
            return found
        cell: list[Check] = []
        # A forwarding stub lets recursive shapes refer to themselves while compiling.
        self._cache[key] = lambda v, p, e: cell[0](v, p, e)
        check = self._build(shape)
        if shape.name in MEMO_SHAPES:
            check = _memoized(check)
        cell.append(check)
        self._cache[key] = check
        return check

    def _build(self, shape: Any) -> Check:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            return self._structure(shape)
        if kind == "list":
            return _list_check(self.compile(shape.member), meta.get("min"), meta.get("max"))
        if kind == "map":
            return _map_check(
                self.compile(shape.key), self.compile(shape.value), meta.get("min"), meta.get("max")
            )
        if kind == "string":
            pattern = meta.get("pattern")
            return _string_check(
                meta.get("min"),
                meta.get("max"),
                tuple(shape.enum) if shape.enum else None,
                re.compile(pattern) if pattern else None,
                pattern,
            )
        if kind in ("integer", "long"):
            return _integer_check(meta.get("min"), meta.get("max"))
        if kind == "boolean":
            return _type_check(lambda v: type(v) is bool, "boolean")
        if kind in ("float", "double"):
            return _type_check(lambda v: type(v) in (int, float), "number")
        if kind == "timestamp":
            return _type_check(lambda v: type(v) in (int, float, str), "timestamp")
        return _type_check(lambda v: type(v) is str, kind)

    def _structure(self, shape: Any) -> Check:
        members = {
            name: self.compile(member)
            for name, member in shape.members.items()
            if member.serialization.get("location") is None
        }
        required = tuple(n for n in shape.required_members if n in members)
        is_union = bool(shape.metadata.get("union"))

        def check(value: Any, path: str, errors: Errors) -> None:
            if type(value) is not dict:
                _fail(errors, path or "body", value, "Member must be a structure")
                return
            for name in required:
                if value.get(name) is None:
                    errors.append((_join(path, name), "Member must not be null"))
            present = 0
            for name, item in value.items():
                member_check = members.get(name)
                if member_check is None:
                    errors.append((_join(path, name), "Member is not modeled"))
                elif item is not None:
                    present += 1
                    member_check(item, _join(path, name), errors)
            if is_union and present != 1:
                errors.append((path, "Union must have exactly one member set"))

        return check


def _memoized(inner: Check) -> Check:
    # Holding each value keeps its id from being reused while it is in the memo.
    memo: dict[int, Any] = {}

    def check(value: Any, path: str, errors: Errors) -> None:
        key = id(value)
        if memo.get(key) is value:
            return
        before = len(errors)
        inner(value, path, errors)
        if len(errors) == before:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = value

    return check


def _string_check(
    min_len: int | None,
    max_len: int | None,
    enum_values: tuple[str, ...] | None,
    regex: re.Pattern[str] | None,
    pattern: str | None,
) -> Check:
    enum = frozenset(enum_values) if enum_values else None
    enum_text = f"[{', '.join(enum_values)}]" if enum_values else ""

    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not str:
            _fail(errors, path, value, "Member must be a string")
            return
        n = len(value)
        if min_len is not None and n < min_len:
            _fail(
                errors, path, value, f"Member must have length greater than or equal to {min_len}"
            )
        if max_len is not None and n > max_len:
            _fail(errors, path, value, f"Member must have length less than or equal to {max_len}")
        if enum is not None and value not in enum:
            _fail(errors, path, value, f"Member must satisfy enum value set: {enum_text}")
        if regex is not None and regex.search(value) is None:
            _fail(errors, path, value, f"Member must satisfy regular expression pattern: {pattern}")

    return check


def _integer_check(minimum: int | None, maximum: int | None) -> Check:
    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not int:
            _fail(errors, path, value, "Member must be an integer")
            return
        if minimum is not None and value < minimum:
            _fail(errors, path, value, f"Member must have value greater than or equal to {minimum}")
        if maximum is not None and value > maximum:
            _fail(errors, path, value, f"Member must have value less than or equal to {maximum}")

    return check


def _type_check(ok: Callable[[Any], bool], name: str) -> Check:
    def check(value: Any, path: str, errors: Errors) -> None:
        if not ok(value):
            _fail(errors, path, value, f"Member must be a {name}")

    return check


def _check_length(
    n: int, path: str, errors: Errors, min_len: int | None, max_len: int | None
) -> None:
    if min_len is not None and n < min_len:
        _fail(errors, path, n, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and n > max_len:
        _fail(errors, path, n, f"Member must have length less than or equal to {max_len}")


def _list_check(member: Check, min_len: int | None, max_len: int | None) -> Check:
    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not list:
            _fail(errors, path, value, "Member must be a list")
            return
        _check_length(len(value), path, errors, min_len, max_len)
        for i, item in enumerate(value):
            if item is None:
                errors.append((f"{path}[{i}]", "Member must not be null"))
            else:
                member(item, f"{path}[{i}]", errors)

    return check


def _map_check(key: Check, val: Check, min_len: int | None, max_len: int | None) -> Check:
    def check(value: Any, path: str, errors: Errors) -> None:
        if type(value) is not dict:
            _fail(errors, path, value, "Member must be a map")
            return
        _check_length(len(value), path, errors, min_len, max_len)
        for k, v in value.items():
            key(k, f"{path}.key", errors)
            if v is None:
                errors.append((f"{path}.{k}", "Member must not be null"))
            else:
                val(v, f"{path}.{k}", errors)

    return check


@dataclass(frozen=True)
class OperationSpec:
    """One implemented operation: its success status and compiled input and output checks."""

    name: str
    status: int
    check_input: Check
    check_output: Check
    mutating: bool


@dataclass(frozen=True)
class MgnModel:
    """The compiled model: operations by name, error shapes by name (status, body check)."""

    operations: dict[str, OperationSpec]
    error_status: dict[str, int]
    error_checks: dict[str, Check]

    def validate_input(self, op: str, body: Any) -> Errors:
        """Every constraint `body` breaks, as `(field path, message)` pairs; empty when valid."""
        errors: Errors = []
        self.operations[op].check_input(body, "", errors)
        return errors

    def output_errors(self, op: str, body: Any) -> Errors:
        """Every constraint a response body breaks (used by strict mode)."""
        errors: Errors = []
        self.operations[op].check_output(body, "", errors)
        return errors


@functools.cache
def _service() -> Any:
    return botocore.session.get_session().get_service_model("mgn")


@functools.cache
def enum_values(shape_name: str) -> frozenset[str]:
    """The values of one of the model's enum shapes (e.g. DataReplicationErrorString)."""
    return frozenset(_service().shape_for(shape_name).enum)


@functools.cache
def load_model() -> MgnModel:
    """Load botocore's MGN model and compile every implemented operation (once per process)."""
    service = _service()
    compiler = _Compiler()
    operations: dict[str, OperationSpec] = {}
    error_shapes: dict[str, Any] = {}
    for name in OPERATIONS:
        op = service.operation_model(name)
        operations[name] = OperationSpec(
            name=name,
            status=int(op.http.get("responseCode", 200)),
            check_input=compiler.compile(op.input_shape),
            check_output=compiler.compile(op.output_shape),
            mutating=name in MUTATING,
        )
    for shape_name in service.shape_names:
        shape = service.shape_for(shape_name)
        if shape.metadata.get("exception"):
            error_shapes[shape_name] = shape
    return MgnModel(
        operations=operations,
        error_status={
            n: int(s.metadata["error"]["httpStatusCode"]) for n, s in error_shapes.items()
        },
        error_checks={n: compiler.compile(s) for n, s in error_shapes.items()},
    )
