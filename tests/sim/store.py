"""MemoryDynamo: an in-process DynamoDB for the fault-injection simulator.

A drop-in for the boto3 low-level DynamoDB client (`boto3.client("dynamodb")`) for the calls
this project makes: the same keyword arguments and wire format, the same response dicts, and
the same errors (`botocore.exceptions.ClientError` subclasses with the response botocore builds
from DynamoDB's error body, e.g. `CancellationReasons` on a cancelled transaction, `Item` on a
failed condition with ReturnValuesOnConditionCheckFailure=ALL_OLD).

Fast and deterministic: items live in a dict per table keyed by (hash, range); every table
partition and every GSI partition keeps its keys sorted (bisect), so a Query with Limit touches
the page, not the table. Expressions are parsed once (tests/sim/expressions.py). Nothing is
deep-copied but the items handed back to the caller. Every call is atomic, also across
threads (a re-entrant lock per store). tests/test_sim_store.py holds it to
ministack, the project's local engine, operation by operation.

Without `fidelity` the store is one serial engine, as ministack is: every read sees the latest
write, indexes change inside the write, a transaction is applied inside its call. With a
`Fidelity` (the simulator's) it also does what DynamoDB does beyond that, each from a seeded
random generator and within the documented bounds (`Fidelity`'s fields):
- Eventually consistent reads: GetItem, Query on a table and BatchGetItem without
  `ConsistentRead` may be served by a lagging replica: the item as it was up to `read_lag`
  seconds ago (a deleted item may still be there, a new one not yet). GSIs are always
  eventually consistent (ConsistentRead on one is a ValidationException): each base write
  reaches the index `index_lag` seconds later at most, in order per item.
- Transactions as two phases (`begin_transact_write_items`, then `commit_step` until it says
  done; `transact_write_items` does both at once). Prepare checks every condition and holds
  every item; meanwhile another transaction touching a held item is cancelled with reason
  TransactionConflict at that action (the other reasons as usual, so a cancellation can mix
  ConditionalCheckFailed and TransactionConflict), a PutItem/UpdateItem/DeleteItem on one
  fails with TransactionConflictException, a TransactGetItems touching one is cancelled, the
  same ClientRequestToken gets TransactionInProgressException; a GetItem reads the committed
  value. Commit applies the items over two steps (some, then the rest), so a Query, a
  BatchGetItem or a series of GetItems can see a transaction half applied (DynamoDB's
  read-committed).
- Unprocessed keys (BatchGetItem) and items (BatchWriteItem), at random.
- TTL deletion: an item whose TTL attribute (a Number of epoch seconds, past but less than
  five years past) has expired is deleted at most `ttl_delay` seconds after it expired; it is
  readable until then, and its deletion is a write like any other (listeners see it, with
  `expiring` set, as a stream sees a system delete).
Always: at most 100 actions and 4 MB of items per transaction, 16 MB per BatchGetItem answer.

Hooks for the simulator:
- `listeners`: callables run once per item written, when the write is committed, with
  (table_name, (hash, range or None), old item or None, new item or None), items in plain
  Python form (`infra.dynamo.from_item`: numbers as int). A single-item write (and a TTL
  deletion) is committed when it is applied; a transaction is committed when it is decided
  (its prepare found no conflict and every condition true): its listeners run then, all of
  them, in action order, though readers see its items applied later, one commit step at a
  time. The plain items are shared: do not mutate them.
- `on_apply`: callables run when a write becomes visible to readers, with (table_name, key,
  old item or None, new item or None) in wire form (shared: do not mutate): a single-item
  write right when it is applied, a transaction's writes one by one as its commit steps apply
  them. A strongly consistent GetItem of the item returns the new item from then on (until
  then it returns the old: a GetItem is serialized before the transaction), so a check of
  what such a read could have seen times it by these, not by `listeners`.
- `committed_item(table_name, key)`: what a strongly consistent GetItem returns now, without
  the call (no count, no lag): the item's last committed value for readers (a transaction in
  flight counts item by item, as `on_apply` sees it). What a checker reads to judge what the
  code under test could have read; never a lagging replica's view.
- `items(table_name)`: the table's items in plain form, for audits (no transaction in flight).
- `events`: what the fidelity did, by kind (stale reads, conflicts, unprocessed keys, ...).
- `clock`: the time source (seconds) for ClientRequestToken expiry, lags and TTL; a virtual
  clock fits.
"""

from __future__ import annotations

import heapq
import itertools
import json
import operator
import random
import threading
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from tests.sim.expressions import Condition, KeyCondition, Projection, Update, compiled, project
from tests.sim.values import (
    MAX_ITEM_BYTES,
    Invalid,
    Item,
    Value,
    attribute_bytes,
    canon,
    canon_item,
    canon_item_sized,
    canon_number,
    copy_item,
    item_bytes,
    key_value,
    num,
    param_error,
    plain_item,
)

Key = tuple[Any, Any]  # (hash value, range value or None): str, int/Decimal or bytes
Listener = Callable[[str, Key, dict[str, Any] | None, dict[str, Any] | None], None]

PAGE_BYTES = 1024 * 1024
BATCH_GET_BYTES = 16 * 1024 * 1024
TRANSACTION_BYTES = 4 * 1024 * 1024
TOKEN_SECONDS = 600
TTL_HORIZON = 5 * 365 * 86_400  # TTL ignores expiry times this far in the past (malformed)
SCHEMA_MISMATCH = "The provided key element does not match the schema"
CONDITION_FAILED = "The conditional request failed"
ITEM_TOO_BIG = "Item size has exceeded the maximum allowed size"
UPDATE_TOO_BIG = "Item size to update has exceeded the maximum allowed size"
ONGOING = "Transaction is ongoing for the item"
IN_PROGRESS = "The transaction with the given request token is already in progress"
TOO_BIG_TRANSACTION = "Transaction request exceeds the 4MB transaction size limit"


@dataclass(frozen=True)
class Fidelity:
    """How far the store departs from one serial engine, as DynamoDB does (module docstring).
    Times are seconds of the store's clock. The defaults are the simulator's:

    - `stale_reads`: the chance that an eventually consistent read is served by a replica
      that has not caught up (DynamoDB keeps three; a write is acknowledged by two).
    - `read_lag`: how far behind such a replica is at most (the guide: consistency across all
      copies is usually reached within a second); uniform in [0, read_lag].
    - `index_lag`: how long a base write takes to reach a GSI at most; uniform, in order per
      item ("propagated eventually", typically within a fraction of a second to a second).
    - `unprocessed`: the chance that a BatchGetItem or BatchWriteItem leaves some of its keys
      or items unprocessed (throttling, partition limits): a random non-empty strict subset.
    - `ttl_delay`: how long after expiry TTL deletes an item at most (the guide: typically
      within 48 hours); uniform. None: TTL never deletes.
    """

    stale_reads: float = 1 / 3
    read_lag: float = 1.0
    index_lag: float = 1.0
    unprocessed: float = 0.05
    ttl_delay: float | None = 48 * 3600.0


# Error shapes whose botocore model has a lowercase `message` member: botocore copies the error
# body's `message` to the top of the response for these (ValidationException is unmodelled).
_MESSAGE_MEMBER = frozenset(
    {
        "ConditionalCheckFailedException",
        "ResourceNotFoundException",
        "ResourceInUseException",
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "LimitExceededException",
    }
)
_CODES = (
    "ConditionalCheckFailedException",
    "TransactionCanceledException",
    "IdempotentParameterMismatchException",
    "ResourceNotFoundException",
    "ResourceInUseException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "LimitExceededException",
)
# Like `client.exceptions`: ClientError subclasses named after the error codes.
exceptions = SimpleNamespace(
    ClientError=ClientError,
    **{
        code: type(code, (ClientError,), {"__module__": "botocore.errorfactory"}) for code in _CODES
    },
)


