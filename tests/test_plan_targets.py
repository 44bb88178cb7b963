"""Per-application accountID and region: validated, inherited from the wave, grouped by target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import validation
from orchestrator.commands import for_wave, wave_conflicts
from orchestrator.config import load_config
from orchestrator.errors import ConfigError, PlanError
from orchestrator.plan import Target, load_waves
from orchestrator.planfile import dump_wave

A1, A2, A3 = "app-0a1b2c3d4e5f6a7b8", "app-1b2c3d4e5f6a7b8c9", "app-2c3d4e5f6a7b8c9d0"
S1, S2, S3 = "s-0a1b2c3d4e5f6a7b8", "s-1b2c3d4e5f6a7b8c9", "s-2c3d4e5f6a7b8c9d0"

MIXED = f"""\
wave: wave-01
accountID: "111122223333"
region: us-east-1
applications:
  - applicationID: {A1}
    sourceServerIDs: [{S1}]
  - applicationID: {A2}
    accountID: "444455556666"
    sourceServerIDs: [{S2}]
  - applicationID: {A3}
    accountID: "444455556666"
    region: eu-west-1
    sourceServerIDs: [{S3}]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_applications_inherit_the_wave_target_or_name_their_own(tmp_path: Path) -> None:
    """Each application carries its effective (account, region); the wave groups by them."""
    (wave,) = load_waves([write(tmp_path, "w.yaml", MIXED)]).waves
    assert [wave.target_of(a).as_tuple() for a in wave.applications] == [
        ("111122223333", "us-east-1"),
        ("444455556666", "us-east-1"),
        ("444455556666", "eu-west-1"),
    ]
    assert {t: [a.application_id for a in apps] for t, apps in wave.by_target().items()} == {
        Target("111122223333", "us-east-1"): [A1],
        Target("444455556666", "us-east-1"): [A2],
        Target("444455556666", "eu-west-1"): [A3],
    }
    assert wave.application_of(S3) is wave.applications[2]


def test_per_application_values_are_validated_with_every_error_located(tmp_path: Path) -> None:
    """An unquoted or short accountID and a region botocore does not know, per application,
    are each reported at file:line:col, all at once."""
    text = (
        f"wave: w\nregion: ap-southeast-77\napplications:\n  - applicationID: {A1}\n"
        f"    accountID: 444455556666\n    sourceServerIDs: [{S1}]\n"
        f'  - applicationID: {A2}\n    accountID: "1234"\n    region: eu-wset-1\n'
        f"    sourceServerIDs: [{S2}]\n"
    )
    path = write(tmp_path, "w.yaml", text)
    with pytest.raises(PlanError) as info:
        load_waves([path])
    assert [str(d) for d in info.value.diagnostics] == [
        f'{path}:2:9: region: "ap-southeast-77" is not a region botocore knows; did you mean '
        '"ap-southeast-7"?',
        f"{path}:5:16: applications[0].accountID: expected a quoted string of 12 digits, got "
        'the number 444455556666 (a leading 0 is lost); write accountID: "444455556666"',
        f'{path}:8:16: applications[1].accountID: "1234" is not an AWS account ID (12 digits)',
        f'{path}:9:13: applications[1].region: "eu-wset-1" is not a region botocore knows; '
        'did you mean "eu-west-1"?',
    ]


def test_regions_of_other_partitions_are_known(tmp_path: Path) -> None:
    """GovCloud and China regions are in botocore's partition data, so they plan."""
    text = MIXED.replace("us-east-1", "us-gov-west-1").replace("eu-west-1", "cn-north-1")
    (wave,) = load_waves([write(tmp_path, "w.yaml", text)]).waves
    assert {t.region for t in wave.targets} == {"us-gov-west-1", "cn-north-1"}


def test_the_known_regions_are_those_of_botocores_endpoint_data() -> None:
    """The regions come from botocore's 7 KB partition data, not its ~1 MB endpoint data: the
    same regions as the endpoint data lists, no `aws-global`-style name."""
    import botocore

    endpoints = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_text())
    listed = {r for part in endpoints["partitions"] for r in part.get("regions", {})}
    assert validation.known_regions() == listed
    assert {"us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1"} <= listed


def test_a_setting_contradicting_one_application_is_refused_at_its_line(tmp_path: Path) -> None:
    """--account-id that agrees with the wave but not with two applications names their lines."""
    (wave,) = load_waves([write(tmp_path, "w.yaml", MIXED)]).waves
    config = load_config(None, {}, {"account_id": "111122223333"})
    assert [str(d) for d in wave_conflicts(config, wave)] == [
        "--account-id: account_id 111122223333 contradicts wave wave-01's accountID: "
        f"444455556666 at {tmp_path / 'w.yaml'}:{line}:16; drop the setting or make them agree"
        for line in (8, 11)
    ]
    with pytest.raises(ConfigError):
        for_wave(config, wave)


def test_a_setting_contradicting_the_wave_default_is_reported_once(tmp_path: Path) -> None:
    """Applications inheriting the wave's region do not repeat the wave's contradiction."""
    (wave,) = load_waves([write(tmp_path, "w.yaml", MIXED)]).waves
    found = wave_conflicts(load_config(None, {}, {"region": "ap-south-1"}), wave)
    assert [d.message.split(" at ")[1].split(";")[0] for d in found] == [
        f"{tmp_path / 'w.yaml'}:3:9",
        f"{tmp_path / 'w.yaml'}:12:13",
    ]


def test_a_server_in_two_waves_is_refused_whatever_their_targets(tmp_path: Path) -> None:
    """The cross-wave duplicate check still holds when applications name their own accounts."""
    other = MIXED.replace("wave-01", "wave-02").replace(S1, "s-9a1b2c3d4e5f6a7b8")
    other = other.replace(S2, "s-9b2c3d4e5f6a7b8c9")
    write(tmp_path, "a.yaml", MIXED)
    write(tmp_path, "b.yaml", other)
    with pytest.raises(PlanError) as info:
        load_waves([tmp_path])
    assert [d.line for d in info.value.diagnostics] == [13, 13]
    assert all(S3 in d.message for d in info.value.diagnostics)


def test_dump_wave_writes_per_application_targets_that_load_back(tmp_path: Path) -> None:
    """A dumped wave keeps each application's own target and omits what it inherits."""
    (wave,) = load_waves([write(tmp_path, "w.yaml", MIXED)]).waves
    text = dump_wave(wave)
    assert text.count("accountID") == 3 and text.count("region") == 2
    (again,) = load_waves([write(tmp_path / "..", "again.yaml", text)]).waves
    assert [wave.target_of(a) for a in wave.applications] == [
        again.target_of(a) for a in again.applications
    ]
