"""What a setting's value may be: converters from a raw value to a Config field's value.

A raw value is a YAML scalar's value (or its text, for `as_text` settings), an environment string
or a flag's string. Each converter returns the field's value or raises Invalid saying what was
expected; `echo=False` keeps the value itself out of every message (URLs that may carry tokens).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.validation import ACCOUNT_ID_RE, REGION_RE, quote
from orchestrator.yamlsource import Map, Scalar


class Invalid(Exception):
    """A value does not fit its setting (caught by load_config, never raised past it).

    `expected` says what would fit; `echo` False keeps the value out of messages.
    """

    def __init__(self, expected: str, echo: bool = True) -> None:
        super().__init__(expected)
        self.expected, self.echo = expected, echo


Converter = Callable[[object], object]


def optional(convert: Converter) -> Converter:
    """`convert`, letting null (None) through: the setting may be left unset."""
    return lambda raw: None if raw is None else convert(raw)


def text(pattern: re.Pattern[str], expected: str) -> Converter:
    """A string matching `pattern` whole."""

    def convert(raw: object) -> str:
        if not isinstance(raw, str) or not pattern.fullmatch(raw):
            raise Invalid(expected)
        return raw

    return convert


def integer(low: int, high: int) -> Converter:
    """An integer from `low` to `high`, given as a number or a string of digits."""
    expected = f"an integer from {low} to {high}"

    def convert(raw: object) -> int:
        value: object = raw
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", raw):
            value = int(raw)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(expected)
        return value

    return convert


def positive(high: float | None = None) -> Converter:
    """A finite float > 0 (and <= `high`), given as a number or a string."""
    expected = "a number > 0" + (f" and <= {high:g}" if high is not None else "")

    def convert(raw: object) -> float:
        value: object = raw
        if isinstance(raw, str) and len(raw) < 40:
            try:
                value = float(raw)
            except ValueError:
                raise Invalid(expected) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(expected)
        number = float(value)
        if not math.isfinite(number) or number <= 0 or (high is not None and number > high):
            raise Invalid(expected)
        return number

    return convert


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False}
_BOOLS.update({"off": False, "0": False})


def boolean(raw: object) -> bool:
    """true/false, also yes/no, on/off and 1/0 (environment strings, any case)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
        return _BOOLS[raw.strip().lower()]
    raise Invalid("true or false (also yes/no, on/off, 1/0)")


def account_id(raw: object) -> str:
    """A 12-digit account ID as a string: an unquoted YAML number would lose a leading 0."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raise Invalid("a quoted string of 12 digits (unquoted, a leading 0 is lost)")
    return str(text(ACCOUNT_ID_RE, "an AWS account ID (12 digits)")(raw))


ACCOUNT_ACCESS = ("global-view", "assume-role", "profiles")
_ROLE_ARN_RE = re.compile(r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,1224}")
_PROFILE_RE = re.compile(r"\S(.*\S)?")


def account_access(raw: object) -> str:
    """How each account is reached: global-view, assume-role or profiles."""
    if raw not in ACCOUNT_ACCESS:
        raise Invalid("one of " + ", ".join(ACCOUNT_ACCESS))
    return str(raw)


def role_arn(raw: object) -> str:
    """An IAM role ARN, `{accountID}` standing for each target account's ID."""
    expected = "an IAM role ARN template, like arn:aws:iam::{accountID}:role/MGNCutover"
    if not isinstance(raw, str) or not _ROLE_ARN_RE.fullmatch(
        raw.replace("{accountID}", "000000000000")
    ):
        raise Invalid(expected)
    return raw


def external_id(raw: object) -> str:
    """STS's ExternalId: 2-1224 of letters, digits and +=,.@:/-_ (never echoed)."""
    if not isinstance(raw, str) or not _EXTERNAL_ID_RE.fullmatch(raw):
        raise Invalid("2-1224 letters, digits or +=,.@:/-_", echo=False)
    return raw


def account_profiles(raw: object) -> tuple[tuple[str, str], ...]:
    """{accountID: profile} from a config mapping, or `ID=profile,ID=profile` from a string."""
    expected = 'a mapping of quoted 12-digit account IDs to profile names ("ID=profile,..." in env)'
    pairs: list[tuple[object, object]] = []
    if raw is None:
        return ()
    if isinstance(raw, Map):
        for key, node in raw.items:
            if key.value is not None and not isinstance(key.value, str):
                raise Invalid(f"{expected}; quote account {key.text}", echo=False)
            value = node.value if isinstance(node, Scalar) else None
            pairs.append((key.value, value))
    elif isinstance(raw, str):
        for part in raw.split(","):
            left, _, right = part.strip().partition("=")
            pairs.append((left.strip(), right.strip()))
    else:
        raise Invalid(expected)
    found: dict[str, str] = {}
    for account, profile in pairs:
        if not isinstance(account, str) or not ACCOUNT_ID_RE.fullmatch(account):
            raise Invalid(f"{expected}; {quote(account)} is not an account ID", echo=False)
        if not isinstance(profile, str) or not _PROFILE_RE.fullmatch(profile):
            raise Invalid(f"{expected}; account {account} has no profile name", echo=False)
        found[account] = profile
    return tuple(sorted(found.items()))