class _Failure(Exception):
    """A non-validation error response: code, message and the modelled fields."""

    def __init__(self, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.extra = extra or {}


# --- parameters ---------------------------------------------------------------------------------

_EXPRESSION_PARAMS = {"ExpressionAttributeNames", "ExpressionAttributeValues"}
_IGNORED = {"ReturnConsumedCapacity", "ReturnItemCollectionMetrics", "ConsistentRead"}
_PARAMS = {
    "GetItem": {"TableName", "Key", "ProjectionExpression", "ExpressionAttributeNames", *_IGNORED},
    "PutItem": {
        "TableName",
        "Item",
        "ConditionExpression",
        "ReturnValues",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
        *_IGNORED,
    },
    "UpdateItem": {
        "TableName",
        "Key",
        "UpdateExpression",
        "ConditionExpression",
        "ReturnValues",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
        *_IGNORED,
    },
    "DeleteItem": {
        "TableName",
        "Key",
        "ConditionExpression",
        "ReturnValues",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
        *_IGNORED,
    },
    "Query": {
        "TableName",
        "IndexName",
        "KeyConditionExpression",
        "FilterExpression",
        "ProjectionExpression",
        "Select",
        "ScanIndexForward",
        "Limit",
        "ExclusiveStartKey",
        *_EXPRESSION_PARAMS,
        *_IGNORED,
    },
    "Scan": {
        "TableName",
        "FilterExpression",
        "ProjectionExpression",
        "Select",
        "Limit",
        "ExclusiveStartKey",
        *_EXPRESSION_PARAMS,
        *_IGNORED,
    },
    "BatchGetItem": {"RequestItems", *_IGNORED},
    "BatchWriteItem": {"RequestItems", *_IGNORED},
    "TransactWriteItems": {"TransactItems", "ClientRequestToken", *_IGNORED},
    "TransactGetItems": {"TransactItems", *_IGNORED},
    "Put": {
        "TableName",
        "Item",
        "ConditionExpression",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
    },
    "Update": {
        "TableName",
        "Key",
        "UpdateExpression",
        "ConditionExpression",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
    },
    "Delete": {
        "TableName",
        "Key",
        "ConditionExpression",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
    },
    "ConditionCheck": {
        "TableName",
        "Key",
        "ConditionExpression",
        "ReturnValuesOnConditionCheckFailure",
        *_EXPRESSION_PARAMS,
    },
    "Get": {"TableName", "Key", "ProjectionExpression", "ExpressionAttributeNames"},
}
_ALLOWED = {op: frozenset(params) for op, params in _PARAMS.items()}
# Real DynamoDB parameters this store does not implement: asking for one is a bug to fix here,
# not something to ignore silently.
_UNSUPPORTED = frozenset(
    {
        "Expected",
        "ConditionalOperator",
        "AttributeUpdates",
        "AttributesToGet",
        "KeyConditions",
        "QueryFilter",
        "ScanFilter",
        "Segment",
        "TotalSegments",
        "IndexName",
    }
)


def _check_params(kwargs: dict[str, Any], op: str, required: tuple[str, ...]) -> None:
    allowed = _ALLOWED[op]
    if not kwargs.keys() <= allowed:
        extra = sorted(kwargs.keys() - allowed)
        if any(name in _UNSUPPORTED for name in extra):
            raise NotImplementedError(f"MemoryDynamo does not implement {op} {extra}")
        raise param_error(
            f'Unknown parameter in input: "{extra[0]}", must be one of: '
            + ", ".join(sorted(allowed))
        )
    for name in required:
        if name not in kwargs:
            raise param_error(f'Missing required parameter in input: "{name}"')


_SHAPES: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _bind(names: Any, values: Any, *expressions: Any) -> dict[str, Value]:
    """A request's canonical :values, once its #names and :values are checked against its
    expressions (DynamoDB rejects unused and undefined ones). The checks that depend only on
    which names and values a request has are done once per request shape."""
    if names is not None and type(names) is not dict:
        raise param_error("Invalid type for parameter ExpressionAttributeNames")
    if values is not None and type(values) is not dict:
        raise param_error("Invalid type for parameter ExpressionAttributeValues")
    shape = (
        expressions,
        None if names is None else tuple(names),
        None if values is None else tuple(values),
    )
    checks = _SHAPES.get(shape)
    if checks is None:
        checks = _check_shape(names, values, [e for e in expressions if e is not None])
        if len(_SHAPES) > 50_000:
            _SHAPES.clear()
        _SHAPES[shape] = checks
    if not values:
        return {}
    vals = canon_item(values, "ExpressionAttributeValues")
    for check in checks:
        check(vals)
    return vals


def _check_shape(names: Any, values: Any, present: list[Any]) -> tuple[Any, ...]:
    used_names = frozenset().union(*(e.names for e in present))
    used_values = frozenset().union(*(e.values for e in present))
    for label, given, used in (
        ("ExpressionAttributeNames", names, used_names),
        ("ExpressionAttributeValues", values, used_values),
    ):
        if given is None:
            continue
        if not given:
            raise Invalid(f"{label} must not be empty")
        if not present:
            raise Invalid(f"{label} can only be specified when using expressions")
        unused = sorted(given.keys() - used)
        if unused:
            raise Invalid(
                f"Value provided in {label} unused in expressions: keys: {{{', '.join(unused)}}}"
            )
    defined = values.keys() if values else frozenset()
    for expression in present:
        missing = sorted(expression.values - defined)
        if missing:
            raise Invalid(
                f"Invalid {_slot(expression)}: An expression attribute value used in expression "
                f"is not defined; attribute value: {missing[0]}"
            )
    return tuple(check for e in present for check in e.checks)


def _slot(expression: Any) -> str:
    if isinstance(expression, Condition):
        return expression.slot
    if isinstance(expression, Update):
        return "UpdateExpression"
    if isinstance(expression, KeyCondition):
        return "KeyConditionExpression"
    return "ProjectionExpression"


def _on_failure(body: dict[str, Any]) -> bool:
    """Whether ReturnValuesOnConditionCheckFailure asks for the old item."""
    choice = body.get("ReturnValuesOnConditionCheckFailure")
    if choice is None or choice == "NONE":
        return False
    if choice == "ALL_OLD":
        return True
    raise Invalid(
        f"1 validation error detected: Value '{choice}' at 'returnValuesOnConditionCheckFailure' "
        "failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]"
    )


def _empty_key(name: str, binary: bool = False) -> Invalid:
    kind = "binary" if binary else "string"
    return Invalid(
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        f"cannot contain an empty {kind} value. Key: {name}"
    )


def _signature(kwargs: dict[str, Any]) -> str:
    body = {k: v for k, v in kwargs.items() if k != "ClientRequestToken"}
    return json.dumps(body, sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


# --- tables -------------------------------------------------------------------------------------


class _Index:
    __slots__ = (
        "hash",
        "items",
        "keep",
        "key_names",
        "name",
        "parts",
        "projection",
        "range",
        "sizes",
    )

    def __init__(self, spec: dict[str, Any], table: _Table) -> None:
        self.name: str = spec["IndexName"]
        schema = {k["KeyType"]: k["AttributeName"] for k in spec["KeySchema"]}
        self.hash: str = schema["HASH"]
        self.range: str | None = schema.get("RANGE")
        projection = spec.get("Projection") or {}
        self.projection: str = projection.get("ProjectionType", "ALL")
        keys = {table.hash, self.hash}
        keys.update(n for n in (table.range, self.range) if n)
        if self.projection == "INCLUDE":
            keys.update(projection.get("NonKeyAttributes") or ())
        self.keep = frozenset(keys)
        self.key_names = tuple(n for n in (self.hash, self.range) if n)
        # index hash value -> sorted [(range value or 0, table hash, table range)]
        self.parts: dict[Any, list[tuple[Any, Any, Any]]] = {}
        # The version of each indexed item the index holds (it may lag the table's), by key.
        self.items: dict[Key, Item] = {}
        self.sizes: dict[Key, int] = {}

    def entry(self, item: Item, key: Key) -> tuple[Any, tuple[Any, Any, Any]] | None:
        hashed = item.get(self.hash)
        if hashed is None:
            return None
        if self.range is None:
            return key_value(hashed), (0, key[0], key[1])
        ranged = item.get(self.range)
        if ranged is None:
            return None
        return key_value(hashed), (key_value(ranged), key[0], key[1])

    def view(self, item: Item) -> Item:
        if self.projection == "ALL":
            return item
        keep = self.keep
        return {name: value for name, value in item.items() if name in keep}


class _Table:
    def __init__(self, kwargs: dict[str, Any], created: datetime, account: str) -> None:
        self.name: str = kwargs["TableName"]
        definitions = kwargs["AttributeDefinitions"]
        self.types: dict[str, str] = {d["AttributeName"]: d["AttributeType"] for d in definitions}
        schema = {k["KeyType"]: k["AttributeName"] for k in kwargs["KeySchema"]}
        self.hash: str = schema["HASH"]
        self.range: str | None = schema.get("RANGE")
        self.hash_type = self.types[self.hash]
        self.range_type = self.types[self.range] if self.range else None
        self.key_names = frozenset(n for n in (self.hash, self.range) if n)
        self.items: dict[Key, Item] = {}
        self.sizes: dict[Key, int] = {}
        self.parts: dict[Any, list[Any]] = {}  # hash -> sorted range values
        self.order: list[Key] | None = None  # sorted keys, for Scan; None when stale
        self.plain: dict[Key, dict[str, Any]] = {}
        self.indexes = {
            spec["IndexName"]: _Index(spec, self)
            for spec in kwargs.get("GlobalSecondaryIndexes") or ()
        }
        self.index_list = list(self.indexes.values())
        self.index_keys = [
            (name, self.types[name], index.name)
            for index in self.index_list
            for name in index.key_names
            if name not in self.key_names
        ]
        self.ttl: dict[str, Any] | None = None
        self.ttl_name: str | None = None  # the TTL attribute while TTL is enabled
        # Eventually consistent reads (with fidelity): the versions each key had until
        # `read_lag` ago, as [(replaced at, item or None, size)], oldest first; and, per
        # partition, the sorted range keys of deleted items that still have such versions.
        self.history: dict[Key, list[tuple[float, Item | None, int]]] = {}
        self.ghosts: dict[Any, list[Any]] = {}
        self.index_due: dict[Key, float] = {}  # when the key's last write reaches the GSIs
        arn = f"arn:aws:dynamodb:us-east-1:{account}:table/{self.name}"
        billing = kwargs.get("BillingMode", "PROVISIONED")
        throughput = kwargs.get("ProvisionedThroughput") or {}
        self.description: dict[str, Any] = {
            "AttributeDefinitions": [dict(d) for d in definitions],
            "TableName": self.name,
            "KeySchema": [dict(k) for k in kwargs["KeySchema"]],
            "TableStatus": "ACTIVE",
            "CreationDateTime": created,
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": throughput.get("ReadCapacityUnits", 0),
                "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 0),
            },
            "TableSizeBytes": 0,
            "ItemCount": 0,
            "TableArn": arn,
            "TableId": str(uuid.uuid5(uuid.NAMESPACE_URL, arn)),
            "BillingModeSummary": {"BillingMode": billing},
        }
        if self.index_list:
            self.description["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": spec["IndexName"],
                    "KeySchema": [dict(k) for k in spec["KeySchema"]],
                    "Projection": dict(spec.get("Projection") or {"ProjectionType": "ALL"}),
                    "IndexStatus": "ACTIVE",
                    "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
                    "IndexSizeBytes": 0,
                    "ItemCount": 0,
                    "IndexArn": f"{arn}/index/{spec['IndexName']}",
                }
                for spec in kwargs["GlobalSecondaryIndexes"]
            ]
        stream = kwargs.get("StreamSpecification")
        if stream and stream.get("StreamEnabled"):
            label = created.strftime("%Y-%m-%dT%H:%M:%S.000")
            self.description["StreamSpecification"] = dict(stream)
            self.description["LatestStreamLabel"] = label
            self.description["LatestStreamArn"] = f"{arn}/stream/{label}"

    # keys
    def key_of(self, key: Any) -> Key:
        """The key named by a Key parameter; Invalid unless it is exactly the table's key."""
        if type(key) is not dict:
            raise param_error("Invalid type for parameter Key, valid types: <class 'dict'>")
        if len(key) != len(self.key_names):
            raise Invalid(SCHEMA_MISMATCH)
        value = key.get(self.hash)
        if value is None:
            raise Invalid(SCHEMA_MISMATCH)
        hashed = _key_part(self.hash, self.hash_type, value, 2048, "hash")
        if self.range is None:
            return (hashed, None)
        value = key.get(self.range)
        if value is None:
            raise Invalid(SCHEMA_MISMATCH)
        return (hashed, _key_part(self.range, self.range_type, value, 1024, "range"))

    def key_item(self, key: Key) -> Item:
        """The key attributes as an item (what UpdateItem creates a missing item from)."""
        item = {self.hash: _wire(self.hash_type, key[0])}
        if self.range is not None:
            item[self.range] = _wire(self.range_type, key[1])
        return item

    def put_problem(self, item: Item, size: int) -> str | None:
        """What makes a PutItem's item invalid before its key types are looked at."""
        for name, limit, which in ((self.hash, 2048, "hash"), (self.range, 1024, "range")):
            value = item.get(name) if name else None
            if value is None:
                continue
            ((kind, data),) = value.items()
            if kind in ("S", "B") and not data:
                return _empty_key(name, kind == "B").args[0]  # type: ignore[arg-type]
            if kind in ("S", "B") and _too_long(data, limit):
                return (
                    f"One or more parameter values were invalid: Aggregated size of all {which} "
                    f"keys has exceeded the size limit of {limit} bytes"
                )
        if size > MAX_ITEM_BYTES:
            return ITEM_TOO_BIG
        return None

    def put_key(self, item: Item) -> tuple[Key | None, str | None]:
        """The item's key, or the missing-key / key-type message."""
        for name in (self.hash, self.range):
            if name and name not in item:
                return (
                    None,
                    _missing_key(name),
                )
        return self.typed_key(item)

    def typed_key(self, item: Item) -> tuple[Key | None, str | None]:
        parts: list[Any] = []
        for name, expected in ((self.hash, self.hash_type), (self.range, self.range_type)):
            if name is None:
                parts.append(None)
                continue
            ((kind, data),) = item[name].items()
            if kind != expected:
                return None, (
                    "One or more parameter values were invalid: Type mismatch for key "
                    f"{name} expected: {expected} actual: {kind}"
                )
            parts.append(num(data) if kind == "N" else data)
        return (parts[0], parts[1]), None

    def index_type_problem(self, item: Item) -> str | None:
        for name, expected, index in self.index_keys:
            value = item.get(name)
            if value is not None:
                kind = next(iter(value))
                if kind != expected:
                    return (
                        "One or more parameter values were invalid: Type mismatch for Index Key "
                        f"{name} Expected: {expected} Actual: {kind} IndexName: {index}"
                    )
        return None

    def index_empty_problem(self, item: Item, by_update: bool = False) -> str | None:
        for name, expected, index in self.index_keys:
            value = item.get(name)
            if value is not None and expected in value and not value[expected]:
                kind = "string" if expected == "S" else "binary"
                if by_update:
                    return (
                        "One or more parameter values are not valid. The update expression "
                        "attempted to update a secondary index key to a value that is not "
                        "supported. The AttributeValue for a key attribute cannot contain an "
                        f"empty {kind} value."
                    )
                return (
                    "One or more parameter values are not valid. A value specified for a "
                    "secondary index key is not supported. The AttributeValue for a key attribute "
                    f"cannot contain an empty {kind} value. IndexName: {index}, IndexKey: {name}"
                )
        return None

    def updated_size(self, key: Key, old: Item | None, new: Item, changed: frozenset[str]) -> int:
        """item_bytes(new), from the old item's size and the changed attributes only."""
        if old is None:
            return item_bytes(new)
        size = self.sizes[key]
        for name in changed:
            size += attribute_bytes(name, new.get(name)) - attribute_bytes(name, old.get(name))
        return size

    def key_attributes(self, item: Item, index: _Index | None) -> Item:
        """LastEvaluatedKey: the table's key and the index's key attributes of an item."""
        names = [self.hash, self.range]
        if index is not None:
            names += [index.hash, index.range]
        return {n: dict(item[n]) for n in dict.fromkeys(names) if n and n in item}

    def start_key(self, esk: Any, index: _Index | None) -> Item:
        if type(esk) is not dict:
            raise Invalid("The provided starting key is invalid")
        needed = set(self.key_names)
        if index is not None:
            needed.update(index.key_names)
        if not needed <= esk.keys():
            raise Invalid("The provided starting key is invalid")
        return {name: canon(value) for name, value in esk.items()}


