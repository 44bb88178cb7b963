"""Settings: flag > environment > file > default, every problem reported, credentials refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator.cli import build_parser
from orchestrator.config import (
    MAX_CONFIG_BYTES,
    SETTINGS,
    Config,
    default_state_dir,
    flag_overrides,
    load_config,
    looks_like_credential,
)
from orchestrator.errors import ConfigError
from orchestrator.yamlsource import Map, Scalar, parse_yaml

REPO = Path(__file__).resolve().parent.parent
FIELDS = [s.name for s in SETTINGS]
CREDENTIALS_TAIL = "value not shown"


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(
    path: Path | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
) -> list[str]:
    """The diagnostics load_config raises, as the CLI prints them."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {}, overrides or {})
    return [str(d) for d in info.value.diagnostics]


# --- precedence and conversion -----------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    """No file, no MGN_CUTOVER_* variable and no flag give Config's defaults."""
    env = {"XDG_STATE_HOME": "/var/state", "AWS_REGION": "eu-west-1"}
    expected = dataclasses.replace(Config(), state_dir=Path("/var/state/mgn-cutover"))
    assert load_config(None, env, {}) == expected


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    """Each source overrides the ones below it, setting by setting."""
    path = config_file(tmp_path, "finalize_rate: 2\nconcurrency: 8\nmax_attempts: 3\n")
    env = {"MGN_CUTOVER_FINALIZE_RATE": "20", "MGN_CUTOVER_CONCURRENCY": "32"}
    config = load_config(path, env, {"finalize_rate": "50"})
    assert (config.finalize_rate, config.concurrency, config.max_attempts) == (50.0, 32, 3)
    assert config.describe_rate == Config().describe_rate


def test_environment_strings_are_converted(tmp_path: Path) -> None:
    """Environment strings become ints, floats, booleans (true/false/yes/no/1/0) and paths."""
    env = {
        "MGN_CUTOVER_CONCURRENCY": " 40 ",
        "MGN_CUTOVER_POLL_INTERVAL_S": "2.5",
        "MGN_CUTOVER_VERIFY_INSTANCES": "yes",
        "MGN_CUTOVER_REQUIRE_FIRST_BOOT": "0",
        "MGN_CUTOVER_APPLICATION_GATE": "FALSE",
        "MGN_CUTOVER_REPORT_DIR": str(tmp_path / "r"),
        "MGN_CUTOVER_ACCOUNT_ID": "011122223333",
        "MGN_CUTOVER_REGION": "",  # empty counts as unset
    }
    config = load_config(None, env, {})
    assert (config.concurrency, config.poll_interval_s) == (40, 2.5)
    assert (config.verify_instances, config.require_first_boot, config.application_gate) == (
        True,
        False,
        False,
    )
    assert (config.report_dir, config.account_id, config.region) == (
        tmp_path / "r",
        "011122223333",
        None,
    )


def test_flags_may_be_raw_strings_or_typed_values() -> None:
    """Overrides accept argparse's raw strings and already-typed values alike."""
    config = load_config(
        None,
        {},
        {
            "concurrency": "4",
            "finalize_rate": 2,
            "verify_instances": True,
            "state_dir": Path("/tmp/s"),
            "endpoint_url": "http://127.0.0.1:4010",
            "log_format": "json",
        },
    )
    assert (config.concurrency, config.finalize_rate, config.verify_instances) == (4, 2.0, True)
    assert (config.state_dir, config.endpoint_url, config.log_format) == (
        Path("/tmp/s"),
        "http://127.0.0.1:4010",
        "json",
    )


def test_file_values_keep_their_yaml_types(tmp_path: Path) -> None:
    """A file's numbers, booleans, nulls and strings become the right field types."""
    path = config_file(
        tmp_path,
        'region: eu-central-1\nprofile: migration-admin\naccount_id: "111122223333"\n'
        "reconcile_timeout_s: 60\nverify_instances: yes\nendpoint_url: null\n"
        "state_dir: /var/lib/mgn\n",
    )
    config = load_config(path, {}, {})
    assert config == Config(
        region="eu-central-1",
        profile="migration-admin",
        account_id="111122223333",
        reconcile_timeout_s=60.0,
        verify_instances=True,
        state_dir=Path("/var/lib/mgn"),
    )


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    """A config file with only comments sets nothing."""
    assert load_config(config_file(tmp_path, "# nothing\n"), {}, {}) == Config()


