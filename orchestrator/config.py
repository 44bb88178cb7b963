"""Run settings: one spec table, one frozen Config; flag > environment > config file > default.

`SETTINGS` declares every setting once: its Config field (also its config-file key), converter
(from `configvalues`), default, help, and the flag and commands that take it. Its variable is
MGN_CUTOVER_<NAME> (MGN_CUTOVER_FINALIZE_RATE=20). The CLI builds its flags from the table and hands
their raw values back as `overrides`. Every source is checked in full and every problem reported
at once. Credentials are never settings: keys that look like them are refused, and their values
never echoed; neither is a webhook URL, whose query string often carries a token.

Resolved once, at load time: `state_dir` becomes absolute (relative paths against the working
directory; default `$XDG_STATE_HOME/mgn-cutover`, else `~/.local/state/mgn-cutover`), and the
cutover window (`not_before`, `not_after`) becomes timezone-aware datetimes, `HH:MM` meaning that
time today in `timezone`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from orchestrator import configvalues as cv
from orchestrator.configvalues import Converter, Invalid
from orchestrator.errors import ConfigError, Diagnostic
from orchestrator.validation import (
    REGION_RE,
    Sink,
    describe,
    did_you_mean,
    quote,
    unknown_key_message,
)
from orchestrator.yamlsource import Map, Scalar, Seq, read_yaml

LogFormat = Literal["auto", "json", "console"]
StateBackend = Literal["sqlite", "dynamodb"]
AccountAccess = Literal["global-view", "assume-role", "profiles"]

ENV_PREFIX = "MGN_CUTOVER_"
MAX_CONFIG_BYTES = 1024 * 1024
STATE_FOLDER = "mgn-cutover"
_CREDENTIAL_WORDS = ("secret", "password", "passwd", "token", "access_key", "credential", "api_key")
CREDENTIALS_REFUSED = (
    "credentials are not settings: mgn-cutover takes them only from boto3's chain "
    "(AWS profiles, SSO, AWS_* environment variables, instance or task roles); value not shown"
)
REDACTED_QUERY = "?<redacted>"


def default_state_dir(env: Mapping[str, str]) -> Path:
    """The per-user state folder: $XDG_STATE_HOME/mgn-cutover, else ~/.local/state/mgn-cutover.

    A relative XDG_STATE_HOME is ignored, as the XDG spec says.
    """
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / STATE_FOLDER
    home = Path(env.get("HOME") or Path.home()).absolute()
    return home / ".local" / "state" / STATE_FOLDER


@dataclass(frozen=True)
class Config:
    """Effective settings of one command. Holds no credentials: those come from boto3's chain.

    Fields are SETTINGS in order (a test keeps the two in step), plus `origins`: where each
    value set by a source came from (`--region`, `env MGN_CUTOVER_REGION`, `file:line:col`).
    """

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
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    timezone: str = "UTC"
    report_dir: Path = field(default_factory=lambda: Path("reports"))
    state_dir: Path = field(default_factory=lambda: default_state_dir(os.environ))
    log_format: LogFormat = "auto"
    state_backend: StateBackend = "sqlite"
    state_table: str | None = None
    state_region: str | None = None
    state_endpoint_url: str | None = None
    state_lease_s: float = 60.0
    state_heartbeat_s: float = 10.0
    report_uri: str | None = None
    report_kms_key_id: str | None = None
    notify_sns_topic_arn: str | None = None
    # Its query string often holds a token: kept out of repr, redacted in reports.
    notify_webhook_url: str | None = field(default=None, repr=False)
    launch: bool = False
    archive: bool = False
    require_approval: bool = False
    on_failure: str = "keep"
    max_replication_lag_s: float = 300.0
    launch_timeout_s: float = 3600.0
    approve_timeout_s: float = 3600.0
    read_settle_s: float = 300.0
    account_access: AccountAccess = "global-view"
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    account_profiles: tuple[tuple[str, str], ...] = ()
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        """`timezone` as a ZoneInfo (its name was checked at load)."""
        return ZoneInfo(self.timezone)

    @property
    def report_s3(self) -> tuple[str, str] | None:
        """report_uri as (bucket, key prefix: empty or ending in /), or None when unset."""
        if self.report_uri is None:
            return None
        bucket, _, prefix = self.report_uri.removeprefix("s3://").partition("/")
        return bucket, prefix

    def origin(self, setting: str) -> str | None:
        """Where the setting's value came from (`--flag`, `env NAME`, `file:line:col`), or None."""
        return dict(self.origins).get(setting)

    def as_report_dict(self) -> dict[str, object]:
        """The effective settings as plain JSON-ready values; the webhook URL's query redacted."""
        report: dict[str, object] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, dt.datetime):
                value = value.isoformat()
            elif setting.name == "notify_webhook_url" and value is not None:
                value = redact_url(value)
            elif setting.name == "external_id" and value is not None:
                value = "<set>"
            elif setting.name == "account_profiles":
                value = dict(value)
            report[setting.name] = value
        return report