def _key_part(name: str, expected: str | None, value: Any, limit: int, which: str) -> Any:
    if type(value) is not dict or len(value) != 1 or expected not in value:
        raise Invalid(SCHEMA_MISMATCH)
    data = value[expected]
    if expected == "S":
        if type(data) is not str:
            raise param_error(f"Invalid type for parameter Key.{name}.S")
        if not data:
            raise _empty_key(name)
        if _too_long(data, limit):
            raise Invalid(
                f"One or more parameter values were invalid: Aggregated size of all {which} keys "
                f"has exceeded the size limit of {limit} bytes"
            )
        return data
    if expected == "N":
        return num(canon_number(data))
    data = canon(value)["B"]
    if not data:
        raise _empty_key(name, binary=True)
    if len(data) > limit:
        raise Invalid(
            f"One or more parameter values were invalid: Aggregated size of all {which} keys has "
            f"exceeded the size limit of {limit} bytes"
        )
    return data


_EMPTY: Item = {}
_NOT_AN_ACTION = "TransactWriteRequest should contain Delete or Put or Update or ConditionCheck"
_ACTION_REQUIRES = {
    "Put": ("TableName", "Item"),
    "Update": ("TableName", "Key", "UpdateExpression"),
    "Delete": ("TableName", "Key"),
    "ConditionCheck": ("TableName", "Key", "ConditionExpression"),
}


def _key_update(name: str) -> str:
    return (
        f"One or more parameter values were invalid: Cannot update attribute {name}. This "
        "attribute is part of the key"
    )


def _missing_key(name: str) -> str:
    return f"One or more parameter values were invalid: Missing the key {name} in the item"


def _too_long(data: str | bytes, limit: int) -> bool:
    if isinstance(data, bytes):
        return len(data) > limit
    return len(data) * 4 > limit and len(data.encode()) > limit


def _wire(kind: str | None, value: Any) -> Value:
    if kind == "N":
        return {"N": canon_number(str(value))}
    return {kind or "S": value}


def _bounds(part: list[Any], op: str | None, args: list[Any], keyed: bool) -> tuple[int, int]:
    """The slice of a sorted partition that a range-key condition selects."""
    key = operator.itemgetter(0) if keyed else None
    if op is None:
        return 0, len(part)
    if op == "=":
        return bisect_left(part, args[0], key=key), bisect_right(part, args[0], key=key)
    if op == "<":
        return 0, bisect_left(part, args[0], key=key)
    if op == "<=":
        return 0, bisect_right(part, args[0], key=key)
    if op == ">":
        return bisect_right(part, args[0], key=key), len(part)
    if op == ">=":
        return bisect_left(part, args[0], key=key), len(part)
    if op == "BETWEEN":
        return bisect_left(part, args[0], key=key), bisect_right(part, args[1], key=key)
    prefix = args[0]  # begins_with
    low = bisect_left(part, prefix, key=key)
    after = _successor(prefix)
    high = len(part) if after is None else bisect_left(part, after, key=key)
    return low, high


def _discard(ghosts: dict[Any, list[Any]], key: Key) -> None:
    found = ghosts.get(key[0])
    if found is None:
        return
    at = bisect_left(found, key[1])
    if at < len(found) and found[at] == key[1]:
        del found[at]
        if not found:
            del ghosts[key[0]]


def _successor(prefix: str | bytes) -> str | bytes | None:
    """The least value greater than every value that begins with `prefix`."""
    if isinstance(prefix, bytes):
        data = prefix.rstrip(b"\xff")
        return data[:-1] + bytes([data[-1] + 1]) if data else None
    text = prefix.rstrip("\U0010ffff")
    return text[:-1] + chr(ord(text[-1]) + 1) if text else None


class _Action:
    """One member of a TransactWriteItems, as it is checked and applied."""

    __slots__ = (
        "body",
        "condition",
        "failed_update",
        "index",
        "key",
        "kind",
        "new",
        "old",
        "on_failure",
        "reason",
        "size",
        "table",
        "table_name",
        "update",
        "values",
    )

    def __init__(self, index: int, kind: str, body: dict[str, Any]) -> None:
        self.index = index
        self.kind = kind
        self.body = body
        self.table_name = body["TableName"]
        self.table: _Table | None = None
        self.condition: Condition | None = None
        self.update: Update | None = None
        self.values: dict[str, Value] = {}
        self.on_failure = False
        self.key: Key | None = None
        self.old: Item | None = None
        self.new: Item | None = None
        self.size = 0
        self.reason: str | None = None  # a ValidationError cancellation reason
        self.failed_update: str | None = None


class Staged:
    """A TransactWriteItems that was decided (no conflict, every condition true) and holds its
    items until `MemoryDynamo.commit_step` has applied all of its writes."""

    __slots__ = ("done", "held", "signature", "started", "token", "writes")

    def __init__(
        self, writes: list[_Action], held: list[tuple[str, Key]], token: str | None, signature: str
    ) -> None:
        self.writes = writes  # what is left to apply
        self.held = held
        self.token = token
        self.signature = signature
        self.started = False
        self.done = not held


_REPLAYED = Staged([], [], None, "")  # a token's replay: nothing to do


# --- the client ---------------------------------------------------------------------------------