def test_report_dict_is_plain_json_of_every_setting(tmp_path: Path) -> None:
    """as_report_dict holds every field, paths as strings, and serializes to JSON as is."""
    config = load_config(None, {}, {"report_dir": str(tmp_path), "profile": "ops"})
    report = config.as_report_dict()
    assert list(report) == FIELDS
    assert report["report_dir"] == str(tmp_path) and report["profile"] == "ops"
    assert json.loads(json.dumps(report)) == report


# --- refusals ----------------------------------------------------------------------------------


def test_unknown_keys_suggest_the_right_name(tmp_path: Path) -> None:
    """A misspelt key in the file or environment is refused with a did-you-mean."""
    path = config_file(tmp_path, "finalise_rate: 3\npoll_interval: 5\ncolour: red\n")
    assert problems(path, {"MGN_CUTOVER_CONCURENCY": "3"}) == [
        f'{path}:1:1: unknown key "finalise_rate"; did you mean "finalize_rate"?',
        f'{path}:2:1: unknown key "poll_interval"; did you mean "poll_interval_s"?',
        f'{path}:3:1: unknown key "colour" (allowed: {", ".join(FIELDS)})',
        "env MGN_CUTOVER_CONCURENCY: unknown setting; did you mean MGN_CUTOVER_CONCURRENCY?",
    ]


@pytest.mark.parametrize(
    ("setting", "raw", "expected"),
    [
        ("concurrency", "0", "an integer from 1 to 1000"),
        ("concurrency", "1001", "an integer from 1 to 1000"),
        ("concurrency", "many", "an integer from 1 to 1000"),
        ("concurrency", "2.5", "an integer from 1 to 1000"),
        ("max_attempts", "0", "an integer from 1 to 100"),
        ("max_attempts", "101", "an integer from 1 to 100"),
        ("finalize_rate", "0", "a number > 0 and <= 10000"),
        ("finalize_rate", "10001", "a number > 0 and <= 10000"),
        ("describe_rate", "nan", "a number > 0 and <= 10000"),
        ("poll_interval_s", "0", "a number > 0"),
        ("reconcile_timeout_s", "-5", "a number > 0"),
        ("server_deadline_s", "inf", "a number > 0"),
        ("verify_instances", "maybe", "true or false (also yes/no, on/off, 1/0)"),
        ("region", "US-EAST-1", "an AWS region (like us-east-1)"),
        ("account_id", "1234", "an AWS account ID (12 digits)"),
        ("endpoint_url", "ftp://mgn.local", "an http:// or https:// URL with a host"),
        ("endpoint_url", "localhost:4010", "an http:// or https:// URL with a host"),
        ("log_format", "xml", "one of auto, json, console"),
        ("profile", "ops ", "an AWS profile name"),
    ],
)
def test_bad_environment_values(setting: str, raw: str, expected: str) -> None:
    """Each out-of-range or mistyped environment value is refused, quoting it."""
    name = f"MGN_CUTOVER_{setting.upper()}"
    assert problems(env={name: raw}) == [
        f"env {name}: expected {expected}, got the string {json.dumps(raw)}"
    ]


