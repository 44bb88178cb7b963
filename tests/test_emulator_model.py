"""The compiled model validators: every constraint botocore's ParamValidator skips."""

from __future__ import annotations

import random

import pytest

from orchestrator.emulator.generate import generate
from orchestrator.emulator.model import OPERATIONS, load_model
from orchestrator.emulator.store import Store

SID = "s-0a1b2c3d4e5f6a7b8"


def names(errors: list[tuple[str, str]]) -> list[str]:
    return [n for n, _ in errors]


def test_valid_requests_pass() -> None:
    """Well-formed bodies for every implemented operation produce no errors."""
    model = load_model()
    bodies = {
        "DescribeSourceServers": {"filters": {"sourceServerIDs": [SID]}, "maxResults": 10},
        "FinalizeCutover": {"sourceServerID": SID, "accountID": "222222222222"},
        "StartCutover": {"sourceServerIDs": [SID], "tags": {"k": "v"}},
        "ChangeServerLifeCycleState": {
            "sourceServerID": SID,
            "lifeCycle": {"state": "READY_FOR_CUTOVER"},
        },
        "MarkAsArchived": {"sourceServerID": SID},
        "DisconnectFromService": {"sourceServerID": SID},
        "ListApplications": {"filters": {"waveIDs": ["wave-0a1b2c3d4e5f6a7b8"]}},
        "ListWaves": {},
        "DescribeJobs": {"filters": {"jobIDs": ["mgnjob-0a1b2c3d4e5f6a7b8"]}, "maxResults": 5},
        "TerminateTargetInstances": {"sourceServerIDs": [SID], "accountID": "222222222222"},
        "ListManagedAccounts": {"maxResults": 10},
    }
    assert set(bodies) == set(OPERATIONS)
    for op, body in bodies.items():
        assert model.validate_input(op, body) == [], op


@pytest.mark.parametrize(
    ("op", "body", "field", "words"),
    [
        ("FinalizeCutover", {"sourceServerID": "s-0a1b2c3d4e5f6a7b_"}, "sourceServerID", "pattern"),
        ("FinalizeCutover", {"sourceServerID": SID + "0"}, "sourceServerID", "less than"),
        ("FinalizeCutover", {}, "sourceServerID", "must not be null"),
        ("FinalizeCutover", {"sourceServerID": SID, "extra": 1}, "extra", "not modeled"),
        ("FinalizeCutover", {"sourceServerID": 5}, "sourceServerID", "string"),
        ("DescribeSourceServers", {"maxResults": 0}, "maxResults", "greater than"),
        ("DescribeSourceServers", {"maxResults": 1001}, "maxResults", "less than"),
        ("DescribeSourceServers", {"maxResults": True}, "maxResults", "integer"),
        (
            "DescribeSourceServers",
            {"filters": {"lifeCycleStates": ["DONE"]}},
            "filters.lifeCycleStates[0]",
            "enum",
        ),
        (
            "DescribeSourceServers",
            {"filters": {"sourceServerIDs": [SID] * 201}},
            "filters.sourceServerIDs",
            "less than",
        ),
        ("StartCutover", {"sourceServerIDs": []}, "sourceServerIDs", "greater than"),
        ("FinalizeCutover", {"sourceServerID": SID, "accountID": "12345"}, "accountID", "length"),
        (
            "ChangeServerLifeCycleState",
            {"sourceServerID": SID, "lifeCycle": {}},
            "lifeCycle.state",
            "must not be null",
        ),
    ],
)
def test_each_constraint_is_enforced(
    op: str, body: dict[str, object], field: str, words: str
) -> None:
    """Each kind of model constraint yields an error naming the field and the constraint."""
    errors = load_model().validate_input(op, body)
    assert field in names(errors)
    assert any(words in message for name, message in errors if name == field)


def test_null_member_counts_as_absent() -> None:
    """A JSON null member is treated as absent (Smithy semantics), not as a type error."""
    assert load_model().validate_input("DescribeSourceServers", {"nextToken": None}) == []


def test_non_object_body_is_a_structure_error() -> None:
    """A body that is not a JSON object fails the top-level structure check."""
    assert load_model().validate_input("ListWaves", [1, 2]) != []


def test_generated_servers_satisfy_the_output_shape() -> None:
    """Every generated server, in every lifecycle state, passes the strict output check."""
    model = load_model()
    store = Store(seed=3)
    mix = {s: 1.0 for s in ("CUTTING_OVER", "CUTOVER", "NOT_READY", "DISCONNECTED", "TESTING")}
    generate(store, servers=40, applications=4, seed=3, states=mix)
    items = store.servers(None)
    random.Random(0).shuffle(items)
    assert model.output_errors("DescribeSourceServers", {"items": items}) == []


def test_output_check_catches_a_broken_record() -> None:
    """Strict output checking reports a record that breaks its shape (here an unknown enum)."""
    bad = {"sourceServerID": SID, "lifeCycle": {"state": "FINISHED"}}
    errors = load_model().output_errors("FinalizeCutover", bad)
    assert names(errors) == ["lifeCycle.state"]
