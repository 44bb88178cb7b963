"""Off-model SourceServer answers are caught per item, before botocore's parser."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest

from orchestrator.answers import PROBLEM_KEY, check_items, compile_check, make_hook, page_frame
from orchestrator.errors import RetryableError

SHAPE = botocore.session.get_session().get_service_model("mgn").shape_for("SourceServer")


def _good(server_id: str) -> dict[str, Any]:
    return {
        "sourceServerID": server_id,
        "isArchived": False,
        "lifeCycle": {"state": "CUTTING_OVER"},
        "dataReplicationInfo": {"replicatedDisks": [{"deviceName": "/dev/xvda"}]},
        "tags": {"Name": "web"},
    }


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"isArchived": 1}, "item.isArchived is int"),
        ({"isArchived": "yes"}, "item.isArchived is str"),
        ({"lifeCycle": "CUTOVER"}, "item.lifeCycle is str"),
        ({"lifeCycle": {"state": 7}}, "item.lifeCycle.state is int"),
        ({"dataReplicationInfo": {"replicatedDisks": "none"}}, "replicatedDisks is str"),
        ({"dataReplicationInfo": {"replicatedDisks": [{"totalStorageBytes": "1"}]}}, "[]"),
        ({"tags": {"Name": 5}}, "item.tags[] is int"),
    ],
)
def test_type_problem_names_the_first_mismatch(change: dict[str, Any], where: str) -> None:
    """Each mis-typed field, at any depth, is found and named by its path."""
    problem = compile_check(SHAPE, "item")({**_good("s-00000000000000001"), **change})
    assert problem is not None and where in problem


def test_a_well_formed_item_with_nulls_passes() -> None:
    """Nulls and absent members are left to the pre-flight's own rules."""
    item = {**_good("s-00000000000000001"), "launchedInstance": None, "applicationID": None}
    assert compile_check(SHAPE, "item")(item) is None


def test_only_the_bad_item_is_replaced() -> None:
    """A bad item becomes its bare ID with a problem; an ID-less bad item is dropped."""
    good = _good("s-00000000000000001")
    bad = {**_good("s-00000000000000002"), "lifeCycle": []}
    nameless = {"sourceServerID": 5}
    fixed, problems = check_items({"items": [good, bad, nameless]}, compile_check(SHAPE))
    assert fixed["items"] == [good, {"sourceServerID": "s-00000000000000002"}]
    assert list(problems) == ["s-00000000000000002"]


def test_hook_rewrites_the_body_and_reports_problems() -> None:
    """The before-parse hook hands botocore a parseable body and the problems beside it."""
    hook = make_hook(compile_check(SHAPE))
    body = {"items": [{**_good("s-00000000000000002"), "isArchived": "no"}]}
    response = {"status_code": 200, "body": json.dumps(body).encode()}
    custom: dict[str, Any] = {}
    hook(response_dict=response, customized_response_dict=custom)
    assert json.loads(response["body"]) == {"items": [{"sourceServerID": "s-00000000000000002"}]}
    assert "isArchived" in custom[PROBLEM_KEY]["s-00000000000000002"]


def test_a_clean_page_is_returned_untouched() -> None:
    """With no problem the very same body comes back: nothing is re-encoded or re-parsed."""
    body = {"items": [_good("s-00000000000000001")]}
    fixed, problems = check_items(body, compile_check(SHAPE))
    assert fixed is body and problems == {}


@pytest.mark.parametrize("answer", [[], {"items": {}}, {"items": [], "nextToken": 7}])
def test_an_off_model_page_frame_is_an_ambiguous_parse_error_naming_the_call(answer: Any) -> None:
    """A lean list page that botocore's parser would refuse: the ambiguous ResponseParserError,
    saying which call's page it was."""
    with pytest.raises(RetryableError) as refused:
        page_frame(answer, "ListManagedAccounts")
    assert refused.value.code == "ResponseParserError" and refused.value.ambiguous
    assert "ListManagedAccounts" in str(refused.value)