def test_bad_file_values_are_located(tmp_path: Path) -> None:
    """Mistyped file values are refused at their line and column, saying what they are."""
    path = config_file(
        tmp_path,
        "concurrency: true\nfinalize_rate: fast\naccount_id: 111122223333\n"
        "report_dir: [a]\nregion: null\nlog_format: 1\nconcurrency_x: 1\n",
    )
    assert problems(path) == [
        f"{path}:1:14: concurrency: expected an integer from 1 to 1000, got the boolean true",
        f'{path}:2:16: finalize_rate: expected a number > 0 and <= 10000, got the string "fast"',
        f"{path}:3:13: account_id: expected a quoted string of 12 digits (unquoted, a leading 0 "
        "is lost), got the number 111122223333",
        f"{path}:4:13: report_dir: expected a folder path, got a list",
        f"{path}:6:13: log_format: expected one of auto, json, console, got the number 1",
        f'{path}:7:1: unknown key "concurrency_x"; did you mean "concurrency"?',
    ]


def test_bad_flags_are_named_by_flag() -> None:
    """A bad flag value is reported under the flag's own name, without :0:0."""
    assert problems(overrides={"poll_interval_s": "0", "concurrency": "x", "nope": 1}) == [
        '--poll-interval: expected a number > 0, got the string "0"',
        '--concurrency: expected an integer from 1 to 1000, got the string "x"',
        '--nope: unknown setting "nope"',
    ]


def test_endpoint_with_credentials_is_refused_without_echo() -> None:
    """An endpoint URL carrying a password or query is refused and never repeated."""
    url = "https://admin:Sup3rSecret@mgn.local/?X-Amz-Security-Token=tok3n"
    found = problems(overrides={"endpoint_url": url})
    assert found == ["--endpoint-url: the URL must not carry a user, password, query or fragment"]
    assert "Sup3rSecret" not in "".join(found) and "tok3n" not in "".join(found)


@pytest.mark.parametrize(
    "key", ["aws_access_key_id", "aws_secret_access_key", "aws_session_token", "password", "secret"]
)
def test_credential_keys_in_file_refused_without_echoing_the_value(
    tmp_path: Path, key: str
) -> None:
    """A credential in the config file is refused, pointing at boto3's chain, value unseen."""
    path = config_file(tmp_path, f"region: us-east-1\n{key}: wJalrXUtnFEMI/K7MDENG\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    text = str(info.value)
    assert text.startswith(f"{path}:2:1: {key}: credentials are not settings:")
    assert "boto3's chain" in text and CREDENTIALS_TAIL in text
    assert "wJalrXUtnFEMI" not in text and "did you mean" not in text


def test_credentials_in_env_and_flags_refused_without_echo() -> None:
    """MGN_CUTOVER_AWS_SECRET_ACCESS_KEY and a password override are refused, values unseen."""
    with pytest.raises(ConfigError) as info:
        load_config(
            None,
            {"MGN_CUTOVER_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY": "x"},
            {"password": "hunter2"},
        )
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "env MGN_CUTOVER_AWS_SECRET_ACCESS_KEY",
        "--password",
    ]
    assert "wJalrXUtnFEMI" not in str(info.value) and "hunter2" not in str(info.value)


def test_every_problem_of_every_source_at_once(tmp_path: Path) -> None:
    """Bad values in the file, the environment and the flags are reported together."""
    path = config_file(tmp_path, "concurrency: 0\n")
    found = problems(path, {"MGN_CUTOVER_MAX_ATTEMPTS": "0"}, {"finalize_rate": "-1"})
    assert [line.split(":")[0] for line in found] == [
        str(path),
        "env MGN_CUTOVER_MAX_ATTEMPTS",
        "--finalize-rate",
    ]


def test_config_file_read_with_the_plan_reader_rules(tmp_path: Path) -> None:
    """Config files get the YAML reader's refusals: anchors, bad YAML, non-mappings, size."""
    path = config_file(tmp_path, "concurrency: &n 4\nmax_attempts: *n\n")
    assert problems(path) == [
        f'{path}:1:14: YAML anchors and aliases are not allowed (found anchor "&n"); '
        "write values out"
    ]
    path = config_file(tmp_path, "- concurrency: 4\n")
    assert problems(path) == [
        f"{path}:1:1: a config file must be a mapping of setting: value, got a list"
    ]
    path = config_file(tmp_path, "x" * (MAX_CONFIG_BYTES + 1))
    assert problems(path) == [f"{path}: file is 1,048,577 bytes, over the 1,048,576-byte limit"]
    assert problems(tmp_path / "none.yaml") == [
        f"{tmp_path / 'none.yaml'}: no such file or directory"
    ]