def env_name(setting: str) -> str:
    """The environment variable of a setting: MGN_CUTOVER_<SETTING>."""
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    """The CLI flag of a setting, for messages (settings without a flag get --their-name)."""
    spec = BY_NAME.get(setting)
    if spec is not None and spec.flag is not None:
        return spec.flag
    return "--" + setting.replace("_", "-")


def looks_like_credential(key: str) -> bool:
    """True for names such as aws_secret_access_key, session_token or password."""
    lowered = key.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def redact_url(url: str) -> str:
    """A URL safe to log or report: scheme, host, port and first path segment; the rest of the
    path and any query `<redacted>` (Slack keeps its token in the path, others in the query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparseable URL redacted>"
    host = f"[{host}]" if ":" in host else host
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else "/"
    if len(segments) > 1:
        path += "/<redacted>"
    return f"{parts.scheme}://{host}{port}{path}" + (REDACTED_QUERY if parts.query else "")


def flag_overrides(values: Mapping[str, object]) -> dict[str, object]:
    """The settings given as flags, from parsed arguments (`vars(namespace)`), still raw."""
    return {
        s.name: values[s.name]
        for s in SETTINGS
        if s.flag is not None and values.get(s.name) is not None
    }


def load_config(
    path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
    *,
    cwd: Path | None = None,
    now: dt.datetime | None = None,
) -> Config:
    """The effective Config: `overrides` (flags) > MGN_CUTOVER_* in `env` > file > defaults.

    `cwd` (default: the working directory) anchors a relative state_dir; `now` (default: the
    clock) dates an `HH:MM` window bound. Raises ConfigError with every problem of every source:
    an unreadable or malformed file, unknown keys, credential-like keys, wrong types,
    out-of-range values and a window that ends before it starts.
    """
    diagnostics: list[Diagnostic] = []
    values: dict[str, object] = {}
    origins: dict[str, Diagnostic] = {}  # setting -> where its value was written (message unused)
    if path is not None:
        _from_file(path, values, origins, diagnostics)
    _from_env(env, values, origins, diagnostics)
    _from_overrides(overrides, values, origins, diagnostics)
    values["state_dir"] = _state_dir(values.get("state_dir"), env, cwd)
    _resolve_window(values, origins, now, diagnostics)
    _check_report_key(values, origins, diagnostics)
    _check_heartbeat(values, origins, diagnostics)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise ConfigError(errors)
    where = tuple((name, _where(at)) for name, at in origins.items())
    return Config(**values, origins=where)  # type: ignore[arg-type]  # converted per field


def _where(at: Diagnostic) -> str:
    return str(at).removesuffix(": ")


def _from_file(
    path: Path,
    values: dict[str, object],
    origins: dict[str, Diagnostic],
    diagnostics: list[Diagnostic],
) -> None:
    doc = read_yaml(path, max_bytes=MAX_CONFIG_BYTES)
    sink = Sink(doc.path)
    sink.extend(doc.diagnostics)
    root = doc.root
    if root is not None and not isinstance(root, Map):
        sink.at(root, f"a config file must be a mapping of setting: value, got {describe(root)}")
    elif isinstance(root, Map):
        for key, node in root.items:
            spec = BY_NAME.get(key.text)
            if looks_like_credential(key.text):
                sink.at(key, f"{key.text}: {CREDENTIALS_REFUSED}")
            elif spec is None:
                sink.at(key, unknown_key_message(key.text, BY_NAME))
            else:
                raw: object = node
                if isinstance(node, Scalar):
                    # As written: `22:00` is a time here, not YAML 1.1's sexagesimal 1320.
                    as_text = spec.as_text and node.value is not None
                    raw = node.text if as_text else node.value
                try:
                    values[key.text] = spec.convert(raw)
                    origins[key.text] = Diagnostic(doc.path, node.line, node.col, "")
                except Invalid as bad:
                    sink.at(node, f"{key.text}: {_problem(bad, node)}")
    diagnostics.extend(sink.diagnostics)


def _from_env(
    env: Mapping[str, str],
    values: dict[str, object],
    origins: dict[str, Diagnostic],
    diagnostics: list[Diagnostic],
) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        setting, raw = name[len(ENV_PREFIX) :].lower(), env[name]
        where = f"env {name}"
        spec = BY_NAME.get(setting)
        if looks_like_credential(setting):
            diagnostics.append(Diagnostic(where, 0, 0, CREDENTIALS_REFUSED))
        elif spec is None:
            guess = did_you_mean(setting, BY_NAME)
            hint = f"; did you mean {env_name(guess)}?" if guess else ""
            diagnostics.append(Diagnostic(where, 0, 0, f"unknown setting{hint}"))
        elif raw.strip():  # an empty variable counts as unset
            try:
                values[setting] = spec.convert(raw)
                origins[setting] = Diagnostic(where, 0, 0, "")
            except Invalid as bad:
                diagnostics.append(Diagnostic(where, 0, 0, _problem(bad, raw)))


def _from_overrides(
    overrides: Mapping[str, object],
    values: dict[str, object],
    origins: dict[str, Diagnostic],
    diagnostics: list[Diagnostic],
) -> None:
    for setting, raw in overrides.items():
        where = flag_name(setting)
        spec = BY_NAME.get(setting)
        if looks_like_credential(setting):
            diagnostics.append(Diagnostic(where, 0, 0, CREDENTIALS_REFUSED))
        elif spec is None:
            diagnostics.append(Diagnostic(where, 0, 0, f"unknown setting {quote(setting)}"))
        elif raw is not None:
            try:
                values[setting] = spec.convert(raw)
                origins[setting] = Diagnostic(where, 0, 0, "")
            except Invalid as bad:
                diagnostics.append(Diagnostic(where, 0, 0, _problem(bad, raw)))


def _state_dir(configured: object, env: Mapping[str, str], cwd: Path | None) -> Path:
    """Absolute, once: runs from any working directory meet the same lock and journal."""
    if not isinstance(configured, Path):
        return default_state_dir(env)
    if str(configured).startswith("~"):
        configured = configured.expanduser()
    return Path(os.path.normpath((cwd or Path.cwd()) / configured))


def _resolve_window(
    values: dict[str, object],
    origins: dict[str, Diagnostic],
    now: dt.datetime | None,
    diagnostics: list[Diagnostic],
) -> None:
    """`HH:MM` bounds become today's date in `timezone`; a window must end after it starts."""
    zone_name = values.get("timezone", "UTC")
    if not isinstance(zone_name, str):
        return
    zone = ZoneInfo(zone_name)  # its converter checked the name
    today = (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
    for name in ("not_before", "not_after"):
        bound = values.get(name)
        if isinstance(bound, dt.time):
            values[name] = dt.datetime.combine(today, bound, tzinfo=zone)
    start, end = values.get("not_before"), values.get("not_after")
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime) and end <= start:
        at = origins["not_after"]
        message = (
            f"not_after: the cutover window ends ({end.isoformat()}) before it starts "
            f"(not_before {start.isoformat()}, from {_where(origins['not_before'])}); HH:MM "
            "means today in timezone, so a window past midnight needs not_after with a date"
        )
        diagnostics.append(Diagnostic(at.path, at.line, at.col, message))


