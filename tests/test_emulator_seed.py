"""Seeding: YAML fixtures, generated data (deterministic per seed), servers ready from plans."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.emulator.errors import FixtureError
from orchestrator.emulator.generate import generate, seed_ready
from orchestrator.emulator.plans import load_planned_waves
from orchestrator.emulator.seed import load_fixture, seed_fixture
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, Store

FIXTURE = """
defaults: {state: CUTTING_OVER, firstBoot: SUCCEEDED}
servers:
  - sourceServerID: s-0a1b2c3d4e5f6a7b8
    applicationID: app-0a1b2c3d4e5f6a7b8
    hostname: pay-web-01
    disks: [{deviceName: /dev/xvda, totalStorageBytes: 107374182400}]
    tags: {Name: pay-web-01}
  - sourceServerID: s-1a1b2c3d4e5f6a7b8
    state: CUTOVER
    firstBoot: null
    archived: true
    accountID: "222222222222"
waves: [{waveID: wave-0a1b2c3d4e5f6a7b8, name: wave-01, applicationIDs: [app-0a1b2c3d4e5f6a7b8]}]
applications: [{applicationID: app-0a1b2c3d4e5f6a7b8, name: payments}]
"""


def test_fixture_file_seeds_servers_apps_and_waves(tmp_path: Path) -> None:
    """A YAML fixture seeds its servers (defaults applied), applications and waves."""
    path = tmp_path / "fixture.yaml"
    path.write_text(FIXTURE)
    store = Store()
    assert seed_fixture(store, load_fixture(path)) == 2
    [pay] = store.servers(None)
    assert pay["sourceProperties"]["identificationHints"]["hostname"] == "pay-web-01"
    assert pay["launchedInstance"]["firstBoot"] == "SUCCEEDED"
    assert re.fullmatch(r"i-[0-9a-f]{17}", pay["launchedInstance"]["ec2InstanceID"])
    assert pay["dataReplicationInfo"]["replicatedDisks"][0]["totalStorageBytes"] == 107374182400
    [other] = store.servers("222222222222")
    assert other["isArchived"] and "launchedInstance" not in other
    assert other["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    app = store.account(None).applications["app-0a1b2c3d4e5f6a7b8"]
    assert app["name"] == "payments" and app["waveID"] == "wave-0a1b2c3d4e5f6a7b8"


def test_fixture_errors_are_all_reported() -> None:
    """A bad fixture raises one FixtureError listing every problem, typos included."""
    bad = {
        "servers": [
            {"sourceServerID": "s-1", "state": "DONE"},
            {"sourceServerID": "s-0a1b2c3d4e5f6a7b8", "firstboot": "SUCCEEDED"},
        ]
    }
    with pytest.raises(FixtureError) as info:
        seed_fixture(Store(), bad)
    text = str(info.value)
    assert "servers[0].sourceServerID" in text and "servers[0].state" in text
    assert "servers[1].firstboot: unknown key" in text


def test_fixture_breaking_the_model_is_refused() -> None:
    """A fixture value MGN could never return (a 300-character tag) is a FixtureError."""
    fixture = {"servers": [{"sourceServerID": "s-0a1b2c3d4e5f6a7b8", "tags": {"k": "x" * 300}}]}
    with pytest.raises(FixtureError, match="tags"):
        seed_fixture(Store(), fixture)


def test_generation_is_deterministic_for_a_seed() -> None:
    """The same seed gives identical servers, applications and waves; another seed does not."""

    def run(seed: int) -> tuple[list[str], list[str]]:
        store = Store()
        ids = generate(store, servers=30, applications=4, seed=seed)
        hosts = [
            s["sourceProperties"]["identificationHints"]["hostname"] for s in store.servers(None)
        ]
        return ids, hosts

    assert run(5) == run(5)
    assert run(5)[0] != run(6)[0]


def test_generated_data_looks_real() -> None:
    """Generated IDs match MGN's patterns, hostnames read like pay-web-03, apps sit in waves."""
    store = Store()
    ids = generate(store, servers=50, applications=12, seed=1)
    assert all(re.fullmatch(r"s-[0-9a-f]{17}", s) for s in ids)
    acct = store.account(None)
    assert all(re.fullmatch(r"app-[0-9a-f]{17}", a) for a in acct.applications)
    assert all(re.fullmatch(r"wave-[0-9a-f]{17}", w) for w in acct.waves)
    assert len(acct.waves) == 2
    assert all(a.get("waveID") in acct.waves for a in acct.applications.values())
    hosts = [s["sourceProperties"]["identificationHints"]["hostname"] for s in store.servers(None)]
    assert all(re.fullmatch(r"[a-z]+[0-9]*-[a-z]+-[0-9]{2}", h) for h in hosts)
    assert {s["applicationID"] for s in store.servers(None)} == set(acct.applications)