# --- the documented example and the field tables -----------------------------------------------


def test_example_config_loads_to_the_defaults() -> None:
    """config.example.yaml loads, and the values it shows are exactly Config's defaults."""
    assert load_config(REPO / "config.example.yaml", {}, {}) == Config()


def test_example_config_documents_every_field_with_a_comment() -> None:
    """Every Config field is a key of config.example.yaml, right below a comment explaining it."""
    path = REPO / "config.example.yaml"
    doc = parse_yaml(path.read_bytes(), str(path))
    assert isinstance(doc.root, Map)
    keys = [k.text for k, _ in doc.root.items]
    assert keys == FIELDS
    lines = path.read_text(encoding="utf-8").splitlines()
    for key, _ in doc.root.items:
        assert lines[key.line - 2].startswith("# "), f"{key.text} has no comment above it"


def test_field_tables_agree() -> None:
    """Config's fields are the spec's settings, in order; none looks like a secret."""
    assert [f.name for f in dataclasses.fields(Config) if f.name != "origins"] == FIELDS
    assert not [f for f in FIELDS if looks_like_credential(f)]


# --- the spec: one declaration gives file key, variable, flag and default ------------------------

# A valid raw value for every setting that has a flag (switches take none).
FLAG_SAMPLES: dict[str, str | None] = {
    "region": "eu-west-1",
    "profile": "ops",
    "endpoint_url": "http://127.0.0.1:4010",
    "account_id": "011122223333",
    "concurrency": "4",
    "finalize_rate": "2.5",
    "describe_rate": "3",
    "poll_interval_s": "0.5",
    "reconcile_timeout_s": "60",
    "max_attempts": "3",
    "verify_instances": None,
    "not_before": "2026-11-28T22:00:00+01:00",
    "not_after": "2026-11-29T02:00:00+01:00",
    "timezone": "Europe/Paris",
    "report_dir": "/tmp/r",
    "state_dir": "/tmp/s",
    "log_format": "json",
    "launch": None,
    "archive": None,
    "require_approval": None,
    "on_failure": "revert",
    "state_backend": "dynamodb",
    "state_table": "mgn-cutover-state",
    "state_region": "eu-west-1",
    "state_endpoint_url": "http://127.0.0.1:5000",
    "account_access": "profiles",
}
COMMAND_ARGS = {
    "plan": ["plan", "w.yaml", "--wave", "w"],
    "export-plan": ["export-plan", "--mgn-wave", "x"],
    "run": ["run", "w.yaml", "--wave", "w"],
    "report": ["report", "--wave", "w"],
    "status": ["status", "--wave", "w"],
    "approve": ["approve", "w.yaml", "--wave", "w", "--application", "a"],
    "state": ["state", "init", "--table", "t"],
    "import": ["import", "f.csv", "--out", "d"],
}


def test_every_setting_is_in_the_example_with_the_spec_default() -> None:
    """config.example.yaml shows each spec entry at its default, and Config's defaults agree."""
    path = REPO / "config.example.yaml"
    doc = parse_yaml(path.read_bytes(), str(path))
    assert isinstance(doc.root, Map)
    shown = {key.text: node for key, node in doc.root.items}
    defaults = Config()
    for setting in SETTINGS:
        node = shown[setting.name]
        assert isinstance(node, Scalar)
        raw = node.text if setting.as_text and node.value is not None else node.value
        assert setting.convert(raw) == setting.default, setting.name
        expected = default_state_dir(os.environ) if setting.name == "state_dir" else setting.default
        assert getattr(defaults, setting.name) == expected, setting.name


