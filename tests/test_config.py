"""Settings: flag > environment > file > default, every problem reported, credentials refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.cli import CONFIG_FLAGS
from orchestrator.config import (
    CONVERTERS,
    MAX_CONFIG_BYTES,
    Config,
    load_config,
    looks_like_credential,
)
from orchestrator.errors import ConfigError
from orchestrator.yamlsource import Map, parse_yaml

REPO = Path(__file__).resolve().parent.parent
FIELDS = [f.name for f in dataclasses.fields(Config)]
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
    assert load_config(None, {"HOME": "/root", "AWS_REGION": "eu-west-1"}, {}) == Config()


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
    """Every field has a converter, every CLI flag names a field, no field looks like a secret."""
    assert list(CONVERTERS) == FIELDS
    assert set(CONFIG_FLAGS) <= set(FIELDS)
    assert not [f for f in FIELDS if looks_like_credential(f)]