def test_state_mix_is_honoured() -> None:
    """A state mix gives those proportions exactly (largest remainder)."""
    store = Store()
    generate(store, servers=10, applications=2, states={"CUTTING_OVER": 0.7, "CUTOVER": 0.3})
    counts = Counter(s["lifeCycle"]["state"] for s in store.servers(None))
    assert counts == {"CUTTING_OVER": 7, "CUTOVER": 3}


def test_seed_ready_makes_servers_finalizable() -> None:
    """seed_ready seeds CUTTING_OVER, CONTINUOUS, firstBoot SUCCEEDED servers and their wave."""
    store = Store()
    groups = [("app-0a1b2c3d4e5f6a7b8", ["s-0a1b2c3d4e5f6a7b8", "s-1a1b2c3d4e5f6a7b8"])]
    assert seed_ready(store, groups, account_id="333333333333", wave_name="wave-01") == 2
    servers = store.servers("333333333333")
    assert {s["lifeCycle"]["state"] for s in servers} == {"CUTTING_OVER"}
    assert {s["launchedInstance"]["firstBoot"] for s in servers} == {"SUCCEEDED"}
    assert store.servers(DEFAULT_ACCOUNT_ID) == []
    [wave] = store.account("333333333333").waves.values()
    assert wave["name"] == "wave-01"
    with pytest.raises(FixtureError):
        seed_ready(store, [("app-x", ["s-0a1b2c3d4e5f6a7b8"])])


def test_planned_waves_from_a_plan_folder(tmp_path: Path) -> None:
    """A plan folder's waves come back grouped by application, ready for seed_ready."""
    (tmp_path / "w1.yaml").write_text(
        "wave: wave-01\napplications:\n"
        "  - applicationID: app-0a1b2c3d4e5f6a7b8\n"
        "    sourceServerIDs: [s-0a1b2c3d4e5f6a7b8, s-1a1b2c3d4e5f6a7b8]\n"
    )
    waves = load_planned_waves([tmp_path])
    assert [w.name for w in waves] == ["wave-01"]
    assert waves[0].groups == (
        ("app-0a1b2c3d4e5f6a7b8", ("s-0a1b2c3d4e5f6a7b8", "s-1a1b2c3d4e5f6a7b8")),
    )


def test_wave_plan_is_not_a_fixture(tmp_path: Path) -> None:
    """A wave plan read as a fixture is refused naming the file, its keys, and --plan."""
    plan = tmp_path / "wave.yaml"
    plan.write_text(
        "wave: wave-01\naccountID: '111122223333'\napplications:\n"
        "  - applicationID: app-0a1b2c3d4e5f6a7b8\n    sourceServerIDs: [s-0a1b2c3d4e5f6a7b8]\n"
    )
    with pytest.raises(FixtureError) as info:
        load_fixture(plan)
    text = str(info.value)
    assert str(plan) in text and "accountID, wave" in text and "--plan" in text
    with pytest.raises(FixtureError, match="no `servers` list"):
        seed_fixture(Store(), {"applications": []})


def test_night_fixture_keys_are_checked() -> None:
    """lagDuration, dataReplicationError, postLaunchActions and the failure flags are checked."""
    bad = {
        "servers": [
            {
                "sourceServerID": "s-0a1b2c3d4e5f6a7b8",
                "lagDuration": "30 seconds",
                "dataReplicationError": {"error": "BROKEN"},
                "postLaunchActions": [{"actionName": "a", "ssmDocumentName": "no spaces"}],
                "launchFails": "yes",
            }
        ]
    }
    with pytest.raises(FixtureError) as info:
        seed_fixture(Store(), bad)
    text = str(info.value)
    for key in ("lagDuration", "dataReplicationError", "ssmDocumentName", "launchFails"):
        assert f"servers[0].{key}" in text or f"postLaunchActions[0].{key}" in text, key


def test_night_fixture_keys_seed_the_server() -> None:
    """A fixture's lagDuration (or null), error and actions end up on the server."""
    store = Store()
    seed_fixture(
        store,
        {
            "servers": [
                {
                    "sourceServerID": "s-0a1b2c3d4e5f6a7b8",
                    "lagDuration": "P1DT2H",
                    "dataReplicationError": {"error": "AGENT_NOT_SEEN"},
                    "postLaunchActions": [{"actionName": "a", "ssmDocumentName": "doc"}],
                    "bootFails": True,
                },
                {"sourceServerID": "s-1a1b2c3d4e5f6a7b8", "lagDuration": None},
            ]
        },
    )
    one = store.record(None, "s-0a1b2c3d4e5f6a7b8")
    info = one.current["dataReplicationInfo"]
    assert info["lagDuration"] == "P1DT2H"
    assert info["dataReplicationError"] == {"error": "AGENT_NOT_SEEN"}
    assert one.actions == ({"actionName": "a", "ssmDocumentName": "doc"},) and one.boot_fails
    two = store.record(None, "s-1a1b2c3d4e5f6a7b8").current
    assert "lagDuration" not in two["dataReplicationInfo"]
