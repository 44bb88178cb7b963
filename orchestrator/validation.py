"""What the plan and config validators share: patterns, quoting, did-you-mean, a sink."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import botocore.loaders

from orchestrator.errors import Diagnostic
from orchestrator.yamlsource import Map, Node, Scalar, Seq

# MGN's own patterns, from the botocore service model.
SOURCE_SERVER_ID_RE = re.compile(r"s-[0-9a-zA-Z]{17}")
APPLICATION_ID_RE = re.compile(r"app-[0-9a-zA-Z]{17}")
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
# us-east-1, us-gov-west-1, ap-southeast-5, eu-isoe-west-1 ...
REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


class DataLoader(botocore.loaders.Loader):  # type: ignore[misc]  # botocore is untyped
    """botocore's loader, except that loading one service's model does not list every service.

    `load_service_model` checks the name it is given against `list_available_services`, which
    looks into the folders of all ~400 services (~15 ms a model type here; a first client loads
    two). While it loads a service whose folder holds that model, that list is the one name;
    anything else (an unknown service, any other caller) gets botocore's own full list.
    """

    def __init__(self) -> None:
        super().__init__()
        self._loading = threading.local()  # the service whose model is being loaded

    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        self._loading.name = service_name if self._has(service_name, type_name) else None
        try:
            return super().load_service_model(service_name, type_name, api_version)
        finally:
            self._loading.name = None

    def list_available_services(self, type_name: str) -> list[str]:
        name: str | None = getattr(self._loading, "name", None)
        if name is not None:
            return [name]
        return super().list_available_services(type_name)  # type: ignore[no-any-return]

    def _has(self, service_name: str, type_name: str) -> bool:
        """Whether some version of the service has this model, botocore's test for a known
        service (`list_available_services`) applied to its own folder alone."""
        if not service_name or service_name in (".", "..") or os.sep in service_name:
            return False
        exists = self.file_loader.exists  # a path without its .json or .json.gz
        for root in map(Path, self.search_paths):
            folder = root / service_name
            if not (root.is_dir() and folder.is_dir()):
                continue
            if any(exists(str(version / type_name)) for version in folder.iterdir()):
                return True
        return False


@functools.cache
def data_loader() -> botocore.loaders.Loader:
    """botocore's loader of its bundled data (no `data_path`), one per process: it keeps what
    it parsed, so the AWS sessions that share it (`access.Sessions`) do not parse again the
    models and partition data the plan was checked against."""
    return DataLoader()


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's bundled partition data (read offline,
    once): the regions its ~1 MB endpoint data lists, from a 7 KB file, so that checking a plan
    costs no ~30 ms parse (a run's first client still parses the endpoint data: botocore's
    endpoint resolver). Not the `aws-global`-style names, which are no region.

    Partition data, not MGN's own endpoint list: a region MGN reaches later stays plannable.
    """
    data = data_loader().load_data("partitions")
    return frozenset(
        region
        for partition in data.get("partitions", [])
        for region in partition.get("regions", {})
        if not region.endswith("-global")
    )


# Enough to locate and read a value; a multi-megabyte scalar is never echoed whole.
_QUOTE_MAX_CHARS = 80
MAX_ERRORS_PER_SOURCE = 100


def quote(value: object) -> str:
    """A value as a message shows it: strings double-quoted and escaped, long ones cut."""
    if isinstance(value, str):
        cut = value if len(value) <= _QUOTE_MAX_CHARS else value[:_QUOTE_MAX_CHARS] + "..."
        return json.dumps(cut, ensure_ascii=False)
    return repr(value)[:_QUOTE_MAX_CHARS]


