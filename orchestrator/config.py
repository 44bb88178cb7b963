"""Run settings: one frozen Config, from flags > environment > config file > defaults.

The config file is a YAML mapping whose keys are Config's field names; the environment variable
of a field is MGN_CUTOVER_<FIELD> (MGN_CUTOVER_FINALIZE_RATE=20); flags arrive from the CLI as
`overrides`. Every source is checked in full and every problem reported at once. Credentials are
never settings: keys that look like them are refused, and their values never echoed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from orchestrator.errors import ConfigError, Diagnostic
from orchestrator.validation import (
    ACCOUNT_ID_RE,
    REGION_RE,
    Sink,
    describe,
    did_you_mean,
    quote,
    unknown_key_message,
)
from orchestrator.yamlsource import Map, Scalar, Seq, read_yaml

LogFormat = Literal["auto", "json", "console"]

ENV_PREFIX = "MGN_CUTOVER_"
MAX_CONFIG_BYTES = 1024 * 1024
# Flags whose name is not simply --field-name.
FLAG_NAMES = {"poll_interval_s": "--poll-interval", "reconcile_timeout_s": "--timeout"}
_CREDENTIAL_WORDS = ("secret", "password", "passwd", "token", "access_key", "credential", "api_key")
CREDENTIALS_REFUSED = (
    "credentials are not settings: mgn-cutover takes them only from boto3's chain "
    "(AWS profiles, SSO, AWS_* environment variables, instance or task roles); value not shown"
)


@dataclass(frozen=True)
class Config:
    """Effective settings of one command. Holds no credentials: those come from boto3's chain."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    account_id: str | None = None
    concurrency: int = 16
    finalize_rate: float = 5.0
    describe_rate: float = 5.0
    poll_interval_s: float = 15.0
    reconcile_timeout_s: float = 1800.0
    max_attempts: int = 8
    server_deadline_s: float = 600.0
    require_first_boot: bool = True
    application_gate: bool = True
    verify_instances: bool = False
    report_dir: Path = field(default_factory=lambda: Path("reports"))
    state_dir: Path = field(default_factory=lambda: Path(".mgn-cutover"))
    log_format: LogFormat = "auto"

    def as_report_dict(self) -> dict[str, object]:
        """The effective settings as plain JSON-ready values (paths as strings)."""
        report: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            report[f.name] = str(value) if isinstance(value, Path) else value
        return report


def env_name(setting: str) -> str:
    """The environment variable of a setting: MGN_CUTOVER_<SETTING>."""
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    """The CLI flag of a setting, for messages."""
    return FLAG_NAMES.get(setting, "--" + setting.replace("_", "-"))


def looks_like_credential(key: str) -> bool:
    """True for names such as aws_secret_access_key, session_token or password."""
    lowered = key.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def load_config(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, object]
) -> Config:
    """The effective Config: `overrides` (flags) > MGN_CUTOVER_* in `env` > file > defaults.

    Raises ConfigError with every problem of every source: an unreadable or malformed file,
    unknown keys, credential-like keys, wrong types and out-of-range values.
    """
    diagnostics: list[Diagnostic] = []
    values: dict[str, object] = {}
    if path is not None:
        values.update(_from_file(path, diagnostics))
    values.update(_from_env(env, diagnostics))
    values.update(_from_overrides(overrides, diagnostics))
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return Config(**values)  # type: ignore[arg-type]  # each value was converted for its field


class _Invalid(Exception):
    """Internal: a value does not fit its setting. `echo` False keeps the value out of messages."""

    def __init__(self, expected: str, echo: bool = True) -> None:
        super().__init__(expected)
        self.expected, self.echo = expected, echo


Converter = Callable[[object], object]


def _from_file(path: Path, diagnostics: list[Diagnostic]) -> dict[str, object]:
    doc = read_yaml(path, max_bytes=MAX_CONFIG_BYTES)
    sink = Sink(doc.path)
    sink.extend(doc.diagnostics)
    values: dict[str, object] = {}
    root = doc.root
    if root is not None and not isinstance(root, Map):
        sink.at(root, f"a config file must be a mapping of setting: value, got {describe(root)}")
    elif isinstance(root, Map):
        for key, node in root.items:
            if looks_like_credential(key.text):
                sink.at(key, f"{key.text}: {CREDENTIALS_REFUSED}")
            elif key.text not in CONVERTERS:
                sink.at(key, unknown_key_message(key.text, CONVERTERS))
            else:
                raw = node.value if isinstance(node, Scalar) else node
                try:
                    values[key.text] = CONVERTERS[key.text](raw)
                except _Invalid as bad:
                    sink.at(node, f"{key.text}: {_problem(bad, node)}")
    diagnostics.extend(sink.diagnostics)
    return values


