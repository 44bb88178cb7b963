"""Off-model MGN answers, caught before botocore parses them.

botocore's parser is lenient where we need strictness (a non-boolean `isArchived` becomes False)
and strict where we need leniency (one mis-typed structure fails a whole page of 200 servers).
A `before-parse` hook checks each SourceServer's raw JSON against the model's types; an item
that does not match is replaced by its bare ID plus a `PROBLEM_KEY` naming the fault, so that
server alone is reported as unknown state and never finalized.
"""

from __future__ import annotations

import json
from typing import Any

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


def type_problem(value: Any, shape: Any, path: str) -> str | None:
    """The first place where `value` lacks the JSON type that `shape` (a botocore Shape) wants."""
    if value is None:
        return None  # absent or null: the caller's own checks decide what a gap means
    wanted = _JSON_TYPES.get(shape.type_name)
    if wanted is None:
        return None
    if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
        return f"{path} is {type(value).__name__}, the model says {shape.type_name}"
    children: list[tuple[Any, Any, str]] = []
    if isinstance(value, dict) and shape.type_name == "structure":
        children = [(value.get(n), m, f"{path}.{n}") for n, m in shape.members.items()]
    elif isinstance(value, dict) and shape.type_name == "map":
        children = [(v, shape.value, f"{path}.{k}") for k, v in value.items()]
    elif isinstance(value, list):
        children = [(v, shape.member, f"{path}[{i}]") for i, v in enumerate(value)]
    for child, child_shape, child_path in children:
        problem = type_problem(child, child_shape, child_path)
        if problem:
            return problem
    return None


def check_items(body: Any, server_shape: Any) -> tuple[Any, dict[str, str]]:
    """A DescribeSourceServers body with off-model items replaced; and {server ID: problem}."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return body, {}
    problems: dict[str, str] = {}
    items = []
    for item in body["items"]:
        problem = type_problem(item, server_shape, "item")
        if problem is None:
            items.append(item)
            continue
        server_id = item.get("sourceServerID") if isinstance(item, dict) else None
        if isinstance(server_id, str):
            problems[server_id] = problem
            items.append({"sourceServerID": server_id})
        # An item without a usable ID cannot be matched to a server: the plan sees it missing.
    return {**body, "items": items}, problems


def make_hook(server_shape: Any, *, single: bool) -> Any:
    """A botocore `before-parse` handler for DescribeSourceServers (or, `single`, an answer
    that is one SourceServer, such as FinalizeCutover's)."""

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
        if single:
            problem = type_problem(body, server_shape, "answer") if isinstance(body, dict) else None
            if problem is not None or not isinstance(body, dict):
                response_dict["body"] = b"{}"
                customized_response_dict[PROBLEM_KEY] = problem or "answer is not an object"
            return
        fixed, problems = check_items(body, server_shape)
        if problems or fixed is not body:
            response_dict["body"] = json.dumps(fixed).encode()
            customized_response_dict[PROBLEM_KEY] = problems

    return before_parse