def endpoint_url(raw: object) -> str:
    """An http(s) URL with a host and nothing secret-looking: it is written to reports."""
    expected = "an http:// or https:// URL with a host"
    if not isinstance(raw, str):
        raise Invalid(expected)
    try:
        parts = urlsplit(raw)
        has_host = bool(parts.hostname)
    except ValueError:
        raise Invalid(expected) from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        # It would reach reports and logs: refuse, and do not repeat it.
        raise Invalid("the URL must not carry a user, password, query or fragment", echo=False)
    if parts.scheme not in ("http", "https") or not has_host:
        raise Invalid(expected)
    return raw


def folder(raw: object) -> Path:
    """A non-empty path (made absolute, where needed, by load_config)."""
    if isinstance(raw, Path):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise Invalid("a folder path")
    return Path(raw)


def one_of(*choices: str) -> Converter:
    """One of the given words."""

    def convert(raw: object) -> str:
        if raw not in choices:
            raise Invalid("one of " + ", ".join(choices))
        return str(raw)

    return convert


def log_format(raw: object) -> str:
    """auto, json or console."""
    if raw not in ("auto", "json", "console"):
        raise Invalid("one of auto, json, console")
    return str(raw)


def state_backend(raw: object) -> str:
    """sqlite or dynamodb."""
    if raw not in ("sqlite", "dynamodb"):
        raise Invalid("one of sqlite, dynamodb")
    return str(raw)


TABLE_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")

_CLOCK_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def window_bound(raw: object) -> dt.time | dt.datetime:
    """HH:MM (dated later, once the timezone is known) or an ISO 8601 instant with an offset."""
    expected = (
        "HH:MM (today, in timezone) or an ISO 8601 date and time with an offset, "
        "like 2026-11-28T22:00:00+01:00"
    )
    instant: dt.datetime | None = None
    if isinstance(raw, dt.datetime):
        instant = raw
    elif isinstance(raw, str):
        written = raw.strip()
        clock = _CLOCK_RE.fullmatch(written)
        if clock:
            return dt.time(int(clock[1]), int(clock[2]))
        try:
            instant = dt.datetime.fromisoformat(written) if len(written) < 64 else None
        except ValueError:
            instant = None
    if instant is None or instant.tzinfo is None or instant.utcoffset() is None:
        raise Invalid(expected)
    return instant


def timezone(raw: object) -> str:
    """An IANA time zone name that zoneinfo knows (kept as the name)."""
    expected = "an IANA time zone name, like UTC or Europe/Paris"
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        raise Invalid(expected)
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(expected) from None
    return raw


_S3_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_EXPECTED = "an s3://bucket/prefix/ URI"


def s3_uri(raw: object) -> str:
    """s3://bucket/ or s3://bucket/prefix/; a refusal says which part is wrong."""
    if not isinstance(raw, str):
        raise Invalid(_S3_EXPECTED)
    scheme, sep, rest = raw.partition("://")
    if scheme != "s3" or not sep:
        raise Invalid(f"{_S3_EXPECTED} (it must start with s3://)")
    bucket, _, prefix = rest.partition("/")
    if not _S3_BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        why = "3-63 lowercase letters, digits, dots or hyphens, starting and ending alphanumeric"
        raise Invalid(f"{_S3_EXPECTED} ({quote(bucket)} is not an S3 bucket name: {why})")
    if not rest.endswith("/"):
        raise Invalid(f"{_S3_EXPECTED} (it must end with /: reports go below the prefix)")
    if "//" in f"/{prefix}" or any(c in prefix for c in "?#\\") or not prefix.isprintable():
        raise Invalid(f"{_S3_EXPECTED} (no empty folder, ?, #, \\ or control character)")
    return raw


_ARN_PARTITION = r"arn:aws(-[a-z]+)*"
KMS_KEY_RE = re.compile(
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"|alias/[A-Za-z0-9/_-]{1,250}"
    rf"|{_ARN_PARTITION}:kms:{REGION_RE.pattern}:[0-9]{{12}}:"
    r"(key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})|alias/[A-Za-z0-9/_-]{1,250})"
)
SNS_TOPIC_RE = re.compile(
    rf"{_ARN_PARTITION}:sns:{REGION_RE.pattern}:[0-9]{{12}}:[A-Za-z0-9_-]{{1,256}}(\.fifo)?"
)


def webhook_url(raw: object) -> str:
    """An https URL, or http to a loopback host; never echoed (its query often holds a token)."""
    expected = "an https:// URL (http:// only to a loopback host); value not shown"
    if not isinstance(raw, str) or not raw.isprintable() or any(c.isspace() for c in raw):
        raise Invalid(expected, echo=False)
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError:
        raise Invalid(expected, echo=False) from None
    if parts.username is not None or parts.password is not None:
        raise Invalid("the URL must not carry a user or password; value not shown", echo=False)
    if parts.fragment:
        raise Invalid("the URL must not carry a #fragment; value not shown", echo=False)
    if not host or parts.scheme not in ("http", "https"):
        raise Invalid(expected, echo=False)
    if parts.scheme == "http" and not _is_loopback(host):
        message = "http:// is allowed only to a loopback host (use https://); value not shown"
        raise Invalid(message, echo=False)
    return raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
