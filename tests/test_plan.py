"""Wave plan loading: valid plans become frozen types; each refusal is located and worded."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from orchestrator.errors import Diagnostic, PlanError
from orchestrator.plan import (
    Application,
    LoadResult,
    Server,
    Wave,
    load_waves,
    select_wave,
)
from orchestrator.planfile import dump_wave
from orchestrator.yamlsource import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parent.parent
APP = "app-0a1b2c3d4e5f6a7b8"
APP2 = "app-1b2c3d4e5f6a7b8c9"
S1 = "s-0a1b2c3d4e5f6a7b8"
S2 = "s-1b2c3d4e5f6a7b8c9"
S3 = "s-2c3d4e5f6a7b8c9d0"

VALID = f"""\
wave: wave-01
description: Payments stack
accountID: "111122223333"
region: us-east-1
applications:
  - applicationID: {APP}
    name: payments
    sourceServerIDs:
      - {S1}
      - {S2}
  - applicationID: {APP2}
    sourceServerIDs: [{S3}]
"""


def another_wave(name: str, digit: str) -> str:
    """VALID renamed to wave `name`, its servers' IDs changed so no server is in two waves."""
    text = VALID.replace("wave-01", name)
    for server_id in (S1, S2, S3):
        text = text.replace(server_id, f"s-{digit}{server_id[3:]}")
    return text


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def errors(*paths: Path) -> list[str]:
    """The diagnostics load_waves raises, as the CLI prints them."""
    with pytest.raises(PlanError) as info:
        load_waves(list(paths))
    return [str(d) for d in info.value.diagnostics]


def plan_with(tmp_path: Path, body: str) -> tuple[Path, list[str]]:
    path = write(tmp_path, "plan.yaml", body)
    return path, errors(path)


# --- valid plans -------------------------------------------------------------------------------


