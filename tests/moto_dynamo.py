"""moto's DynamoDB made safe for concurrent clients (tests) and fast for big tables (benchmark).

moto 5.2's TransactWriteItems deep-copies every table it touches, once per action, to roll back
on failure, while other request threads may be changing that table: concurrent writers then fail
with a 500 ("dictionary changed size during iteration"), and every transaction costs O(table).
DynamoDB itself has neither problem. `serialize()` puts every DynamoDB backend call under one
lock (moto's semantics unchanged); `fast_transactions()` also replaces the copy with a check of
every action's condition before any is applied (all or nothing, as DynamoDB does), so a
transaction costs the same on a table of 10 items and of 10,000.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()
_OPS = ("transact_write_items", "update_item", "put_item", "get_item", "delete_item", "query")


def serialize() -> None:
    """Run one DynamoDB backend call at a time (idempotent)."""
    if getattr(DynamoDBBackend, "_serialized", False):
        return
    for name in _OPS:
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    DynamoDBBackend._serialized = True  # type: ignore[attr-defined]


def fast_transactions() -> None:
    """TransactWriteItems without copying tables: conditions first, then the writes."""
    serialize()

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _LOCK:
            errors: list[tuple[Any, Any, Any]] = []
            for action in transact_items:
                ((op_type, op),) = action.items()
                table = self.get_table(op["TableName"])
                if op_type == "Put":
                    attrs = op["Item"]
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(op["TableName"], key)
                condition = op.get("ConditionExpression")
                ok = condition is None or get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                ).expr(current)  # fmt: skip
                errors.append(
                    (None, None, None) if ok
                    else ("ConditionalCheckFailed", "The conditional request failed", None)
                )  # fmt: skip
            if any(code is not None for code, _, _ in errors):
                raise TransactionCanceledException(errors)
            for action in transact_items:
                ((op_type, op),) = action.items()
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    self.put_item(op["TableName"], op["Item"])
                elif op_type == "Update":
                    self.update_item(
                        op["TableName"], op["Key"], update_expression=op["UpdateExpression"],
                        condition_expression=None, expression_attribute_names=names,
                        expression_attribute_values=values,
                    )  # fmt: skip
                elif op_type == "Delete":
                    self.delete_item(op["TableName"], op["Key"])

    DynamoDBBackend.transact_write_items = transact  # type: ignore[method-assign]