def test_every_flag_parses_to_its_setting() -> None:
    """Each setting's flag, on every command that takes it, sets that setting and no other."""
    assert set(FLAG_SAMPLES) == {s.name for s in SETTINGS if s.flag is not None}
    parser = build_parser()
    for setting in SETTINGS:
        if setting.flag is None:
            continue
        raw = FLAG_SAMPLES[setting.name]
        assert setting.commands, setting.name
        for command in setting.commands:
            value = [] if raw is None else [raw]
            ns = parser.parse_args([*COMMAND_ARGS[command], setting.flag, *value])
            overrides = flag_overrides(vars(ns))
            assert overrides == {setting.name: True if raw is None else raw}, setting.flag
            config = load_config(None, {}, overrides)
            assert getattr(config, setting.name) != getattr(Config(), setting.name)
            assert config.origin(setting.name) == setting.flag


def test_every_setting_has_its_environment_variable(tmp_path: Path) -> None:
    """MGN_CUTOVER_<NAME> sets each setting, and the config is told where it came from."""
    switches = {"verify_instances", "launch", "archive", "require_approval"}
    for name, raw in {
        **FLAG_SAMPLES,
        **dict.fromkeys(switches, "true"),
        "server_deadline_s": "9",
    }.items():
        assert raw is not None
        env = {f"MGN_CUTOVER_{name.upper()}": raw}
        config = load_config(None, env, {}, cwd=tmp_path)
        assert getattr(config, name) != getattr(Config(), name), name
        assert config.origin(name) == f"env MGN_CUTOVER_{name.upper()}"


# --- state_dir: absolute and per user ----------------------------------------------------------


def test_state_dir_defaults_to_the_users_state_folder() -> None:
    """Default: $XDG_STATE_HOME/mgn-cutover; without it (or if relative) ~/.local/state/..."""
    assert load_config(None, {"XDG_STATE_HOME": "/x/state"}, {}).state_dir == Path(
        "/x/state/mgn-cutover"
    )
    for env in ({"HOME": "/home/ops"}, {"HOME": "/home/ops", "XDG_STATE_HOME": "rel"}):
        config = load_config(None, env, {})
        assert config.state_dir == Path("/home/ops/.local/state/mgn-cutover")
        assert config.origin("state_dir") is None


def test_relative_state_dir_is_resolved_once_against_the_working_directory(
    tmp_path: Path,
) -> None:
    """A relative state_dir, from any source, becomes absolute against the cwd at load time."""
    path = config_file(tmp_path, "state_dir: ./state/../journal\n")
    config = load_config(path, {}, {}, cwd=tmp_path / "ops")
    assert config.state_dir == tmp_path / "ops" / "journal"
    assert config.origin("state_dir") == f"{path}:1:12"
    config = load_config(None, {}, {"state_dir": "s"}, cwd=tmp_path)
    assert (config.state_dir, config.origin("state_dir")) == (tmp_path / "s", "--state-dir")


# --- the cutover window ------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 28, 20, 30, tzinfo=dt.UTC)


def test_hh_mm_bounds_are_today_in_the_timezone(tmp_path: Path) -> None:
    """HH:MM means that time today in `timezone` (the day of the command's start, there)."""
    path = config_file(tmp_path, "not_before: 22:00\nnot_after: '23:30'\ntimezone: Asia/Tokyo\n")
    config = load_config(path, {}, {}, now=NOW)
    tokyo = ZoneInfo("Asia/Tokyo")  # 20:30 UTC on the 28th is already the 29th in Tokyo
    assert config.not_before == dt.datetime(2026, 11, 29, 22, 0, tzinfo=tokyo)
    assert config.not_after == dt.datetime(2026, 11, 29, 23, 30, tzinfo=tokyo)
    assert (config.timezone, config.zone) == ("Asia/Tokyo", tokyo)
    report = config.as_report_dict()
    assert report["not_before"] == "2026-11-29T22:00:00+09:00"
    assert json.loads(json.dumps(report)) == report