def _check_report_key(
    values: dict[str, object], origins: dict[str, Diagnostic], diagnostics: list[Diagnostic]
) -> None:
    if values.get("report_kms_key_id") is not None and values.get("report_uri") is None:
        at = origins["report_kms_key_id"]
        message = "report_kms_key_id: set, but report_uri is not: it encrypts reports sent there"
        diagnostics.append(Diagnostic(at.path, at.line, at.col, message))


def _check_heartbeat(
    values: dict[str, object], origins: dict[str, Diagnostic], diagnostics: list[Diagnostic]
) -> None:
    """A lease's heartbeat must come well inside the lease."""
    lease = values.get("state_lease_s", 60.0)
    beat = values.get("state_heartbeat_s", 10.0)
    if isinstance(lease, float) and isinstance(beat, float) and beat * 2 > lease:
        name = "state_heartbeat_s" if "state_heartbeat_s" in origins else "state_lease_s"
        at = origins.get(name) or Diagnostic("defaults", 0, 0, "")
        message = (
            f"{name}: the heartbeat ({beat:g} s) must be at most half the lease "
            f"({lease:g} s), or a slow renewal loses the lease"
        )
        diagnostics.append(Diagnostic(at.path, at.line, at.col, message))


def _problem(bad: Invalid, raw: object) -> str:
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


# --- the spec ------------------------------------------------------------------------------------