def describe(node: Node) -> str:
    """What a node holds, for "expected X, got Y" messages."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {node.text}"
    if isinstance(value, int | float):
        return f"the number {node.text}"
    if isinstance(value, dt.date):
        return f"the date {node.text}"
    return f"the string {quote(value)}"


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """The known key `key` is a near miss of (case-insensitive first, then difflib), or None."""
    known = list(known)
    for candidate in known:
        if candidate.lower() == key.lower():
            return candidate
    lowered = {candidate.lower(): candidate for candidate in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def unknown_key_message(key: str, known: Iterable[str], where: str = "") -> str:
    """`unknown key "x"; did you mean "y"?`, or the list of keys allowed there."""
    known = list(known)
    prefix = f"{where}: " if where else ""
    guess = did_you_mean(key, known)
    if guess is not None:
        return f"{prefix}unknown key {quote(key)}; did you mean {quote(guess)}?"
    return f"{prefix}unknown key {quote(key)} (allowed: {', '.join(known)})"


def string_value(node: Node) -> str | None:
    """The node's string when it is a string scalar, else None."""
    if isinstance(node, Scalar) and isinstance(node.value, str):
        return node.value
    return None


class Sink:
    """Collects one source's diagnostics, stopping at MAX_ERRORS_PER_SOURCE errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.diagnostics: list[Diagnostic] = []
        self._errors = 0

    @property
    def full(self) -> bool:
        return self._errors >= MAX_ERRORS_PER_SOURCE

    @property
    def has_errors(self) -> bool:
        return self._errors > 0

    def error(self, line: int, col: int, message: str) -> None:
        if self.full:
            return
        self._errors += 1
        self.diagnostics.append(Diagnostic(self.path, line, col, message))
        if self.full:
            stop = "too many errors; stopped checking this file"
            self.diagnostics.append(Diagnostic(self.path, 0, 0, stop))

    def at(self, node: Node, message: str) -> None:
        self.error(node.line, node.col, message)

    def warning(self, line: int, col: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.path, line, col, message, "warning"))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            if d.severity == "error":
                self.error(d.line, d.col, d.message)
            else:
                self.diagnostics.append(d)


def check_keys(
    sink: Sink, node: Map, allowed: Sequence[str], required: Sequence[str], where: str = ""
) -> None:
    """Report unknown keys (with a did-you-mean) and missing required ones.

    A required key is not also reported missing when an unknown key looks like a typo of it.
    """
    guessed: set[str] = set()
    for key, _ in node.items:
        if key.text not in allowed:
            guess = did_you_mean(key.text, allowed)
            if guess is not None:
                guessed.add(guess)
            sink.at(key, unknown_key_message(key.text, allowed, where))
    for name in required:
        if name not in guessed and node.get(name) is None:
            prefix = f"{where}: " if where else ""
            sink.at(node, f"{prefix}missing required key {quote(name)}")


def is_null(node: Node | None) -> bool:
    """True when the key is absent or its value is null (an optional key left empty)."""
    return node is None or (isinstance(node, Scalar) and node.value is None)


def expect_string(sink: Sink, node: Node, field: str, what: str = "") -> str | None:
    """The node's string, or None after reporting what it holds instead.

    With no `what` ("a string"), a number or boolean gets the hint to quote it.
    """
    value = string_value(node)
    if value is None:
        quotable = not what and isinstance(node, Scalar) and node.value is not None
        hint = "; quote it" if quotable else ""
        sink.at(node, f"{field}: expected {what or 'a string'}, got {describe(node)}{hint}")
    return value


def optional_string(sink: Sink, mapping: Map, key: str, where: str = "") -> str | None:
    """The string under `key`, None when absent or null; a wrong type is reported."""
    node = mapping.get(key)
    if node is None or is_null(node):
        return None
    return expect_string(sink, node, f"{where}.{key}" if where else key)


def matching_string(
    sink: Sink, node: Node, field: str, pattern: re.Pattern[str], what: str, expected: str = ""
) -> str | None:
    """The node's string if it matches `pattern`; else None after saying it is not `what`.

    `expected` names the type in "expected X, got Y" (default "a string", hinting to quote).
    """
    value = expect_string(sink, node, field, expected)
    if value is not None and not pattern.fullmatch(value):
        sink.at(node, f"{field}: {quote(value)} is not {what}")
        return None
    return value