def test_valid_plan_becomes_frozen_wave_application_server(tmp_path: Path) -> None:
    """A valid file loads into a frozen Wave with its applications, servers and source lines."""
    path = write(tmp_path, "plan.yaml", VALID)
    result = load_waves([path])
    assert result.warnings == ()
    (wave,) = result.waves
    assert (wave.name, wave.description, wave.account_id, wave.region, wave.source) == (
        "wave-01",
        "Payments stack",
        "111122223333",
        "us-east-1",
        path,
    )
    assert wave.applications[0] == Application(
        APP, "payments", (Server(S1, APP, 9), Server(S2, APP, 10)), 6
    )
    assert wave.applications[1].name is None
    assert wave.servers == (Server(S1, APP, 9), Server(S2, APP, 10), Server(S3, APP2, 12))
    assert wave.server_ids == (S1, S2, S3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        wave.name = "other"  # type: ignore[misc]


def test_repository_examples_load_with_stable_ids() -> None:
    """waves/ loads: wave-01 has the documented 3 applications and 10 servers, wave-02 hundreds."""
    result = load_waves([REPO / "waves"])
    assert [w.name for w in result.waves] == ["wave-01", "wave-02"]
    wave1, wave2 = result.waves
    assert [a.application_id for a in wave1.applications] == [
        "app-d23ffb3a1c1b69e0c",
        "app-013d24a82c04c5dcb",
        "app-53acda63472123dc5",
    ]
    assert len(wave1.servers) == 10
    assert wave1.servers[0].source_server_id == "s-37f758ca982656978"
    assert len(wave2.applications) >= 24 and 200 <= len(wave2.servers) <= 1000


def test_several_files_load_in_order(tmp_path: Path) -> None:
    """Files given one by one load in the order given, each keeping its own source path."""
    a = write(tmp_path, "a.yaml", VALID)
    b = write(tmp_path, "b.yaml", another_wave("wave-02", "9"))
    result = load_waves([b, a])
    assert [(w.name, w.source) for w in result.waves] == [("wave-02", b), ("wave-01", a)]


def test_folder_loads_yaml_and_yml_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    """A folder loads its *.yaml and *.yml files by name, skipping hidden and other files."""
    write(tmp_path, "b.yml", another_wave("wave-b", "9"))
    write(tmp_path, "a.yaml", VALID.replace("wave-01", "wave-a"))
    write(tmp_path, "notes.txt", "not a plan")
    write(tmp_path, ".#a.yaml", "editor lock file: not YAML {{{")
    (tmp_path / "sub.yaml").mkdir()
    assert [w.name for w in load_waves([tmp_path]).waves] == ["wave-a", "wave-b"]


def test_a_file_named_twice_loads_once(tmp_path: Path) -> None:
    """A file named directly and through its folder is loaded once, not reported as a duplicate."""
    path = write(tmp_path, "a.yaml", VALID)
    assert len(load_waves([path, tmp_path, path]).waves) == 1


def test_standard_tags_and_nulls_are_plain_data(tmp_path: Path) -> None:
    """`!!str` makes a number a name, and a null optional key counts as absent."""
    path = write(
        tmp_path,
        "p.yaml",
        f"wave: w\nregion:\napplications:\n  - applicationID: {APP}\n    name: !!str 2024\n"
        f"    sourceServerIDs: !!seq [{S1}]\n",
    )
    (wave,) = load_waves([path]).waves
    assert (wave.region, wave.applications[0].name) == (None, "2024")


def test_over_4000_servers_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """A wave above MGN's 4,000 non-archived servers per account loads, with a warning."""
    apps = [(f"app-{i:017d}", None, [f"s-{i:03d}{j:014d}" for j in range(200)]) for i in range(21)]
    path = write(tmp_path, "big.yaml", dump_wave("big", apps))
    result = load_waves([path])
    assert len(result.waves[0].servers) == 4200
    assert [str(w) for w in result.warnings] == [
        f"{path}:1:7: warning: wave big has 4,200 source servers; "
        "MGN allows 4,000 non-archived per account"
    ]


# --- refusals: the file as a whole -------------------------------------------------------------


def test_missing_path_is_named(tmp_path: Path) -> None:
    """A path that does not exist is refused by name, without a meaningless :0:0."""
    assert errors(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: no such file or directory"
    ]


def test_folder_without_plan_files(tmp_path: Path) -> None:
    """A folder with no *.yaml or *.yml file is refused."""
    write(tmp_path, "readme.txt", "hi")
    assert errors(tmp_path) == [f"{tmp_path}: no files (*.yaml, *.yml) in this folder"]


def test_not_a_regular_file() -> None:
    """A device such as /dev/zero is refused rather than read forever."""
    assert errors(Path("/dev/zero")) == ["/dev/zero: is not a regular file"]


def test_file_over_size_cap_refused_before_reading(tmp_path: Path) -> None:
    """A file over 8 MiB is refused from its size alone (a sparse file: nothing is read)."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    assert errors(path) == [f"{path}: file is 8,388,609 bytes, over the 8,388,608-byte limit"]


def test_not_utf8_names_line_column_and_offset(tmp_path: Path) -> None:
    """A byte that is not UTF-8 is reported with its line, column and byte offset."""
    path = write(tmp_path, "latin1.yaml", "wave: w\ndescription: caf\xe9\n".encode("latin-1"))
    assert errors(path) == [f"{path}:2:17: not UTF-8: byte 0xe9 at offset 24 is invalid"]


def test_control_character_located(tmp_path: Path) -> None:
    """A control character YAML forbids is reported where it is."""
    path = write(tmp_path, "p.yaml", "wave: w\nname: é\x07\n")
    (message,) = errors(path)
    assert message.startswith(f"{path}:2:8: invalid YAML: character U+0007 is not allowed")


def test_malformed_yaml_uses_parser_position(tmp_path: Path) -> None:
    """Malformed YAML is reported at the parser's line and column."""
    path, found = plan_with(tmp_path, "wave: w\napplications: [a, b\n")
    assert found == [
        f"{path}:3:1: invalid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence)"
    ]


def test_empty_file(tmp_path: Path) -> None:
    """A file with nothing but comments is refused."""
    path, found = plan_with(tmp_path, "# nothing yet\n")
    assert found == [f"{path}:1:1: file is empty: a plan needs the keys wave and applications"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A list at the top level is refused, saying what was found."""
    path, found = plan_with(tmp_path, "- wave: w\n")
    assert found == [
        f"{path}:1:1: a plan file must be a mapping with the keys wave and applications, got a list"
    ]


def test_more_than_one_document(tmp_path: Path) -> None:
    """Two YAML documents in one file are refused: one wave per file."""
    path, found = plan_with(tmp_path, VALID + "---\n" + VALID)
    assert found == [f"{path}:13:1: more than one YAML document; use one per file"]


def test_anchor_refused_at_first_sight(tmp_path: Path) -> None:
    """An anchor is refused where it is declared."""
    path, found = plan_with(
        tmp_path, f"wave: w\napplications:\n  - &app {{applicationID: {APP}}}\n"
    )
    assert found == [
        f'{path}:3:5: YAML anchors and aliases are not allowed (found anchor "&app"); '
        "write values out"
    ]


def test_alias_bomb_refused_quickly(tmp_path: Path) -> None:
    """A billion-laughs file is refused at its first anchor, in well under a second."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    found = errors(path)
    assert time.monotonic() - started < 1.0
    assert found == [
        f'{path}:1:5: YAML anchors and aliases are not allowed (found anchor "&a0"); '
        "write values out"
    ]


def test_custom_tag_refused(tmp_path: Path) -> None:
    """A tag outside YAML's standard ones (here a Python object) is refused."""
    path, found = plan_with(tmp_path, "wave: !!python/object/apply:os.system [ls]\n")
    assert found == [
        f'{path}:1:7: YAML tag "!!python/object/apply:os.system" is not allowed: plain data only'
    ]


def test_duplicate_key(tmp_path: Path) -> None:
    """A key given twice in one mapping is refused, pointing at the first."""
    path, found = plan_with(tmp_path, VALID + "wave: wave-02\n")
    assert found == [f'{path}:13:1: duplicate key "wave" (first at line 1)']


def test_non_scalar_key_and_deep_nesting(tmp_path: Path) -> None:
    """A list used as a key and nesting deeper than 64 levels are refused."""
    path, found = plan_with(tmp_path, VALID + "[a]: 1\n")
    assert found == [f"{path}:13:1: mapping keys must be plain strings"]
    path = write(tmp_path, "deep.yaml", "x: " + "[" * 100 + "]" * 100 + "\n")
    assert errors(path) == [f"{path}:1:67: nested deeper than 64 levels"]


def test_invalid_timestamp(tmp_path: Path) -> None:
    """A value that looks like a date but is none (February 30th) is refused, not crashed on."""
    path, found = plan_with(tmp_path, VALID.replace("Payments stack", "2024-02-30"))
    assert found == [f'{path}:2:14: cannot read "2024-02-30" as !!timestamp']


# --- refusals: keys, types and values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "right", "where", "line", "col"),
    [
        ("sourceServerIds", "sourceServerIDs", "applications[0]: ", 8, 5),
        ("applicationId", "applicationID", "applications[0]: ", 6, 5),
        ("accountId", "accountID", "", 3, 1),
    ],
)
def test_unknown_key_near_miss_suggests_the_right_one(
    tmp_path: Path, wrong: str, right: str, where: str, line: int, col: int
) -> None:
    """A near-miss key is refused once (not also as missing), suggesting the right spelling."""
    path, found = plan_with(tmp_path, VALID.replace(right, wrong, 1))
    assert found == [f'{path}:{line}:{col}: {where}unknown key "{wrong}"; did you mean "{right}"?']


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    """A key that is no near miss is refused with the list of keys allowed there."""
    path, found = plan_with(tmp_path, VALID + "owner: team-payments\n")
    assert found == [
        f'{path}:13:1: unknown key "owner" '
        "(allowed: wave, description, accountID, region, applications)"
    ]


def test_missing_required_keys(tmp_path: Path) -> None:
    """Missing wave, applicationID and sourceServerIDs are each reported."""
    path, found = plan_with(tmp_path, f"applications:\n  - name: x\n  - applicationID: {APP}\n")
    assert found == [
        f'{path}:1:1: missing required key "wave"',
        f'{path}:2:5: applications[0]: missing required key "applicationID"',
        f'{path}:2:5: applications[0]: missing required key "sourceServerIDs"',
        f'{path}:3:5: applications[1]: missing required key "sourceServerIDs"',
    ]
    path = write(tmp_path, "p2.yaml", "wave: w\n")
    assert errors(path) == [f'{path}:1:1: missing required key "applications"']


def test_wrong_types(tmp_path: Path) -> None:
    """A string where a list is expected, a mapping for the applications, a number as a name."""
    path, found = plan_with(
        tmp_path,
        f"wave: w\napplications:\n  - applicationID: {APP}\n    name: 42\n"
        f"    sourceServerIDs: {S1}\n",
    )
    assert found == [
        f"{path}:4:11: applications[0].name: expected a string, got the number 42; quote it",
        f"{path}:5:22: applications[0].sourceServerIDs: expected a list of source server IDs, "
        f'got the string "{S1}"',
    ]
    path = write(tmp_path, "p2.yaml", "wave: w\napplications: {a: 1}\n")
    assert errors(path) == [
        f"{path}:2:15: applications: expected a list of applications, got a mapping"
    ]
    path = write(tmp_path, "p3.yaml", "wave: w\napplications: [payments]\n")
    assert errors(path) == [
        f"{path}:2:16: applications[0]: expected a mapping with the keys applicationID and "
        'sourceServerIDs, got the string "payments"'
    ]


def test_unquoted_account_id_refused_with_quoting_hint(tmp_path: Path) -> None:
    """An unquoted accountID (a number to YAML) is refused with the exact quoted form to write."""
    path, found = plan_with(tmp_path, VALID.replace('"111122223333"', "011122223333"))
    assert found == [
        f"{path}:3:12: accountID: expected a quoted string of 12 digits, got the number "
        '011122223333 (a leading 0 is lost); write accountID: "011122223333"'
    ]


def test_bad_account_id_and_region(tmp_path: Path) -> None:
    """An accountID that is not 12 digits and a malformed region are refused, quoting the value."""
    body = VALID.replace('"111122223333"', '"1234"').replace("us-east-1", "US East")
    path, found = plan_with(tmp_path, body)
    assert found == [
        f'{path}:3:12: accountID: "1234" is not an AWS account ID (12 digits)',
        f'{path}:4:9: region: "US East" is not an AWS region (like us-east-1)',
    ]


def test_ids_must_match_mgn_patterns(tmp_path: Path) -> None:
    """Application and server IDs that do not match MGN's patterns are refused."""
    body = VALID.replace(APP, "app-123").replace(S2, "i-0123456789abcdef0").replace(S3, "7")
    path, found = plan_with(tmp_path, body)
    assert found == [
        f'{path}:6:20: applications[0].applicationID: "app-123" is not an MGN application ID '
        "(app- and 17 letters or digits)",
        f'{path}:10:9: applications[0].sourceServerIDs[1]: "i-0123456789abcdef0" is not a '
        "source server ID (s- and 17 letters or digits)",
        f"{path}:12:23: applications[1].sourceServerIDs[0]: expected a source server ID, "
        "got the number 7",
    ]


def test_server_twice_in_a_wave_names_the_first(tmp_path: Path) -> None:
    """A server listed twice, in one application or in two, is refused naming the first place."""
    body = VALID.replace(S2, S1).replace(f"[{S3}]", f"[{S1}]")
    path, found = plan_with(tmp_path, body)
    assert found == [
        f"{path}:10:9: applications[0].sourceServerIDs[1]: source server {S1} is listed twice "
        f"(first at line 9, in application {APP})",
        f"{path}:12:23: applications[1].sourceServerIDs[0]: source server {S1} is listed twice "
        f"(first at line 9, in application {APP})",
    ]


def test_application_twice(tmp_path: Path) -> None:
    """An application listed twice in a wave is refused, pointing at the first."""
    path, found = plan_with(tmp_path, VALID.replace(APP2, APP))
    assert found == [
        f"{path}:11:20: applications[1].applicationID: application {APP} is listed twice "
        "(first at line 6)"
    ]


def test_empty_application_and_empty_wave(tmp_path: Path) -> None:
    """An application without servers and a wave without applications are refused."""
    path, found = plan_with(tmp_path, VALID.replace(f"[{S3}]", "[]"))
    assert found == [
        f"{path}:12:22: applications[1].sourceServerIDs: application {APP2} has no source servers"
    ]
    path = write(tmp_path, "p2.yaml", "wave: w\napplications: []\n")
    assert errors(path) == [f'{path}:2:15: applications: wave "w" has no applications']


@pytest.mark.parametrize("name", ["..", ".", "../etc", "a/b", "-x", "a b", "x" * 65, ""])
def test_unsafe_wave_name(tmp_path: Path, name: str) -> None:
    """A wave name that is not a safe folder name (it names the report folder) is refused."""
    path, found = plan_with(tmp_path, VALID.replace("wave: wave-01", f'wave: "{name}"'))
    shown = name if len(name) <= 80 else name[:80] + "..."
    assert found == [
        f'{path}:1:7: wave: "{shown}" is not a safe wave name (1-64 letters, digits, ".", "_" '
        'or "-", starting with a letter or digit; it names the report folder)'
    ]


def test_same_wave_in_two_files_names_both(tmp_path: Path) -> None:
    """Two files declaring one wave are refused, the second naming the first's place."""
    a = write(tmp_path, "a.yaml", VALID)
    b = write(tmp_path, "b.yaml", "# copy\n" + VALID)
    assert errors(a, b) == [f"{b}:2:7: wave: wave wave-01 is also declared in {a}:1:7"]


def test_wave_names_differing_only_in_case(tmp_path: Path) -> None:
    """Wave names equal up to case are refused: their report folders collide on some systems."""
    a = write(tmp_path, "a.yaml", VALID)
    b = write(tmp_path, "b.yaml", VALID.replace("wave-01", "Wave-01"))
    assert errors(a, b) == [
        f"{b}:1:7: wave: wave Wave-01 differs only in case from wave wave-01 in {a}:1:7; "
        "their report folders would collide"
    ]


def test_a_server_in_two_waves_is_refused_at_both_places(tmp_path: Path) -> None:
    """A source server named by two waves' files: each occurrence names the other file and wave."""
    a = write(tmp_path, "a.yaml", VALID)
    b = write(tmp_path, "b.yaml", another_wave("wave-02", "9").replace(f"s-9{S2[3:]}", S2))
    assert errors(a, b) == [
        f"{a}:10:9: source server {S2} of wave wave-01 is also planned at {b}:10:9 in wave wave-02",
        f"{b}:10:9: source server {S2} of wave wave-02 is also planned at {a}:10:9 in wave wave-01",
    ]


# --- every error at once -----------------------------------------------------------------------


def test_three_errors_in_one_file_give_three_diagnostics(tmp_path: Path) -> None:
    """One file with an unknown key, a bad region and a bad server ID yields all three."""
    body = VALID.replace("us-east-1", "mars-1").replace(S1, "s-1") + "owners: [a]\n"
    path, found = plan_with(tmp_path, body)
    assert found == [
        f'{path}:4:9: region: "mars-1" is not an AWS region (like us-east-1)',
        f'{path}:9:9: applications[0].sourceServerIDs[0]: "s-1" is not a source server ID '
        "(s- and 17 letters or digits)",
        f'{path}:13:1: unknown key "owners" '
        "(allowed: wave, description, accountID, region, applications)",
    ]


def test_errors_of_every_file_at_once(tmp_path: Path) -> None:
    """Problems in several files, and a missing one, are all reported by one load."""
    good = write(tmp_path, "good.yaml", VALID)
    bad = write(tmp_path, "bad.yaml", "wave: [\n")
    found = errors(good, bad, tmp_path / "missing.yaml")
    assert len(found) == 2
    assert found[0].startswith(f"{bad}:2:1: invalid YAML:")
    assert found[1] == f"{tmp_path / 'missing.yaml'}: no such file or directory"


def test_errors_per_file_are_capped(tmp_path: Path) -> None:
    """A file with thousands of bad IDs reports the first 100 and says it stopped."""
    ids = "\n".join(f"      - bad-{i}" for i in range(5000))
    path, found = plan_with(
        tmp_path, f"wave: w\napplications:\n  - applicationID: {APP}\n    sourceServerIDs:\n{ids}\n"
    )
    assert len(found) == 101
    assert found[-1] == f"{path}: too many errors; stopped checking this file"


# --- select_wave, Wave.application, dump_wave --------------------------------------------------


def test_select_wave_by_name_or_lists_the_names(tmp_path: Path) -> None:
    """select_wave finds a wave by name, else raises naming the waves that exist."""
    result = load_waves([write(tmp_path, "a.yaml", VALID)])
    assert select_wave(result, "wave-01") is result.waves[0]
    assert select_wave(list(result.waves), "wave-01") is result.waves[0]
    with pytest.raises(PlanError) as info:
        select_wave(result, "wave-9")
    assert (
        str(info.value) == '--wave: no wave named "wave-9" in the plan files (waves found: wave-01)'
    )


def test_dump_wave_round_trips_plain_arguments(tmp_path: Path) -> None:
    """dump_wave's text, from plain arguments, loads back into the same wave."""
    text = dump_wave(
        "wave-07",
        [(APP, "pay: ments # not a comment", [S1, S2]), (APP2, None, [S3])],
        description="yes",
        account_id="011122223333",
        region="eu-west-2",
        header="exported from MGN wave wave-0123456789abcdef0\nsecond line",
    )
    assert text.startswith("# exported from MGN wave wave-0123456789abcdef0\n# second line\n")
    (wave,) = load_waves([write(tmp_path, "w.yaml", text)]).waves
    assert (wave.name, wave.description, wave.account_id, wave.region) == (
        "wave-07",
        "yes",
        "011122223333",
        "eu-west-2",
    )
    assert [(a.application_id, a.name, a.server_ids) for a in wave.applications] == [
        (APP, "pay: ments # not a comment", (S1, S2)),
        (APP2, None, (S3,)),
    ]


def test_dump_wave_of_a_loaded_wave_is_identical_data(tmp_path: Path) -> None:
    """Dumping a loaded Wave and loading it again gives the same applications and settings."""
    (wave,) = load_waves([write(tmp_path, "a.yaml", VALID)]).waves
    (again,) = load_waves([write(tmp_path, "b.yaml", dump_wave(wave))]).waves
    strip = [(a.application_id, a.name, a.server_ids) for a in wave.applications]
    assert strip == [(a.application_id, a.name, a.server_ids) for a in again.applications]
    assert dataclasses.replace(again, applications=(), source=Path("-"), line=0, col=0) == (
        dataclasses.replace(wave, applications=(), source=Path("-"), line=0, col=0)
    )


def test_dump_wave_refuses_what_would_not_load() -> None:
    """dump_wave raises PlanError rather than write a plan that would not load back."""
    with pytest.raises(PlanError) as info:
        dump_wave("../x", [(APP, None, ["s-bad"])])
    assert [d.message.split(":")[0] for d in info.value.diagnostics] == [
        "wave",
        "applications[0].sourceServerIDs[0]",
    ]


def test_types_are_constructible_directly() -> None:
    """Other modules and tests can build a Wave by hand; LoadResult defaults to no warnings."""
    wave = Wave("w", (Application(APP, None, (Server(S1, APP),)),))
    assert LoadResult((wave,)).warnings == ()
    assert str(Diagnostic("f.yaml", 3, 0, "m")) == "f.yaml:3: m"


@pytest.mark.parametrize(
    "body",
    [
        VALID,
        "wave: w\nname: é\x07\n",
        "wave: w\napplications: [a, b\n",
        VALID.replace("us-east-1", "mars") + "x: &a 1\n",
        "\ufeffwave: w\nwave: v\n",
        VALID + "---\n" + VALID,
    ],
)
def test_pure_python_parser_fallback_locates_problems_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """Without libyaml the pure-Python parser finds the same problems at the same places."""
    import yaml

    import orchestrator.yamlsource as yamlsource

    path = write(tmp_path, "p.yaml", body)

    def located() -> list[tuple[int, int]]:
        try:
            load_waves([path])
        except PlanError as exc:
            return [(d.line, d.col) for d in exc.diagnostics]
        return []

    with_libyaml = located()
    monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    assert located() == with_libyaml