Command = Literal[
    "plan", "export-plan", "run", "report", "status", "approve", "state", "import"
]  # fmt: skip
_READS: tuple[Command, ...] = ("plan", "export-plan", "run", "report", "status")
_TARGETS: tuple[Command, ...] = (*_READS, "import")  # where to reach MGN
_RUNS: tuple[Command, ...] = ("run", "report", "status", "approve")
_STATE: tuple[Command, ...] = ("run", "report", "status", "approve", "state")


@dataclass(frozen=True)
class Setting:
    """One setting: Config field and file key `name`, env MGN_CUTOVER_<NAME>, and its flag.

    `default` is the value documented in config.example.yaml (state_dir's None: the per-user
    folder). `commands` take the flag; `switch` flags take no value and set True; `as_text`
    settings read a file's scalar as written.
    """

    name: str
    convert: Converter
    default: object
    help: str
    flag: str | None = None
    commands: tuple[Command, ...] = ()
    metavar: str | None = None
    switch: bool = False
    choices: tuple[str, ...] = ()
    as_text: bool = False

    @property
    def env(self) -> str:
        return env_name(self.name)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "region",
        cv.optional(cv.text(REGION_RE, "an AWS region (like us-east-1)")),
        None,
        "AWS region for plans that name none",
        "--region",
        _TARGETS,
    ),
    Setting(
        "profile",
        cv.optional(cv.text(re.compile(r"\S(.*\S)?"), "an AWS profile name")),
        None,
        "AWS profile from the shared config",
        "--profile",
        _TARGETS,
    ),
    Setting(
        "endpoint_url",
        cv.optional(cv.endpoint_url),
        None,
        "MGN endpoint (an emulator)",
        "--endpoint-url",
        _TARGETS,
        "URL",
    ),
    Setting(
        "account_id",
        cv.optional(cv.account_id),
        None,
        "MGN accountID (12 digits) for plans that name none",
        "--account-id",
        _TARGETS,
        "ID",
    ),
    Setting(
        "concurrency",
        cv.integer(1, 1000),
        16,
        "FinalizeCutover calls in flight",
        "--concurrency",
        _RUNS,
        "N",
    ),
    Setting(
        "finalize_rate",
        cv.positive(10000),
        5.0,
        "finalizes per second",
        "--finalize-rate",
        _RUNS,
        "R",
    ),
    Setting(
        "describe_rate",
        cv.positive(10000),
        5.0,
        "reads per second",
        "--describe-rate",
        _READS,
        "R",
    ),
    Setting(
        "poll_interval_s",
        cv.positive(),
        15.0,
        "seconds between polls",
        "--poll-interval",
        _RUNS,
        "S",
    ),
    Setting(
        "reconcile_timeout_s",
        cv.positive(),
        1800.0,
        "reconcile deadline, s",
        "--timeout",
        _RUNS,
        "S",
    ),
    Setting(
        "max_attempts",
        cv.integer(1, 100),
        8,
        "attempts per MGN call",
        "--max-attempts",
        _RUNS,
        "N",
    ),
    Setting("server_deadline_s", cv.positive(), 600.0, "seconds one MGN call may keep retrying"),
    Setting("require_first_boot", cv.boolean, True, "require firstBoot SUCCEEDED"),
    Setting("application_gate", cv.boolean, True, "one blocked server holds its application"),
    Setting(
        "verify_instances",
        cv.boolean,
        False,
        "require each launched EC2 instance to be running and pass both status checks",
        "--verify-instances",
        _READS,
        switch=True,
    ),
    Setting(
        "not_before",
        cv.optional(cv.window_bound),
        None,
        "start no finalize before this: HH:MM (today, in --timezone) or ISO 8601 with an offset",
        "--not-before",
        ("run",),
        "TIME",
        as_text=True,
    ),
    Setting(
        "not_after",
        cv.optional(cv.window_bound),
        None,
        "start no finalize after this: HH:MM (today, in --timezone) or ISO 8601 with an offset",
        "--not-after",
        ("run",),
        "TIME",
        as_text=True,
    ),
    Setting(
        "timezone",
        cv.timezone,
        "UTC",
        "IANA time zone of HH:MM window bounds",
        "--timezone",
        ("run",),
        "ZONE",
    ),
    Setting("report_dir", cv.folder, Path("reports"), "report folder", "--report-dir", _RUNS, "D"),
    Setting(
        "state_dir",
        cv.optional(cv.folder),
        None,
        "journal and lock folder (default: $XDG_STATE_HOME/mgn-cutover)",
        "--state-dir",
        _RUNS,
        "D",
    ),
    Setting(
        "log_format",
        cv.log_format,
        "auto",
        "log output",
        "--log-format",
        _READS,
        choices=("auto", "json", "console"),
    ),
    Setting(
        "state_backend",
        cv.state_backend,
        "sqlite",
        "where the journal and lock live: sqlite (state_dir) or dynamodb (state_table)",
        "--state-backend",
        _RUNS,
        choices=("sqlite", "dynamodb"),
    ),
    Setting(
        "state_table",
        cv.optional(cv.text(cv.TABLE_RE, "a DynamoDB table name (3-255 of A-Za-z0-9_.-)")),
        None,
        "DynamoDB table of journals and leases (state_backend dynamodb)",
        "--state-table",
        _RUNS,
        "NAME",
    ),
    Setting(
        "state_region",
        cv.optional(cv.text(REGION_RE, "an AWS region (like us-east-1)")),
        None,
        "region of state_table (default: region, else the AWS default region)",
        "--state-region",
        _STATE,
        "REGION",
    ),
    Setting(
        "state_endpoint_url",
        cv.optional(cv.endpoint_url),
        None,
        "DynamoDB endpoint (moto, DynamoDB Local)",
        "--state-endpoint-url",
        _STATE,
        "URL",
    ),
    Setting(
        "state_lease_s",
        cv.positive(3600),
        60.0,
        "seconds a DynamoDB lease lasts unless renewed",
    ),
    Setting(
        "state_heartbeat_s",
        cv.positive(1800),
        10.0,
        "seconds between lease renewals (at most half of state_lease_s)",
    ),
    Setting("report_uri", cv.optional(cv.s3_uri), None, "s3://bucket/prefix/ to upload reports to"),
    Setting(
        "report_kms_key_id",
        cv.optional(
            cv.text(cv.KMS_KEY_RE, "a KMS key ID, key ARN, alias name (alias/...) or alias ARN")
        ),
        None,
        "KMS key for reports uploaded to report_uri",
    ),
    Setting(
        "notify_sns_topic_arn",
        cv.optional(cv.text(cv.SNS_TOPIC_RE, "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")),
        None,
        "SNS topic told the outcome of a run",
    ),
    Setting(
        "notify_webhook_url",
        cv.optional(cv.webhook_url),
        None,
        "https URL told the outcome of a run",
    ),
    Setting(
        "launch",
        cv.boolean,
        False,
        "the whole night: StartCutover for READY_FOR_CUTOVER servers, watch, verify, finalize",
        "--launch",
        ("plan", "run"),
        switch=True,
    ),
    Setting(
        "archive",
        cv.boolean,
        False,
        "MarkAsArchived each server once MGN shows it CUTOVER + DISCONNECTED",
        "--archive",
        ("run",),
        switch=True,
    ),
    Setting(
        "require_approval",
        cv.boolean,
        False,
        "finalize a verified application only once `mgn-cutover approve` recorded an approval",
        "--require-approval",
        ("run",),
        switch=True,
    ),
    Setting(
        "on_failure",
        cv.one_of("keep", "revert"),
        "keep",
        "an application that failed to launch or verify: keep it for a person, or revert it",
        "--on-failure",
        ("run",),
        choices=("keep", "revert"),
    ),
    Setting(
        "max_replication_lag_s",
        cv.positive(),
        300.0,
        "launch only servers whose replication lags less than this (seconds)",
    ),
    Setting(
        "launch_timeout_s",
        cv.positive(),
        3600.0,
        "a launched server not verified within this many seconds has failed",
    ),
    Setting(
        "approve_timeout_s",
        cv.positive(),
        3600.0,
        "a verified application not approved within this many seconds is not finalized",
    ),
    Setting(
        "read_settle_s",
        cv.positive(),
        300.0,
        "how long MGN's reads may lag a call: a rerun only polls (never sends again) a "
        "FinalizeCutover an earlier run sent this recently and never heard answered",
    ),
    Setting(
        "account_access",
        cv.account_access,
        "global-view",
        "how each plan account is reached: global-view (accountID on every call), assume-role "
        "(role_arn in each account) or profiles (account_profiles)",
        "--account-access",
        _TARGETS,
        choices=cv.ACCOUNT_ACCESS,
    ),
    Setting(
        "role_arn",
        cv.optional(cv.role_arn),
        None,
        "assume-role: the role in each account, {accountID} standing for its ID",
    ),
    Setting(
        "external_id",
        cv.optional(cv.external_id),
        None,
        "assume-role: the ExternalId the roles' trust policy asks for",
    ),
    Setting(
        "account_profiles",
        cv.account_profiles,
        (),
        'profiles: {accountID: profile} (env: "ID=profile,ID=profile")',
    ),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
