"""The DynamoDB boundary: every DynamoDB call the state backend makes, and its errors translated.

The journal's writes are synchronous (the ledger's `Writer` is), so this module uses boto3, not
aioboto3: an intent must be durable before FinalizeCutover goes out. Nothing else imports
botocore for DynamoDB. Calls go through `Table.call(OPERATION, ...)` (tests/test_cron.py checks
docs/iam-policy.json against the operations named here).

One table holds every wave's state; items are keyed `pk` (the wave's scope) and `sk`:

| pk                         | sk              | what                                          |
|----------------------------|-----------------|-----------------------------------------------|
| `scope#<acct>#<region>#<w>`| `lease`         | the run lock as a lease: holder, token, expiry |
| `scope#...`                | `server#<id>`   | one server's journal entry, its revision `rev` |
| `scope#...`                | `run#<id>`      | one run: started, finished, its record (zlib)  |
| `wave#<wave>`              | `scope#...`     | which scopes a wave name has (report, status)  |

Errors: a failed condition raises ConditionFailed (the caller knows what it means); anything
else (throttled past our retries, unreachable, access denied) raises StateWriteError (exit 5).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions as bce
from botocore.config import Config as BotoConfig

from orchestrator.errors import StateWriteError

Item = dict[str, Any]

# Three attempts (standard mode backs off and honours throttling), short timeouts: a run must
# learn quickly that its intent cannot be recorded, and send nothing meanwhile.
_BOTO = {
    "retries": {"mode": "standard", "total_max_attempts": 3},
    "connect_timeout": 2,
    "read_timeout": 5,
    "max_pool_connections": 4,
    # DynamoDB validates every request itself; botocore's own pass costs ~0.4 ms of CPU per
    # transaction item, taken from the event loop (the GIL) on every intent.
    "parameter_validation": False,
}
# DynamoDB allows 100 actions per transaction; one is the lease's fencing check.
MAX_TRANSACTION = 100


class ConditionFailed(Exception):
    """A conditional write was refused; `reasons` per action for a transaction ("None" passed)."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


@dataclass(frozen=True)
class TableSettings:
    """How to reach the state table; credentials come from boto3's chain."""

    table: str
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None


@dataclass
class Counts:
    """DynamoDB requests made, by operation, and journal items written (for the figures)."""

    requests: dict[str, int] = field(default_factory=dict)
    items_written: int = 0
    actions: dict[str, int] = field(default_factory=dict)  # transactions' actions, by kind


class Table:
    """One boto3 DynamoDB client on the state table; thread-safe (boto3 clients are)."""

    def __init__(self, settings: TableSettings, client: Any = None) -> None:
        self.name = settings.table
        if client is None:
            session = boto3.session.Session(
                profile_name=settings.profile, region_name=settings.region
            )
            client = session.client(
                "dynamodb", endpoint_url=settings.endpoint_url, config=BotoConfig(**_BOTO)
            )
        self._client = client
        self.counts = Counts()
        self._mutex = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def call(self, operation: str, **kwargs: Any) -> Any:
        """One DynamoDB request. Raises ConditionFailed or StateWriteError (see module doc)."""
        with self._mutex:
            self.counts.requests[operation] = self.counts.requests.get(operation, 0) + 1
        try:
            return getattr(self._client, _snake(operation))(**kwargs)
        except bce.ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            message = error.get("Message", "") or str(exc)
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(message) from exc
            if code == "TransactionCanceledException":
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
                if not reasons:
                    reasons = _reasons_from_message(message)
                if "ConditionalCheckFailed" in reasons:
                    raise ConditionFailed(message, reasons) from exc
            raise StateWriteError(
                f"state table {self.name}: {operation}: {code}: {message}"
            ) from exc
        except (bce.BotoCoreError, OSError) as exc:
            raise StateWriteError(f"state table {self.name}: {operation}: {exc}") from exc

    def get(self, pk: str, sk: str) -> Item | None:
        """One item, read strongly consistent; None if absent."""
        out = self.call("GetItem", TableName=self.name, Key=key(pk, sk), ConsistentRead=True)
        item = out.get("Item")
        return None if item is None else unmarshal(item)

    def query(self, pk: str, prefix: str) -> Iterator[Item]:
        """Every item of `pk` whose sk starts with `prefix`, strongly consistent, all pages."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            out = self.call("Query", **kwargs)
            yield from (unmarshal(i) for i in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def transact(self, actions: Sequence[Mapping[str, Any]], items: int) -> None:
        """One TransactWriteItems; `items` journal items it writes (counted for the figures)."""
        self.call("TransactWriteItems", TransactItems=list(actions))
        with self._mutex:
            self.counts.items_written += items
            for action in actions:
                for kind in action:
                    self.counts.actions[kind] = self.counts.actions.get(kind, 0) + 1


def init_table(settings: TableSettings, client: Any = None) -> list[str]:
    """Create the state table (on-demand, point-in-time recovery on), or report the existing
    one and turn its point-in-time recovery on. Returns what was found and done, one line each.

    Raises StateWriteError if DynamoDB refuses, or the existing table has another key schema.
    """
    table = Table(settings, client)
    done: list[str] = []
    try:
        try:
            found = table.call("DescribeTable", TableName=table.name)["Table"]
        except StateWriteError as err:
            if "ResourceNotFoundException" not in str(err):
                raise
            found = None
        if found is None:
            table.call(
                "CreateTable",
                TableName=table.name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
            )
            table._client.get_waiter("table_exists").wait(
                TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            done.append(f"created table {table.name} (on-demand capacity, keys pk/sk)")
        else:
            keys = sorted((k["AttributeName"], k["KeyType"]) for k in found["KeySchema"])
            if keys != [("pk", "HASH"), ("sk", "RANGE")]:
                raise StateWriteError(
                    f"table {table.name} exists with keys {keys}, not pk (HASH) and sk (RANGE): "
                    "it is not an mgn-cutover state table; choose another name"
                )
            mode = (found.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
            done.append(f"table {table.name} exists ({found['TableStatus']}, {mode}): kept")
        backups = table.call("DescribeContinuousBackups", TableName=table.name)
        pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
            done.append("point-in-time recovery already on")
        else:
            table.call(
                "UpdateContinuousBackups",
                TableName=table.name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            done.append("point-in-time recovery turned on")
    finally:
        table.close()
    return done


# -- items ----------------------------------------------------------------------------------------


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def marshal(value: object) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (str, int, bool, bytes, None)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    if isinstance(value, bytes):
        return {"B": value}
    return {"S": str(value)}


def unmarshal(item: Mapping[str, Any]) -> Item:
    """A DynamoDB item as plain Python values (numbers: int when whole, else float)."""
    out: Item = {}
    for name, value in item.items():
        ((kind, raw),) = value.items()
        if kind == "N":
            number = float(raw)
            out[name] = int(number) if number.is_integer() and "." not in raw else number
        elif kind == "NULL":
            out[name] = None
        else:
            out[name] = raw
    return out


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _reasons_from_message(message: str) -> list[str]:
    """`... [None, ConditionalCheckFailed]` at the end of the message (moto sends no list)."""
    inside = message.rpartition("[")[2].rstrip("]").strip()
    return [r.strip() for r in inside.split(",")] if inside else []