class MemoryDynamo:
    """The boto3 DynamoDB client's calls, in memory. See the module docstring."""

    exceptions = exceptions

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        copy_results: bool = True,
        account_id: str = "000000000000",
        fidelity: Fidelity | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.copy_results = copy_results
        self.account_id = account_id
        self.listeners: list[Listener] = []
        self.on_apply: list[Listener] = []
        self.call_counts: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.expiring = False  # true while listeners hear a TTL deletion
        self.fidelity = fidelity
        self._rng = (rng or random.Random(0)) if fidelity is not None else None
        self._history = fidelity is not None and fidelity.stale_reads > 0 and fidelity.read_lag > 0
        self._index_lag = fidelity.index_lag if fidelity is not None else 0.0
        self._ttl_delay = fidelity.ttl_delay if fidelity is not None else None
        self._tables: dict[str, _Table] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._requests = itertools.count(1)
        # In-flight transactions: the items they hold, their tokens.
        self._held: dict[tuple[str, Key], Staged] = {}
        self._flying: dict[str, Staged] = {}
        # Work the store does in its own time (fidelity): GSI propagation and TTL deletion
        # queues (due time, sequence, ...) and the versions kept for lagging reads.
        self._index_queue: list[tuple[float, int, _Table, Key, Item | None, int]] = []
        self._ttl_queue: list[tuple[float, int, _Table, Key]] = []
        self._versions: deque[tuple[float, _Table, Key]] = deque()
        self._seq = itertools.count()
        # Calls are atomic even from threads (infra.dynamo.Dynamo calls its client through
        # asyncio.to_thread); re-entrant, so a listener may read the store.
        self._lock = threading.RLock()

    # hooks
    def items(self, table_name: str) -> Iterator[dict[str, Any]]:
        """Every item of the table in plain form (`from_item`), in no particular order. Only
        while no transaction is in flight (its items would be half applied)."""
        assert not self._held, "items() of a store with a transaction in flight"
        table = self._tables[table_name]
        cache = table.plain
        for key, item in list(table.items.items()):
            found = cache.get(key)
            if found is None:
                found = cache[key] = plain_item(item)
            yield found

    def table_names(self) -> list[str]:
        return sorted(self._tables)

    def committed_item(self, table_name: str, key: dict[str, Any]) -> Item | None:
        """The item (wire form, a copy) as a strongly consistent GetItem would return it now."""
        with self._lock:
            table = self._tables[table_name]
            item = table.items.get(table.key_of(key))
            return copy_item(item) if item is not None else None

    def settle(self) -> None:
        """Let every replica and index catch up, as if time had passed with no traffic: what
        was written before the run (a seeded catalog) is not news to any reader. TTL
        deletions that have come due are made; transactions in flight are not touched."""
        with self._lock:
            if self.fidelity is None:
                return
            self._tick()
            while self._index_queue:
                _, _, table, key, new, size = heapq.heappop(self._index_queue)
                self._propagate(table, key, new, size)
            self._versions.clear()
            for table in self._tables.values():
                table.history.clear()
                table.ghosts.clear()
                table.index_due.clear()

    def in_flight(self) -> int:
        """How many transactions are decided but not yet applied everywhere."""
        return len({id(s) for s in self._held.values()})

    # plumbing
    def _meta(self, status: int = 200) -> dict[str, Any]:
        return {
            "RequestId": f"memory-{next(self._requests)}",
            "HTTPStatusCode": status,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        }

    def _error(self, code: str, message: str, op: str, extra: dict[str, Any]) -> ClientError:
        response: dict[str, Any] = {
            "Error": {"Message": message, "Code": code},
            "ResponseMetadata": self._meta(400),
        }
        if code in _MESSAGE_MEMBER:
            response["message"] = message
        response.update(extra)
        kind: type[ClientError] = getattr(exceptions, code, ClientError)
        return kind(response, op)

    def _run(self, op: str, handler: Callable[[dict[str, Any]], Any], kwargs: Any) -> Any:
        self.call_counts[op] += 1
        try:
            with self._lock:
                if self.fidelity is not None:
                    self._tick()
                result = handler(kwargs)
        except Invalid as error:
            raise self._error("ValidationException", error.args[0], op, {}) from None
        except _Failure as failure:
            raise self._error(failure.code, failure.message, op, failure.extra) from None
        if type(result) is dict:
            result["ResponseMetadata"] = self._meta()
        return result

    def _table(self, name: Any) -> _Table:
        table = self._tables.get(name)
        if table is None:
            if type(name) is not str:
                raise param_error("Invalid type for parameter TableName")
            raise _Failure("ResourceNotFoundException", "Requested resource not found")
        return table

    def _out(self, item: Item) -> Item:
        return copy_item(item) if self.copy_results else item

    def _write(
        self, table: _Table, key: Key, old: Item | None, new: Item | None, size: int
    ) -> None:
        """Store `new` (None deletes), keeping the sorted partitions and indexes in step."""
        items = table.items
        if self._history:
            self._keep_version(table, key, old, new)
        if new is None:
            del items[key]
            del table.sizes[key]
            if table.range is not None:
                part = table.parts[key[0]]
                del part[bisect_left(part, key[1])]
                if not part:
                    del table.parts[key[0]]
            table.order = None
        else:
            items[key] = new
            table.sizes[key] = size
            if old is None:
                if table.range is not None:
                    ranges = table.parts.get(key[0])
                    if ranges is None:
                        table.parts[key[0]] = [key[1]]
                    else:
                        insort(ranges, key[1])
                table.order = None
        if table.index_list:
            if self._index_lag > 0:
                self._queue_index(table, key, new, size)
            else:
                self._propagate(table, key, new, size)
        if new is not None and table.ttl_name is not None and self._ttl_delay is not None:
            self._queue_expiry(table, key, old, new)
        for hook in self.on_apply:
            hook(table.name, key, old, new)

    def _propagate(self, table: _Table, key: Key, new: Item | None, size: int) -> None:
        """Bring every GSI of the table to version `new` of the item at `key`."""
        for index in table.index_list:
            held = index.items.get(key)
            before = index.entry(held, key) if held is not None else None
            after = index.entry(new, key) if new is not None else None
            if before != after:
                if before is not None:
                    entries = index.parts[before[0]]
                    del entries[bisect_left(entries, before[1])]
                    if not entries:
                        del index.parts[before[0]]
                if after is not None:
                    found = index.parts.get(after[0])
                    if found is None:
                        index.parts[after[0]] = [after[1]]
                    else:
                        insort(found, after[1])
            if after is None:
                if held is not None:
                    del index.items[key]
                    del index.sizes[key]
            else:
                index.items[key] = new  # type: ignore[assignment]
                index.sizes[key] = size

    def _queue_index(self, table: _Table, key: Key, new: Item | None, size: int) -> None:
        now = self.clock()
        due = now + self._rng.uniform(0, self._index_lag)  # type: ignore[union-attr]
        last = table.index_due.get(key)
        if last is not None and last > due:
            due = last  # a later write never overtakes an earlier one
        table.index_due[key] = due
        heapq.heappush(self._index_queue, (due, next(self._seq), table, key, new, size))

    def _keep_version(self, table: _Table, key: Key, old: Item | None, new: Item | None) -> None:
        """Remember what `key` held until now, for reads served by a lagging replica."""
        now = self.clock()
        entry = (now, old, table.sizes[key] if old is not None else 0)
        past = table.history.get(key)
        if past is None:
            table.history[key] = [entry]
        else:
            past.append(entry)
        self._versions.append((now, table, key))
        if table.range is None or (old is None) == (new is None):
            return
        ghosts = table.ghosts.get(key[0])
        if new is None:  # deleted: a lagging replica may still have it
            if ghosts is None:
                table.ghosts[key[0]] = [key[1]]
            else:
                at = bisect_left(ghosts, key[1])
                if at == len(ghosts) or ghosts[at] != key[1]:
                    ghosts.insert(at, key[1])
        elif ghosts is not None:  # back in its partition
            _discard(table.ghosts, key)

    def _queue_expiry(self, table: _Table, key: Key, old: Item | None, new: Item) -> None:
        name = table.ttl_name
        value = new.get(name)  # type: ignore[arg-type]
        if value is None or "N" not in value:
            return  # TTL reads only a Number
        if old is not None and old.get(name) == value:  # type: ignore[arg-type]
            return  # queued already
        due = float(value["N"]) + self._rng.uniform(0, self._ttl_delay)  # type: ignore[union-attr, arg-type]
        heapq.heappush(self._ttl_queue, (due, next(self._seq), table, key))

    def _tick(self) -> None:
        """What has come due in the store's own time: GSI propagation, TTL deletions, and
        forgetting versions no lagging read can reach any more."""
        now = self.clock()
        queue = self._index_queue
        while queue and queue[0][0] <= now:
            due, _, table, key, new, size = heapq.heappop(queue)
            self._propagate(table, key, new, size)
            if table.index_due.get(key) == due:
                del table.index_due[key]
        expiring = self._ttl_queue
        while expiring and expiring[0][0] <= now:
            _, _, table, key = heapq.heappop(expiring)
            self._expire(table, key, now)
        versions = self._versions
        if versions:
            horizon = now - self.fidelity.read_lag  # type: ignore[union-attr]
            while versions and versions[0][0] < horizon:
                _, table, key = versions.popleft()
                past = table.history.get(key)
                if not past:
                    continue
                while past and past[0][0] < horizon:
                    del past[0]
                if not past:
                    del table.history[key]
                    if table.range is not None and key not in table.items:
                        _discard(table.ghosts, key)

    def _expire(self, table: _Table, key: Key, now: float) -> None:
        """TTL's deletion of an item, if it is still expired (an update may have moved its
        expiry time or removed it)."""
        item = table.items.get(key)
        name = table.ttl_name
        if item is None or name is None:
            return
        value = item.get(name)
        if value is None or "N" not in value:
            return
        expires = float(value["N"])
        if not now - TTL_HORIZON < expires <= now:
            return
        if (table.name, key) in self._held:  # a transaction holds it: try again later
            heapq.heappush(self._ttl_queue, (now + 1.0, next(self._seq), table, key))
            return
        self.events["TTL deletion"] += 1
        self._write(table, key, item, None, 0)
        self.expiring = True
        try:
            self._notify(table, key, item, None)
        finally:
            self.expiring = False

    def _read_time(self) -> float | None:
        """When an eventually consistent read's replica stands: None for the latest."""
        rng = self._rng
        fidelity = self.fidelity
        if rng is None or not self._history or rng.random() >= fidelity.stale_reads:  # type: ignore[union-attr]
            return None
        return self.clock() - rng.uniform(0, fidelity.read_lag)  # type: ignore[union-attr]

    def _version(self, table: _Table, key: Key, at: float) -> tuple[Item | None, int]:
        """The item at `key` as a replica that stands at time `at` has it, and its size."""
        past = table.history.get(key)
        if past:
            for replaced, item, size in past:
                if replaced > at:
                    self.events["stale read"] += 1
                    return item, size
        item = table.items.get(key)
        return item, (table.sizes[key] if item is not None else 0)

    def _notify(self, table: _Table, key: Key, old: Item | None, new: Item | None) -> None:
        cache = table.plain
        if not self.listeners:
            if cache:
                cache.pop(key, None)
            return
        before = None
        if old is not None:
            before = cache.pop(key, None) or plain_item(old)
        after = None
        if new is not None:
            after = cache[key] = plain_item(new)
        for listener in self.listeners:
            listener(table.name, key, before, after)

    def _commit(
        self, table: _Table, key: Key, old: Item | None, new: Item | None, size: int
    ) -> None:
        self._write(table, key, old, new, size)
        self._notify(table, key, old, new)

    # tables
    def create_table(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("CreateTable", self._create_table, kwargs)

    def _create_table(self, kw: dict[str, Any]) -> dict[str, Any]:
        for name in ("TableName", "KeySchema", "AttributeDefinitions"):
            if name not in kw:
                raise param_error(f'Missing required parameter in input: "{name}"')
        if kw.get("LocalSecondaryIndexes"):
            raise NotImplementedError("MemoryDynamo does not implement local secondary indexes")
        name = kw["TableName"]
        if name in self._tables:
            raise _Failure("ResourceInUseException", f"Table already exists: {name}")
        defined = {d["AttributeName"]: d["AttributeType"] for d in kw["AttributeDefinitions"]}
        schemas = [kw["KeySchema"]] + [
            g["KeySchema"] for g in kw.get("GlobalSecondaryIndexes") or ()
        ]
        for schema in schemas:
            kinds = [k["KeyType"] for k in schema]
            if kinds not in (["HASH"], ["HASH", "RANGE"]):
                raise Invalid(
                    "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                )
            for element in schema:
                if defined.get(element["AttributeName"]) not in ("S", "N", "B"):
                    raise Invalid(
                        "One or more parameter values were invalid: Some index key attributes are "
                        "not defined in AttributeDefinitions"
                    )
        created = datetime.fromtimestamp(self.clock(), UTC)
        table = _Table(kw, created, self.account_id)
        self._tables[name] = table
        return {"TableDescription": self._describe(table)}

    def _describe(self, table: _Table) -> dict[str, Any]:
        description = json.loads(json.dumps(table.description, default=str))
        description["CreationDateTime"] = table.description["CreationDateTime"]
        description["ItemCount"] = len(table.items)
        description["TableSizeBytes"] = sum(table.sizes.values())
        for spec in description.get("GlobalSecondaryIndexes", ()):
            index = table.indexes[spec["IndexName"]]
            spec["ItemCount"] = sum(len(p) for p in index.parts.values())
        return description

    def describe_table(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("DescribeTable", self._describe_table, kwargs)

    def _describe_table(self, kw: dict[str, Any]) -> dict[str, Any]:
        table = self._tables.get(kw.get("TableName"))  # type: ignore[arg-type]
        if table is None:
            raise _Failure(
                "ResourceNotFoundException",
                f"Requested resource not found: Table: {kw.get('TableName')} not found",
            )
        return {"Table": self._describe(table)}

    def delete_table(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("DeleteTable", self._delete_table, kwargs)

    def _delete_table(self, kw: dict[str, Any]) -> dict[str, Any]:
        table = self._table(kw.get("TableName"))
        description = self._describe(table)
        description["TableStatus"] = "DELETING"
        del self._tables[table.name]
        return {"TableDescription": description}

    def list_tables(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("ListTables", self._list_tables, kwargs)

    def _list_tables(self, kw: dict[str, Any]) -> dict[str, Any]:
        names = sorted(self._tables)
        start = kw.get("ExclusiveStartTableName")
        if start is not None:
            names = names[bisect_right(names, start) :]
        limit = kw.get("Limit", 100)
        result: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            result["LastEvaluatedTableName"] = names[limit - 1]
        return result

    def update_time_to_live(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("UpdateTimeToLive", self._update_ttl, kwargs)

    def _update_ttl(self, kw: dict[str, Any]) -> dict[str, Any]:
        table = self._table(kw.get("TableName"))
        spec = dict(kw["TimeToLiveSpecification"])
        table.ttl = spec
        table.ttl_name = spec.get("AttributeName") if spec.get("Enabled") else None
        return {"TimeToLiveSpecification": spec}

    def describe_time_to_live(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("DescribeTimeToLive", self._describe_ttl, kwargs)

    def _describe_ttl(self, kw: dict[str, Any]) -> dict[str, Any]:
        table = self._table(kw.get("TableName"))
        if not table.ttl or not table.ttl.get("Enabled"):
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        return {
            "TimeToLiveDescription": {
                "TimeToLiveStatus": "ENABLED",
                "AttributeName": table.ttl["AttributeName"],
            }
        }

    def get_waiter(self, name: str) -> _Waiter:
        if name not in ("table_exists", "table_not_exists"):
            raise ValueError(f"MemoryDynamo has no waiter {name}")
        return _Waiter(self, name)

    def get_paginator(self, name: str) -> _Paginator:
        if name not in _Paginator.CURSORS:
            raise NotImplementedError(f"MemoryDynamo has no paginator {name}")
        return _Paginator(self, name)

    def can_paginate(self, name: str) -> bool:
        return name in _Paginator.CURSORS

    # single items
    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("GetItem", self._get_item, kwargs)

    def _get_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "GetItem", ("TableName", "Key"))
        table = self._table(kw["TableName"])
        projection = self._projection(kw)
        key = table.key_of(kw["Key"])
        at = None if kw.get("ConsistentRead") or not table.history else self._read_time()
        item = table.items.get(key) if at is None else self._version(table, key, at)[0]
        if item is None:
            return {}
        if projection is not None:
            return {"Item": copy_item(projection.project(item))}
        return {"Item": self._out(item)}

    def _projection(self, kw: dict[str, Any]) -> Projection | None:
        text = kw.get("ProjectionExpression")
        names = kw.get("ExpressionAttributeNames")
        projection = compiled(Projection, text, names) if text is not None else None
        if names is not None or projection is not None:
            _bind(names, None, projection)
        return projection

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("PutItem", self._put_item, kwargs)

    def _put_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "PutItem", ("TableName", "Item"))
        table = self._table(kw["TableName"])
        returns = kw.get("ReturnValues", "NONE")
        if returns not in ("NONE", "ALL_OLD"):
            raise Invalid(
                f"1 validation error detected: Value '{returns}' at 'returnValues' failed to "
                "satisfy constraint: Member must satisfy enum value set: ['ALL_OLD', 'NONE']"
            )
        on_failure = _on_failure(kw)
        names = kw.get("ExpressionAttributeNames")
        text = kw.get("ConditionExpression")
        condition = (
            compiled(Condition, text, names, "ConditionExpression") if text is not None else None
        )
        vals = _bind(names, kw.get("ExpressionAttributeValues"), condition)
        item, size = canon_item_sized(kw["Item"])
        problem = (
            table.put_problem(item, size)
            or table.index_type_problem(item)
            or table.index_empty_problem(item)
        )
        if problem:
            raise Invalid(problem)
        key, problem = table.put_key(item)
        if problem:
            raise Invalid(problem)
        assert key is not None
        self._not_held(table, key)
        old = table.items.get(key)
        if condition is not None and not condition.evaluate(old or {}, vals):
            raise self._condition_failed(old, on_failure)
        self._commit(table, key, old, item, size)
        if returns == "ALL_OLD" and old is not None:
            return {"Attributes": self._out(old)}
        return {}

    def _not_held(self, table: _Table, key: Key) -> None:
        """A single-item write meeting a transaction in flight on its item is refused."""
        if self._held and (table.name, key) in self._held:
            self.events["TransactionConflictException"] += 1
            raise _Failure("TransactionConflictException", ONGOING)

    def _condition_failed(self, old: Item | None, on_failure: bool) -> _Failure:
        extra = {"Item": copy_item(old)} if on_failure and old is not None else None
        return _Failure("ConditionalCheckFailedException", CONDITION_FAILED, extra)

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("UpdateItem", self._update_item, kwargs)

    def _update_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "UpdateItem", ("TableName", "Key"))
        table = self._table(kw["TableName"])
        returns = kw.get("ReturnValues", "NONE")
        if returns not in ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"):
            raise Invalid(
                f"1 validation error detected: Value '{returns}' at 'returnValues' failed to "
                "satisfy constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, "
                "ALL_OLD, NONE, UPDATED_NEW]"
            )
        on_failure = _on_failure(kw)
        names = kw.get("ExpressionAttributeNames")
        text = kw.get("ConditionExpression")
        condition = (
            compiled(Condition, text, names, "ConditionExpression") if text is not None else None
        )
        text = kw.get("UpdateExpression")
        update = compiled(Update, text, names) if text is not None else None
        vals = _bind(names, kw.get("ExpressionAttributeValues"), condition, update)
        key = table.key_of(kw["Key"])
        if update is not None and not update.top.isdisjoint(table.key_names):
            raise Invalid(_key_update(sorted(update.top & table.key_names)[0]))
        self._not_held(table, key)
        old = table.items.get(key)
        if condition is not None and not condition.evaluate(old or {}, vals):
            raise self._condition_failed(old, on_failure)
        if update is None:
            new = old if old is not None else table.key_item(key)
        else:
            new = update.apply(old, table.key_item(key) if old is None else old, vals)
        if new is not None and new is not old:
            size = table.updated_size(key, old, new, update.top) if update else item_bytes(new)
            if size > MAX_ITEM_BYTES:
                raise Invalid(UPDATE_TOO_BIG)
            problem = table.index_type_problem(new) or table.index_empty_problem(
                new, by_update=True
            )
            if problem:
                raise Invalid(problem)
            self._commit(table, key, old, new, size)
        if returns == "ALL_NEW":
            return {"Attributes": self._out(new)} if new is not None else {}
        if returns == "ALL_OLD":
            return {"Attributes": self._out(old)} if old is not None else {}
        if returns == "NONE" or update is None:
            return {}
        source = new if returns == "UPDATED_NEW" else old
        changed = project(source, update.paths) if source is not None else {}
        return {"Attributes": copy_item(changed)} if changed else {}

    def delete_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("DeleteItem", self._delete_item, kwargs)

    def _delete_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "DeleteItem", ("TableName", "Key"))
        table = self._table(kw["TableName"])
        returns = kw.get("ReturnValues", "NONE")
        if returns not in ("NONE", "ALL_OLD"):
            raise Invalid("1 validation error detected: ReturnValues can only be ALL_OLD or NONE")
        on_failure = _on_failure(kw)
        names = kw.get("ExpressionAttributeNames")
        text = kw.get("ConditionExpression")
        condition = (
            compiled(Condition, text, names, "ConditionExpression") if text is not None else None
        )
        vals = _bind(names, kw.get("ExpressionAttributeValues"), condition)
        key = table.key_of(kw["Key"])
        self._not_held(table, key)
        old = table.items.get(key)
        if condition is not None and not condition.evaluate(old or {}, vals):
            raise self._condition_failed(old, on_failure)
        if old is None:
            return {}
        self._commit(table, key, old, None, 0)
        return {"Attributes": self._out(old)} if returns == "ALL_OLD" else {}

    # reads of many items
    def query(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("Query", self._query, kwargs)

    def _query(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "Query", ("TableName",))
        table = self._table(kw["TableName"])
        index = None
        index_name = kw.get("IndexName")
        if index_name is not None:
            index = table.indexes.get(index_name)
            if index is None:
                raise Invalid(f"The table does not have the specified index: {index_name}")
            if kw.get("ConsistentRead"):
                raise Invalid("Consistent reads are not supported on global secondary indexes")
        text = kw.get("KeyConditionExpression")
        if text is None:
            raise Invalid(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in "
                "the request."
            )
        names = kw.get("ExpressionAttributeNames")
        keys = compiled(KeyCondition, text, names)
        text = kw.get("FilterExpression")
        filtering = (
            compiled(Condition, text, names, "FilterExpression") if text is not None else None
        )
        text = kw.get("ProjectionExpression")
        projection = compiled(Projection, text, names) if text is not None else None
        vals = _bind(names, kw.get("ExpressionAttributeValues"), keys, filtering, projection)
        limit = _limit(kw)
        counting = _select(kw, index, projection)
        hash_name = index.hash if index else table.hash
        range_name = index.range if index else table.range
        hash_value, range_op, range_args = self._key_condition(
            table, keys, vals, hash_name, range_name
        )
        forward = kw.get("ScanIndexForward", True)
        esk = kw.get("ExclusiveStartKey")
        start = table.start_key(esk, index) if esk is not None else None
        if start is not None and range_name is not None:
            self._check_start(start, keys, vals, hash_name, range_name)

        at = None
        if index is None and table.history and not kw.get("ConsistentRead"):
            at = self._read_time()
        fetch = self._fetch(table, index, at)
        if index is not None:
            part: list[Any] = index.parts.get(hash_value, [])
            low, high = _bounds(part, range_op, range_args, keyed=True)
            if start is not None:
                cursor = (
                    key_value(start[range_name]) if range_name else 0,
                    key_value(start[table.hash]),
                    key_value(start[table.range]) if table.range else None,
                )
                if forward:
                    low = max(low, bisect_right(part, cursor))
                else:
                    high = min(high, bisect_left(part, cursor))
            keys_in_order = _walk(part, low, high, forward)
            to_key: Callable[[Any], Key] = _entry_key
        elif table.range is not None:
            since = key_value(start[table.range]) if start is not None else None
            part = table.parts.get(hash_value, [])
            keys_in_order = _walk(
                part, *_slice(part, range_op, range_args, since, forward), forward
            )
            ghosts = table.ghosts.get(hash_value) if at is not None else None
            if ghosts:  # deleted items a lagging replica still has, in key order
                also = _walk(ghosts, *_slice(ghosts, range_op, range_args, since, forward), forward)
                keys_in_order = heapq.merge(keys_in_order, also, reverse=not forward)
            to_key = _range_key(hash_value)
        else:
            found = start is None and fetch((hash_value, None))[0] is not None
            keys_in_order = iter([(hash_value, None)] if found else [])
            to_key = _same
        return self._page(
            table, index, keys_in_order, to_key, fetch, limit, filtering, projection, vals, counting
        )

    def _fetch(
        self, table: _Table, index: _Index | None, at: float | None
    ) -> Callable[[Key], tuple[Item | None, int]]:
        """How a read finds an item and its size: in the index's own (lagging) copy, in the
        table as a replica standing at `at` has it, or the latest."""
        if index is not None:
            items, sizes = index.items, index.sizes
        elif at is not None:
            return lambda key: self._version(table, key, at)
        else:
            items, sizes = table.items, table.sizes

        def latest(key: Key) -> tuple[Item | None, int]:
            item = items.get(key)
            return item, (sizes[key] if item is not None else 0)

        return latest

    def _key_condition(
        self,
        table: _Table,
        keys: KeyCondition,
        vals: dict[str, Value],
        hash_name: str,
        range_name: str | None,
    ) -> tuple[Any, str | None, list[Any]]:
        allowed = 2 if range_name else 1
        if len(keys.parts) > allowed:
            raise Invalid(
                f"The number of query conditions ({len(keys.parts)}) exceeds the number of key "
                f"attributes defined in the schema ({allowed})"
            )
        by_name = {attribute: (op, refs) for attribute, op, refs in keys.parts}
        if hash_name not in by_name:
            raise Invalid(f"Query condition missed key schema element: {hash_name}")
        for attribute, _, refs in keys.parts:
            expected = table.types.get(attribute)
            for ref in refs:
                if expected is not None and expected not in vals[ref]:
                    raise Invalid(
                        "One or more parameter values were invalid: Condition parameter type does "
                        "not match schema type"
                    )
        for attribute, op, refs in keys.parts:
            if attribute not in (hash_name, range_name):
                raise Invalid(f"Query condition missed key schema element: {attribute}")
            if attribute == hash_name and op != "=":
                raise Invalid("Query key condition not supported")
            if op == "begins_with" and table.types[attribute] == "N":
                raise Invalid(
                    "Invalid KeyConditionExpression: Incorrect operand type for operator or "
                    "function; operator or function: begins_with, operand type: N"
                )
            for ref in refs:
                ((kind, data),) = vals[ref].items()
                if kind in ("S", "B") and not data:
                    raise _empty_key(attribute, kind == "B")
        hash_value = key_value(vals[by_name[hash_name][1][0]])
        if range_name is None or range_name not in by_name:
            return hash_value, None, []
        op, refs = by_name[range_name]
        args = [key_value(vals[ref]) for ref in refs]
        if op == "BETWEEN" and args[0] > args[1]:
            raise Invalid(
                "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be "
                "greater than or equal to lower bound"
            )
        return hash_value, op, args

    def _check_start(
        self,
        start: Item,
        keys: KeyCondition,
        vals: dict[str, Value],
        hash_name: str,
        range_name: str,
    ) -> None:
        """An ExclusiveStartKey must lie in the range the key condition selects."""
        for attribute, op, refs in keys.parts:
            value = start.get(attribute)
            args = [key_value(vals[ref]) for ref in refs]
            inside = value is not None and _matches(key_value(value), op, args)
            if not inside:
                raise Invalid("The provided starting key does not match the range key predicate")

    def _page(
        self,
        table: _Table,
        index: _Index | None,
        keys_in_order: Iterator[Any],
        to_key: Callable[[Any], Key],
        fetch: Callable[[Key], tuple[Item | None, int]],
        limit: int | None,
        filtering: Condition | None,
        projection: Projection | None,
        vals: dict[str, Value],
        counting: bool,
    ) -> dict[str, Any]:
        """One Query/Scan page: up to Limit items or 1 MB read, then filter and project."""
        evaluated: list[Item] = []
        last: Item | None = None
        read = 0
        stopped = False
        partial_view = index is not None and index.projection != "ALL"
        for position in keys_in_order:
            item, size = fetch(to_key(position))
            if item is None:  # not there yet on a lagging replica
                continue
            view = index.view(item) if partial_view else item  # type: ignore[union-attr]
            if partial_view:
                size = item_bytes(view)
            if evaluated and read + size > PAGE_BYTES:
                stopped = True
                break
            evaluated.append(view)
            last = item
            read += size
            if (limit is not None and len(evaluated) >= limit) or read >= PAGE_BYTES:
                stopped = True
                break
        scanned = len(evaluated)
        if filtering is not None:
            evaluated = [v for v in evaluated if filtering.evaluate(v, vals)]
        result: dict[str, Any] = {}
        if not counting:
            if projection is not None:
                result["Items"] = [copy_item(projection.project(v)) for v in evaluated]
            else:
                result["Items"] = [self._out(v) for v in evaluated]
        result["Count"] = len(evaluated)
        result["ScannedCount"] = scanned
        if stopped and last is not None:
            result["LastEvaluatedKey"] = table.key_attributes(last, index)
        return result

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("Scan", self._scan, kwargs)

    def _scan(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "Scan", ("TableName",))
        table = self._table(kw["TableName"])
        names = kw.get("ExpressionAttributeNames")
        text = kw.get("FilterExpression")
        filtering = (
            compiled(Condition, text, names, "FilterExpression") if text is not None else None
        )
        text = kw.get("ProjectionExpression")
        projection = compiled(Projection, text, names) if text is not None else None
        vals = _bind(names, kw.get("ExpressionAttributeValues"), filtering, projection)
        limit = _limit(kw)
        counting = _select(kw, None, projection)
        order = table.order
        if order is None:
            order = table.order = sorted(table.items)
        start = 0
        esk = kw.get("ExclusiveStartKey")
        if esk is not None:
            begin = table.start_key(esk, None)
            cursor = (
                key_value(begin[table.hash]),
                key_value(begin[table.range]) if table.range else None,
            )
            start = bisect_right(order, cursor)
        return self._page(
            table,
            None,
            _walk(order, start, len(order), True),
            _same,
            self._fetch(table, None, None),
            limit,
            filtering,
            projection,
            vals,
            counting,
        )

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("BatchGetItem", self._batch_get_item, kwargs)

    def _batch_get_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "BatchGetItem", ("RequestItems",))
        requests = kw["RequestItems"]
        if not requests:
            raise Invalid(
                "1 validation error detected: Value at 'RequestItems' failed to satisfy "
                "constraint: Member must have length greater than or equal to 1"
            )
        if sum(len(r.get("Keys") or ()) for r in requests.values()) > 100:
            raise Invalid("Too many items requested for the BatchGetItem call")
        plans = []
        for name, request in requests.items():
            unknown = request.keys() - {
                "Keys",
                "ConsistentRead",
                "ProjectionExpression",
                "ExpressionAttributeNames",
            }
            if unknown:
                raise NotImplementedError(f"MemoryDynamo does not implement BatchGetItem {unknown}")
            table = self._table(name)
            keys = [table.key_of(k) for k in request["Keys"]]
            if len(set(keys)) != len(keys):
                raise Invalid("Provided list of item keys contains duplicates")
            plans.append((name, table, keys, self._projection(request)))
        held_back = self._held_back(sum(len(plan[2]) for plan in plans))
        responses: dict[str, list[Item]] = {}
        unprocessed: dict[str, dict[str, Any]] = {}
        answered = 0  # bytes: an answer holds at most 16 MB, the rest is left unprocessed
        full = False
        position = 0
        for name, table, keys, projection in plans:
            request = requests[name]
            consistent = bool(request.get("ConsistentRead")) or not table.history
            found = responses[name] = []
            left: list[Any] = []
            for key, wire in zip(keys, request["Keys"], strict=True):
                position += 1
                if full or position in held_back:
                    left.append(wire)
                    continue
                at = None if consistent else self._read_time()
                if at is None:
                    item, size = table.items.get(key), table.sizes.get(key, 0)
                else:
                    item, size = self._version(table, key, at)
                if item is None:
                    continue
                if answered and answered + size > BATCH_GET_BYTES:
                    full = True
                    left.append(wire)
                    continue
                answered += size
                found.append(copy_item(projection.project(item)) if projection else self._out(item))
            if left:  # the same shape as the request's entry for the table
                unprocessed[name] = {**request, "Keys": left}
        if unprocessed:
            self.events["UnprocessedKeys"] += 1
        return {"Responses": responses, "UnprocessedKeys": unprocessed}

    def _held_back(self, count: int) -> frozenset[int]:
        """Which of `count` keys or items (1-based) a batch call leaves unprocessed this time:
        none, or a random non-empty strict subset."""
        rng, fidelity = self._rng, self.fidelity
        if rng is None or count < 2 or rng.random() >= fidelity.unprocessed:  # type: ignore[union-attr]
            return frozenset()
        return frozenset(rng.sample(range(1, count + 1), rng.randint(1, count - 1)))

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("BatchWriteItem", self._batch_write_item, kwargs)

    def _batch_write_item(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "BatchWriteItem", ("RequestItems",))
        requests = kw["RequestItems"]
        if sum(len(r) for r in requests.values()) > 25:
            raise Invalid("Too many items requested for the BatchWriteItem call")
        writes = []
        for name, members in requests.items():
            table = self._table(name)
            seen = set()
            for member in members:
                if "PutRequest" in member:
                    item = canon_item(member["PutRequest"]["Item"])
                    problem = table.put_problem(item, item_bytes(item))
                    problem = problem or table.index_type_problem(item)
                    problem = problem or table.index_empty_problem(item)
                    key, missing = table.put_key(item)
                    if problem or missing:
                        raise Invalid(problem or missing)
                else:
                    item = None
                    key = table.key_of(member["DeleteRequest"]["Key"])
                if key in seen:
                    raise Invalid("Provided list of item keys contains duplicates")
                seen.add(key)
                writes.append((name, member, table, key, item))
        held_back = self._held_back(len(writes))
        unprocessed: dict[str, list[Any]] = {}
        for position, (name, member, table, key, item) in enumerate(writes, 1):
            # Each write is a single-item write: one meeting a transaction on its item is not
            # made, and is handed back like a throttled one (an assumption: the guide only
            # says a BatchWriteItem is not serializable as a unit with transactions).
            if position in held_back or (self._held and (table.name, key) in self._held):
                unprocessed.setdefault(name, []).append(member)
                continue
            old = table.items.get(key)  # type: ignore[arg-type]
            if item is not None or old is not None:
                size = item_bytes(item) if item is not None else 0
                self._commit(table, key, old, item, size)  # type: ignore[arg-type]
        if unprocessed:
            self.events["UnprocessedItems"] += 1
        return {"UnprocessedItems": unprocessed}

    def transact_get_items(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("TransactGetItems", self._transact_get_items, kwargs)

    def _transact_get_items(self, kw: dict[str, Any]) -> dict[str, Any]:
        _check_params(kw, "TransactGetItems", ("TransactItems",))
        members = kw["TransactItems"]
        if not 1 <= len(members) <= 100:
            raise Invalid("Member must have length less than or equal to 100")
        plans = []
        for member in members:
            body = member["Get"]
            _check_params(body, "Get", ("TableName", "Key"))
            table = self._table(body["TableName"])
            plans.append((table, table.key_of(body["Key"]), self._projection(body)))
        if len({(t.name, k) for t, k, _ in plans}) != len(plans):
            raise Invalid("Transaction request cannot include multiple operations on one item")
        if self._held:
            ongoing = [(t.name, k) in self._held for t, k, _ in plans]
            if any(ongoing):
                self.events["TransactGetItems conflict"] += 1
                listed = [
                    {"Code": "TransactionConflict", "Message": ONGOING} if o else {"Code": "None"}
                    for o in ongoing
                ]
                raise _cancellation(listed)
        responses: list[dict[str, Any]] = []
        for table, key, projection in plans:
            item = table.items.get(key)
            if item is None:
                responses.append({})
            else:
                shown = copy_item(projection.project(item)) if projection else self._out(item)
                responses.append({"Item": shown})
        return {"Responses": responses}

    # transactions
    def transact_write_items(self, **kwargs: Any) -> dict[str, Any]:
        return self._run("TransactWriteItems", self._transact_write_items, kwargs)

    def _transact_write_items(self, kw: dict[str, Any]) -> dict[str, Any]:
        staged = self._begin(kw)
        if not staged.done:
            self._apply(staged, everything=True)
        return {}

    def begin_transact_write_items(self, **kwargs: Any) -> Staged:
        """TransactWriteItems's first phase: what rejects or cancels it is raised here, as
        `transact_write_items` raises it; otherwise it is decided and holds its items until
        `commit_step` has applied them (at once when the answer is `done`: a token's replay)."""
        staged: Staged = self._run("TransactWriteItems", self._begin, kwargs)
        return staged

    def commit_step(self, staged: Staged) -> bool:
        """Apply a decided transaction's writes: the first step some of them (at random, at
        least one, not all), the second the rest; whether it is now done (its items released,
        its token remembered)."""
        with self._lock:
            if self.fidelity is not None:
                self._tick()
            if not staged.done:
                self._apply(staged, everything=False)
            return staged.done

    def _apply(self, staged: Staged, everything: bool) -> None:
        writes = staged.writes
        count = len(writes)
        if not everything and count > 1 and self._rng is not None and not staged.started:
            count = self._rng.randint(1, count - 1)  # the first step leaves it half applied
        staged.started = True
        for action in writes[:count]:
            self._write(action.table, action.key, action.old, action.new, action.size)  # type: ignore[arg-type]
        del writes[:count]
        if writes:
            return
        for held in staged.held:
            del self._held[held]
        if staged.token is not None:
            del self._flying[staged.token]
            self._remember(staged.token, staged.signature)
        staged.done = True

    def _begin(self, kw: dict[str, Any]) -> Staged:
        _check_params(kw, "TransactWriteItems", ("TransactItems",))
        members = kw["TransactItems"]
        if type(members) is not list:
            raise param_error("Invalid type for parameter TransactItems")
        if not members:  # botocore checks minimums before sending
            raise param_error(
                "Invalid length for parameter TransactItems, value: 0, valid min length: 1"
            )
        if len(members) > 100:
            raise Invalid(
                "1 validation error detected: Value at 'transactItems' failed to satisfy "
                "constraint: Member must have length less than or equal to 100"
            )
        token = kw.get("ClientRequestToken")
        if token is not None and (type(token) is not str or not 1 <= len(token) <= 36):
            raise Invalid(
                "1 validation error detected: Value at 'clientRequestToken' failed to satisfy "
                "constraint: Member must have length less than or equal to 36"
            )
        actions = [self._action(i, member) for i, member in enumerate(members)]
        signature = ""
        if token is not None:
            signature = _signature(kw)
            flying = self._flying.get(token)
            if flying is not None:
                if flying.signature != signature:
                    raise _Failure(
                        "IdempotentParameterMismatchException",
                        "Request token already in use for another request with a different payload",
                    )
                self.events["TransactionInProgressException"] += 1
                raise _Failure("TransactionInProgressException", IN_PROGRESS)
            prior = self._tokens.get(token)
            if prior is not None and self.clock() - prior[1] < TOKEN_SECONDS:
                if prior[0] == signature:
                    return _REPLAYED
                raise _Failure(
                    "IdempotentParameterMismatchException",
                    "Request token already in use for another request with a different payload",
                )

        # What rejects the whole request, in request order; then an unknown table; then what
        # cancels the transaction before any condition is read (ValidationError reasons).
        tables = self._tables
        targets = set()
        unknown = False
        reasons: dict[int, tuple[str, str]] = {}
        for action in actions:
            table = action.table = tables.get(action.table_name)
            if table is None:
                unknown = True
                continue
            self._prepare(action, table)
            target = (
                action.table_name,
                action.key if action.key is not None else repr(action.body.get("Key")),
            )
            if target in targets:
                raise Invalid("Transaction request cannot include multiple operations on one item")
            targets.add(target)
            if action.reason is not None:
                reasons[action.index] = ("ValidationError", action.reason)
        # The items a transaction writes (what a Put or an Update leaves) count to 4 MB.
        if sum(a.size for a in actions if a.kind in ("Put", "Update")) > TRANSACTION_BYTES:
            raise Invalid(TOO_BIG_TRANSACTION)
        if unknown:
            raise _Failure("ResourceNotFoundException", "Requested resource not found")
        if reasons:
            raise self._cancelled(len(actions), reasons, {})

        # An item held by a transaction in flight conflicts; every other condition is read,
        # and a failed condition wins over the update's own error.
        held = self._held
        failed: dict[int, Item | None] = {}
        for action in actions:
            if held and (action.table_name, action.key) in held:
                reasons[action.index] = ("TransactionConflict", ONGOING)
                continue
            condition = action.condition
            if condition is not None and not condition.evaluate(
                action.old or _EMPTY, action.values
            ):
                failed[action.index] = action.old if action.on_failure else None
            elif action.failed_update is not None:
                reasons[action.index] = ("ValidationError", action.failed_update)
        if failed or reasons:
            if any(code == "TransactionConflict" for code, _ in reasons.values()):
                self.events["TransactionConflict"] += 1
                if failed:
                    self.events["TransactionConflict with ConditionalCheckFailed"] += 1
            raise self._cancelled(len(actions), reasons, failed)

        # Decided: it holds its items until every write is applied, and is committed now.
        writes = [
            action
            for action in actions
            if action.kind != "ConditionCheck"
            and (action.new is not None or action.old is not None)
        ]
        targets_held: list[tuple[str, Key]] = [(a.table_name, a.key) for a in actions]  # type: ignore[misc]
        staged = Staged(list(writes), targets_held, token, signature)
        if self._rng is not None:
            self._rng.shuffle(staged.writes)
        for target in targets_held:
            held[target] = staged
        if token is not None:
            self._flying[token] = staged
        for action in writes:
            self._notify(action.table, action.key, action.old, action.new)  # type: ignore[arg-type]
        return staged

    def _action(self, index: int, member: Any) -> _Action:
        """Parse one TransactItems member: its expressions and values (errors reject all)."""
        if type(member) is not dict or len(member) != 1:
            raise Invalid(_NOT_AN_ACTION)
        ((kind, body),) = member.items()
        required = _ACTION_REQUIRES.get(kind)
        if required is None:
            raise Invalid(_NOT_AN_ACTION)
        _check_params(body, kind, required)
        action = _Action(index, kind, body)
        names = body.get("ExpressionAttributeNames")
        text = body.get("ConditionExpression")
        condition = action.condition = (
            compiled(Condition, text, names, "ConditionExpression") if text is not None else None
        )
        text = body.get("UpdateExpression")
        update = action.update = compiled(Update, text, names) if text is not None else None
        action.values = _bind(names, body.get("ExpressionAttributeValues"), condition, update)
        action.on_failure = "ReturnValuesOnConditionCheckFailure" in body and _on_failure(body)
        return action

    def _prepare(self, action: _Action, table: _Table) -> None:
        """Resolve an action's key, old and new item; raise what rejects the whole request and
        note what cancels it (action.reason, action.failed_update)."""
        if action.kind == "Put":
            item, size = canon_item_sized(action.body["Item"])
            action.new, action.size = item, size
            problem = table.put_problem(item, size) or table.index_empty_problem(item)
            if problem:
                raise Invalid(problem)
            for name in (table.hash, table.range):
                if name and name not in item:
                    raise Invalid(_missing_key(name))
            action.key, action.reason = table.typed_key(item)
            if action.reason is None:
                action.reason = table.index_type_problem(item)
            if action.key is not None:
                action.old = table.items.get(action.key)
            return
        raw = action.body["Key"]
        if type(raw) is not dict or raw.keys() != table.key_names:
            raise Invalid(SCHEMA_MISMATCH)
        try:
            key = action.key = table.key_of(raw)
        except Invalid as error:
            if error.args[0] != SCHEMA_MISMATCH:
                raise
            action.reason = SCHEMA_MISMATCH
            return
        old = action.old = table.items.get(key)
        update = action.update
        if update is None:  # Delete, ConditionCheck
            return
        if not update.top.isdisjoint(table.key_names):
            raise Invalid(_key_update(sorted(update.top & table.key_names)[0]))
        try:
            new = action.new = update.apply(
                old, table.key_item(key) if old is None else old, action.values
            )
        except Invalid as error:
            action.failed_update = error.args[0]
            return
        if new is not None:
            problem = table.index_empty_problem(new, by_update=True)
            if problem:
                raise Invalid(problem)
            action.reason = table.index_type_problem(new)
            size = action.size = table.updated_size(key, old, new, update.top)
            if action.reason is None and size > MAX_ITEM_BYTES:
                action.reason = UPDATE_TOO_BIG

    def _cancelled(
        self, count: int, reasons: dict[int, tuple[str, str]], failed: dict[int, Item | None]
    ) -> _Failure:
        listed: list[dict[str, Any]] = []
        for i in range(count):
            if i in reasons:
                code, message = reasons[i]
                listed.append({"Code": code, "Message": message})
            elif i in failed:
                reason: dict[str, Any] = {
                    "Code": "ConditionalCheckFailed",
                    "Message": CONDITION_FAILED,
                }
                old = failed[i]
                if old is not None:
                    reason["Item"] = copy_item(old)
                listed.append(reason)
            else:
                listed.append({"Code": "None"})
        return _cancellation(listed)

    def _remember(self, token: str, signature: str) -> None:
        """Remember a token for TOKEN_SECONDS. Tokens are kept in the order they came (the
        clock never goes back), so forgetting the expired ones costs only what expires."""
        now = self.clock()
        tokens = self._tokens
        while tokens:
            oldest = next(iter(tokens))
            if now - tokens[oldest][1] < TOKEN_SECONDS:
                break
            del tokens[oldest]
        tokens.pop(token, None)
        tokens[token] = (signature, now)


def _cancellation(listed: list[dict[str, Any]]) -> _Failure:
    codes = ", ".join(r["Code"] for r in listed)
    return _Failure(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        {"CancellationReasons": listed},
    )


def _limit(kw: dict[str, Any]) -> int | None:
    limit = kw.get("Limit")
    if limit is None:
        return None
    if type(limit) is not int:
        raise param_error("Invalid type for parameter Limit")
    if limit < 1:  # botocore checks minimums before sending
        raise param_error(f"Invalid value for parameter Limit, value: {limit}, valid min value: 1")
    return limit


def _select(kw: dict[str, Any], index: _Index | None, projection: Projection | None) -> bool:
    """Whether only the count is asked for; Invalid for a Select that cannot be honoured."""
    select = kw.get("Select")
    if select is None:
        return False
    if select == "COUNT":
        if projection is not None:
            raise Invalid(
                "Cannot specify the ProjectionExpression when choosing to get only the Count"
            )
        return True
    if select == "SPECIFIC_ATTRIBUTES":
        if projection is None:
            raise Invalid(
                "1 validation error detected: Must specify the AttributesToGet or "
                "ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"
            )
        return False
    if select == "ALL_PROJECTED_ATTRIBUTES":
        if index is None:
            raise Invalid(
                "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"
            )
        return False
    if select == "ALL_ATTRIBUTES":
        if index is not None and index.projection != "ALL":
            raise Invalid(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not "
                f"supported for global secondary index {index.name} because its projection type "
                "is not ALL"
            )
        return False
    raise Invalid(
        f"1 validation error detected: Value '{select}' at 'select' failed to satisfy constraint: "
        "Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, "
        "ALL_PROJECTED_ATTRIBUTES]"
    )


def _matches(value: Any, op: str, args: list[Any]) -> bool:
    try:
        if op == "=":
            return bool(value == args[0])
        if op == "<":
            return bool(value < args[0])
        if op == "<=":
            return bool(value <= args[0])
        if op == ">":
            return bool(value > args[0])
        if op == ">=":
            return bool(value >= args[0])
        if op == "BETWEEN":
            return bool(args[0] <= value <= args[1])
        return bool(value.startswith(args[0]))
    except (TypeError, AttributeError):
        return False


def _slice(
    part: list[Any], op: str | None, args: list[Any], cursor: Any, forward: bool
) -> tuple[int, int]:
    """The slice of a sorted partition (range values) that a range-key condition and an
    ExclusiveStartKey's range value (`cursor`, or None) select."""
    low, high = _bounds(part, op, args, keyed=False)
    if cursor is not None:
        if forward:
            low = max(low, bisect_right(part, cursor))
        else:
            high = min(high, bisect_left(part, cursor))
    return low, high


def _walk(part: list[Any], low: int, high: int, forward: bool) -> Iterator[Any]:
    if forward:
        for i in range(low, high):
            yield part[i]
    else:
        for i in range(high - 1, low - 1, -1):
            yield part[i]


def _entry_key(entry: tuple[Any, Any, Any]) -> Key:
    return (entry[1], entry[2])


def _range_key(hash_value: Any) -> Callable[[Any], Key]:
    return lambda range_value: (hash_value, range_value)


def _same(key: Key) -> Key:
    return key


class _Paginator:
    CURSORS = {
        "list_tables": ("ExclusiveStartTableName", "LastEvaluatedTableName"),
        "scan": ("ExclusiveStartKey", "LastEvaluatedKey"),
        "query": ("ExclusiveStartKey", "LastEvaluatedKey"),
    }

    def __init__(self, client: MemoryDynamo, name: str) -> None:
        self.client = client
        self.name = name

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs.pop("PaginationConfig", None)
        start, last = self.CURSORS[self.name]
        call = getattr(self.client, self.name)
        while True:
            page = call(**kwargs)
            yield page
            cursor = page.get(last)
            if not cursor:
                return
            kwargs = {**kwargs, start: cursor}


class _Waiter:
    def __init__(self, client: MemoryDynamo, name: str) -> None:
        self.client = client
        self.name = name

    def wait(self, **kwargs: Any) -> None:
        exists = kwargs.get("TableName") in self.client._tables
        if exists != (self.name == "table_exists"):
            raise WaiterError(
                name=self.name, reason="Max attempts exceeded", last_response={"Table": None}
            )
