"""Off-model MGN answers, caught before botocore parses them.

botocore's parser is lenient where we need strictness (a non-boolean `isArchived` becomes False)
and strict where we need leniency (one mis-typed structure fails a whole page of 200 servers).
Each SourceServer's raw JSON is checked against the model's types (`compile_check`): by the
lean calls (`mgn.MgnClient`) on the answer itself, and by a `before-parse` hook (`make_hook`) for
pages that still go through botocore. An item that does not match is replaced by its bare ID plus
a `PROBLEM_KEY` naming the fault, so that server alone is reported as unknown state and never
finalized.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import RetryableError

PROBLEM_KEY = "mgnCutoverProblem"

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (str, int, float),
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
}
_NESTED = frozenset({(dict,), (list,)})


Check = Callable[[Any], str | None]


def compile_check(shape: Any, path: str = "item") -> Check:
    """A function giving the first place where a value lacks the JSON types `shape` wants.

    Compiled once per shape (a botocore Shape), so checking a page of 200 servers costs one
    walk of the JSON; the path string is built only for a value that fails.
    """
    kind = shape.type_name
    wanted = _JSON_TYPES.get(kind)
    if wanted is None:
        return lambda value: None
    allows_bool = bool in wanted
    # Per member: its JSON types, and a check for its insides (None for scalars).
    members: dict[str, tuple[tuple[type, ...], bool, Check | None, str]] = {}
    child: Check | None = None
    if kind == "structure":
        for name, member in shape.members.items():
            types = _JSON_TYPES.get(member.type_name, (object,))
            inner = compile_check(member, f"{path}.{name}") if types in _NESTED else None
            members[name] = (types, bool in types, inner, member.type_name)
    elif kind in ("list", "map"):
        child = compile_check(shape.member if kind == "list" else shape.value, f"{path}[]")

    def check(value: Any) -> str | None:
        if value is None:
            return None  # absent or null: the pre-flight's own rules decide what a gap means
        if not isinstance(value, wanted) or (not allows_bool and isinstance(value, bool)):
            return f"{path} is {type(value).__name__}, the model says {kind}"
        if members and isinstance(value, dict):
            for name, member_value in value.items():
                spec = members.get(name)
                if spec is None or member_value is None:
                    continue
                types, bool_ok, inner, type_name = spec
                if not isinstance(member_value, types) or (
                    not bool_ok and isinstance(member_value, bool)
                ):
                    found = type(member_value).__name__
                    return f"{path}.{name} is {found}, the model says {type_name}"
                if inner is not None:
                    problem = inner(member_value)
                    if problem:
                        return problem
        elif child is not None and isinstance(value, list | dict):
            for element in value if isinstance(value, list) else value.values():
                problem = child(element)
                if problem:
                    return problem
        return None

    return check


def check_items(body: Any, check: Check) -> tuple[Any, dict[str, str]]:
    """A DescribeSourceServers body with off-model items replaced; and {server ID: problem}.

    The body itself comes back, untouched, when every item is well-formed.
    """
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return body, {}
    if all(check(item) is None for item in body["items"]):
        return body, {}
    problems: dict[str, str] = {}
    items = []
    for item in body["items"]:
        problem = check(item)
        if problem is None:
            items.append(item)
            continue
        server_id = item.get("sourceServerID") if isinstance(item, dict) else None
        if isinstance(server_id, str):
            problems[server_id] = problem
            items.append({"sourceServerID": server_id})
        # An item without a usable ID cannot be matched to a server: the plan sees it missing.
    return {**body, "items": items}, problems


def make_hook(check: Check) -> Any:
    """A botocore `before-parse` handler for DescribeSourceServers pages, checking each item
    with `check` (`compile_check` of the SourceServer shape, path "item")."""

    def before_parse(
        response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
    ) -> None:
        if response_dict.get("status_code", 500) >= 300:
            return
        raw = response_dict.get("body")
        if not isinstance(raw, bytes | bytearray) or not raw:
            return
        try:
            body = json.loads(raw)
        except ValueError:
            return  # botocore reports it as a parse error
        fixed, problems = check_items(body, check)
        if problems or fixed is not body:
            response_dict["body"] = json.dumps(fixed).encode()
            customized_response_dict[PROBLEM_KEY] = problems

    return before_parse


@dataclass(frozen=True)
class ModelChecks:
    """The compiled off-model checks of one MGN model (`compile_check`): of a whole
    answer (FinalizeCutover's, a lean call), of a page's items (the lean DescribeSourceServers,
    and botocore's through `page_hook` for the calls that still go through it)."""

    answer: Check
    item: Check
    page_hook: Any


_CHECKS: dict[tuple[str, str], ModelChecks] = {}


def checks_for(model: Any) -> ModelChecks:
    """The checks for `model`, compiled once per process (a run opens a client per (account,
    region), all with the same model; compiling walks the whole SourceServer shape)."""
    key = (model.service_name, model.api_version)
    found = _CHECKS.get(key)
    if found is None:
        shape = model.shape_for("SourceServer")
        item = compile_check(shape, "item")
        found = _CHECKS[key] = ModelChecks(compile_check(shape, "answer"), item, make_hook(item))
    return found


def page_frame(answer: Any, operation: str) -> dict[str, Any]:
    """A page of a lean list call (DescribeSourceServers, ListManagedAccounts) whose frame fits
    the model: `items` a list, `nextToken` a string (the items are checked later, one by one);
    raises the ambiguous ResponseParserError botocore's parser would raise."""
    items = answer.get("items") if isinstance(answer, dict) else None
    token = answer.get("nextToken") if isinstance(answer, dict) else None
    if (
        not isinstance(answer, dict)
        or (items is not None and not isinstance(items, list))
        or (token is not None and not isinstance(token, str))
    ):
        raise RetryableError(
            "ResponseParserError", f"{operation}: the page is off-model", ambiguous=True
        )
    return answer