def test_iso_bounds_keep_their_offset_and_default_timezone_is_utc() -> None:
    """ISO 8601 bounds with an offset (also Z) are taken as given; HH:MM defaults to UTC."""
    config = load_config(
        None, {"MGN_CUTOVER_NOT_AFTER": "2026-11-29T01:00:00Z"}, {"not_before": "21:15"}, now=NOW
    )
    assert config.not_before == dt.datetime(2026, 11, 28, 21, 15, tzinfo=ZoneInfo("UTC"))
    assert config.not_after == dt.datetime(2026, 11, 29, 1, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("raw", ["2026-11-28T22:00:00", "2026-11-28", "25:00", "10pm", "7"])
def test_bounds_without_an_offset_or_a_clock_time_are_refused(raw: str) -> None:
    """A naive ISO time, a date, or anything not HH:MM is refused, saying what is expected."""
    assert problems(overrides={"not_before": raw}) == [
        "--not-before: expected HH:MM (today, in timezone) or an ISO 8601 date and time with an "
        f"offset, like 2026-11-28T22:00:00+01:00, got the string {json.dumps(raw)}"
    ]


def test_a_window_that_ends_before_it_starts_is_refused(tmp_path: Path) -> None:
    """not_after before (or at) not_before is refused at not_after's place, naming both."""
    path = config_file(tmp_path, "timezone: Europe/Paris\nnot_after: 02:00\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {"not_before": "22:00"}, now=NOW)
    assert [str(d) for d in info.value.diagnostics] == [
        f"{path}:2:12: not_after: the cutover window ends (2026-11-28T02:00:00+01:00) before it "
        "starts (not_before 2026-11-28T22:00:00+01:00, from --not-before); HH:MM means today in "
        "timezone, so a window past midnight needs not_after with a date"
    ]
    with pytest.raises(ConfigError):  # an empty window is no window either
        load_config(None, {}, {"not_before": "22:00", "not_after": "22:00"}, now=NOW)


def test_unknown_timezone_is_refused() -> None:
    """timezone must be an IANA name zoneinfo knows."""
    for raw in ("Mars/Olympus", "../etc/passwd", "CEST+1"):
        assert problems(env={"MGN_CUTOVER_TIMEZONE": raw}) == [
            "env MGN_CUTOVER_TIMEZONE: expected an IANA time zone name, like UTC or Europe/Paris, "
            f"got the string {json.dumps(raw)}"
        ]


# --- where results are sent --------------------------------------------------------------------


def test_delivery_settings_load_from_file_and_env(tmp_path: Path) -> None:
    """report_uri, its KMS key, the SNS topic and the webhook load as given."""
    path = config_file(
        tmp_path,
        "report_uri: s3://mgn-reports.example/cutover/\n"
        "report_kms_key_id: alias/mgn-reports\n"
        "notify_sns_topic_arn: arn:aws:sns:eu-west-1:111122223333:cutover-night.fifo\n",
    )
    env = {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:8080/hook?token=abc"}
    config = load_config(path, env, {})
    assert (config.report_uri, config.report_kms_key_id, config.notify_sns_topic_arn) == (
        "s3://mgn-reports.example/cutover/",
        "alias/mgn-reports",
        "arn:aws:sns:eu-west-1:111122223333:cutover-night.fifo",
    )
    assert config.notify_webhook_url == "http://127.0.0.1:8080/hook?token=abc"
    assert config.report_s3 == ("mgn-reports.example", "cutover/")
    assert load_config(None, {"MGN_CUTOVER_REPORT_URI": "s3://b-1/"}, {}).report_s3 == ("b-1", "")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("https://bucket/prefix/", "it must start with s3://"),
        ("s3:/bucket/prefix/", "it must start with s3://"),
        ("s3://Bucket_1/reports/", '"Bucket_1" is not an S3 bucket name'),
        ("s3://bucket/reports", "it must end with /"),
        ("s3://bucket", "it must end with /"),
        ("s3://bucket/a//b/", "no empty folder"),
        ("s3://bucket//", "no empty folder"),
    ],
)
def test_malformed_report_uri_names_the_key_and_why(tmp_path: Path, raw: str, why: str) -> None:
    """A report_uri that is not s3://bucket/prefix/ is refused, saying what is wrong with it."""
    path = config_file(tmp_path, f"report_uri: {json.dumps(raw)}\n")
    [found] = problems(path)
    assert found.startswith(f"{path}:1:13: report_uri: expected an s3://bucket/prefix/ URI (")
    assert why in found


def test_kms_key_needs_a_report_uri_and_a_key_shape() -> None:
    """report_kms_key_id must look like a KMS key or alias, and goes with report_uri."""
    assert problems(env={"MGN_CUTOVER_REPORT_KMS_KEY_ID": "alias/x"}) == [
        "env MGN_CUTOVER_REPORT_KMS_KEY_ID: report_kms_key_id: set, but report_uri is not: it "
        "encrypts reports sent there"
    ]
    [found] = problems(
        env={"MGN_CUTOVER_REPORT_KMS_KEY_ID": "my key", "MGN_CUTOVER_REPORT_URI": "s3://b-1/r/"}
    )
    assert "a KMS key ID, key ARN, alias name (alias/...) or alias ARN" in found
    key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    env = {"MGN_CUTOVER_REPORT_KMS_KEY_ID": key_arn, "MGN_CUTOVER_REPORT_URI": "s3://b-1/r/"}
    assert load_config(None, env, {}).report_kms_key_id == key_arn


@pytest.mark.parametrize(
    "raw",
    [
        "arn:aws:sqs:us-east-1:111122223333:queue",
        "arn:aws:sns:us-east-1:1111:topic",
        "arn:aws:sns:us-east-1:111122223333:bad topic",
        "cutover-topic",
    ],
)
def test_bad_sns_topic_arn_is_refused(raw: str) -> None:
    """notify_sns_topic_arn must be an SNS topic ARN."""
    assert problems(env={"MGN_CUTOVER_NOTIFY_SNS_TOPIC_ARN": raw}) == [
        "env MGN_CUTOVER_NOTIFY_SNS_TOPIC_ARN: expected an SNS topic ARN "
        f"(arn:aws:sns:REGION:ACCOUNT:NAME), got the string {json.dumps(raw)}"
    ]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("http://hooks.example.com/x?token=tok3nSECRET", "http:// is allowed only to a loopback"),
        ("ftp://hooks.example.com/x?token=tok3nSECRET", "an https:// URL"),
        ("https://user:tok3nSECRET@hooks.example.com/x", "must not carry a user or password"),
        ("https://hooks.example.com/x#tok3nSECRET", "must not carry a #fragment"),
        ("https:///x?token=tok3nSECRET", "an https:// URL"),
        ("https://hooks.example.com:99999/x?token=tok3nSECRET", "an https:// URL"),
    ],
)
def test_bad_webhook_url_is_refused_without_echo(tmp_path: Path, raw: str, why: str) -> None:
    """A bad notify_webhook_url is refused with the reason; no part of it is ever repeated."""
    path = config_file(tmp_path, f"notify_webhook_url: {json.dumps(raw)}\n")
    env = {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": raw}
    found = problems(path, env)
    assert len(found) == 2 and all(why in line and "value not shown" in line for line in found)
    text = "\n".join(found)
    assert "tok3nSECRET" not in text and "hooks.example.com" not in text


def test_webhook_url_is_redacted_in_reports_and_repr() -> None:
    """as_report_dict shows scheme://host/first-segment, the rest of the path and the query
    redacted (Slack keeps its token in the path); repr leaves the URL out."""
    url = "https://hooks.example.com:8443/services/T0/B0?token=tok3nSECRET&x=1"
    config = load_config(None, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": url}, {})
    report = config.as_report_dict()
    assert report["notify_webhook_url"] == (
        "https://hooks.example.com:8443/services/<redacted>?<redacted>"
    )
    assert "tok3nSECRET" not in json.dumps(report) and "tok3nSECRET" not in repr(config)
    plain = load_config(None, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": "https://h.example/hook"}, {})
    assert plain.as_report_dict()["notify_webhook_url"] == "https://h.example/hook"