def _from_env(env: Mapping[str, str], diagnostics: list[Diagnostic]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        setting, raw = name[len(ENV_PREFIX) :].lower(), env[name]
        where = f"env {name}"
        if looks_like_credential(setting):
            diagnostics.append(Diagnostic(where, 0, 0, CREDENTIALS_REFUSED))
        elif setting not in CONVERTERS:
            guess = did_you_mean(setting, CONVERTERS)
            hint = f"; did you mean {env_name(guess)}?" if guess else ""
            diagnostics.append(Diagnostic(where, 0, 0, f"unknown setting{hint}"))
        elif raw.strip():  # an empty variable counts as unset
            try:
                values[setting] = CONVERTERS[setting](raw)
            except _Invalid as bad:
                diagnostics.append(Diagnostic(where, 0, 0, _problem(bad, raw)))
    return values


def _from_overrides(
    overrides: Mapping[str, object], diagnostics: list[Diagnostic]
) -> dict[str, object]:
    values: dict[str, object] = {}
    for setting, raw in overrides.items():
        where = flag_name(setting)
        if looks_like_credential(setting):
            diagnostics.append(Diagnostic(where, 0, 0, CREDENTIALS_REFUSED))
        elif setting not in CONVERTERS:
            diagnostics.append(Diagnostic(where, 0, 0, f"unknown setting {quote(setting)}"))
        elif raw is not None:
            try:
                values[setting] = CONVERTERS[setting](raw)
            except _Invalid as bad:
                diagnostics.append(Diagnostic(where, 0, 0, _problem(bad, raw)))
    return values


def _problem(bad: _Invalid, raw: object) -> str:
    if not bad.echo:
        return bad.expected
    return f"expected {bad.expected}, got {_describe_raw(raw)}"


def _describe_raw(raw: object) -> str:
    if isinstance(raw, Map | Seq | Scalar):
        return describe(raw)
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, int | float):
        return f"the number {raw}"
    return f"the string {quote(raw)}" if isinstance(raw, str) else quote(raw)


def _optional(convert: Converter) -> Converter:
    return lambda raw: None if raw is None else convert(raw)


def _text(pattern: re.Pattern[str], expected: str) -> Converter:
    def convert(raw: object) -> str:
        if not isinstance(raw, str) or not pattern.fullmatch(raw):
            raise _Invalid(expected)
        return raw

    return convert


def _integer(low: int, high: int) -> Converter:
    expected = f"an integer from {low} to {high}"

    def convert(raw: object) -> int:
        value: object = raw
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", raw):
            value = int(raw)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(expected)
        return value

    return convert


def _positive(high: float | None = None) -> Converter:
    expected = "a number > 0" + (f" and <= {high:g}" if high is not None else "")

    def convert(raw: object) -> float:
        value: object = raw
        if isinstance(raw, str) and len(raw) < 40:
            try:
                value = float(raw)
            except ValueError:
                raise _Invalid(expected) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(expected)
        number = float(value)
        if not math.isfinite(number) or number <= 0 or (high is not None and number > high):
            raise _Invalid(expected)
        return number

    return convert


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False}
_BOOLS.update({"off": False, "0": False})


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
        return _BOOLS[raw.strip().lower()]
    raise _Invalid("true or false (also yes/no, on/off, 1/0)")


def _account_id(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raise _Invalid("a quoted string of 12 digits (unquoted, a leading 0 is lost)")
    return str(_text(ACCOUNT_ID_RE, "an AWS account ID (12 digits)")(raw))


def _endpoint_url(raw: object) -> str:
    expected = "an http:// or https:// URL with a host"
    if not isinstance(raw, str):
        raise _Invalid(expected)
    try:
        parts = urlsplit(raw)
        has_host = bool(parts.hostname)
    except ValueError:
        raise _Invalid(expected) from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        # It would reach reports and logs: refuse, and do not repeat it.
        raise _Invalid("the URL must not carry a user, password, query or fragment", echo=False)
    if parts.scheme not in ("http", "https") or not has_host:
        raise _Invalid(expected)
    return raw


def _folder(raw: object) -> Path:
    if isinstance(raw, Path):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise _Invalid("a folder path")
    return Path(raw)


def _log_format(raw: object) -> str:
    if raw not in ("auto", "json", "console"):
        raise _Invalid("one of auto, json, console")
    return str(raw)


CONVERTERS: dict[str, Converter] = {
    "region": _optional(_text(REGION_RE, "an AWS region (like us-east-1)")),
    "profile": _optional(_text(re.compile(r"\S(.*\S)?"), "an AWS profile name")),
    "endpoint_url": _optional(_endpoint_url),
    "account_id": _optional(_account_id),
    "concurrency": _integer(1, 1000),
    "finalize_rate": _positive(10000),
    "describe_rate": _positive(10000),
    "poll_interval_s": _positive(),
    "reconcile_timeout_s": _positive(),
    "max_attempts": _integer(1, 100),
    "server_deadline_s": _positive(),
    "require_first_boot": _boolean,
    "application_gate": _boolean,
    "verify_instances": _boolean,
    "report_dir": _folder,
    "state_dir": _folder,
    "log_format": _log_format,
}
