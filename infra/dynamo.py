"""DynamoDB access: one low-level client, item (de)serialisation, async calls, and what a
call does when DynamoDB is busy.

botocore is synchronous; every call runs in a worker thread so the aiohttp server's event loop
(and its WebSocket subscribers) never blocks on the network. Numbers are integers only.

The client is botocore's own (boto3 adds nothing for a low-level client but its import: s3transfer
and multiprocessing, a cold start's worth, docs/architecture.md "Measured"), with botocore's
parameter validation off: every request is built here from the project's own values, and
DynamoDB validates each one again (a malformed one is a ValidationException from the service
instead of a ParamValidationError before sending); it costs about a quarter of botocore's
client-side CPU per transaction (`make bench`).

Faults are normal (docs/architecture.md, "Faults"): a throttle, a 500, a timeout, a
transaction cancelled by a concurrent one. Every call here retries those with jittered
exponential backoff until the request's deadline, then raises `Unavailable`, which the API
answers as TRY_AGAIN. A transaction keeps its ClientRequestToken across retries of an
ambiguous failure (a timeout or a 500 after which it may have committed), so DynamoDB applies
it at most once; a cancelled transaction applied nothing and is retried as a new request.
Single-item writes are all conditional or idempotent, so retrying them is safe.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra import runtime
from infra.config import Settings
from infra.ids import decode_cursor, encode_cursor

Item = dict[str, Any]
Invoke = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

# Error codes after which the same call may simply be made again.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
# TransactWriteItems cancellation reasons that say "busy", not "your condition failed".
TRANSIENT_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def to_attr(value: Any) -> dict[str, Any]:
    """A Python value in DynamoDB's wire format. The project's types (str, int, bool, None,
    dict, list) are written directly, at a fraction of boto3's TypeSerializer's cost (it runs
    for every attribute of every item written); anything else goes through TypeSerializer."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int:
        return {"N": str(value)}
    if kind is bool:
        return {"BOOL": value}
    if kind is dict:
        return {"M": {k: to_attr(v) for k, v in value.items()}}
    if kind is list:
        return {"L": [to_attr(v) for v in value]}
    if value is None:
        return {"NULL": True}
    if kind is float:
        raise TypeError("floats are not stored; use integers in minor units")
    from boto3.dynamodb.types import TypeSerializer  # sets, bytes, Decimal: never on a hot path

    return TypeSerializer().serialize(value)


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def _from_attr(attr: Mapping[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S" or kind == "BOOL":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else int(Decimal(value))
    if kind == "M":
        return {k: _from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [_from_attr(v) for v in value]
    if kind == "NULL":
        return None
    from boto3.dynamodb.types import TypeDeserializer  # sets and binary: never on a hot path

    return _plain(TypeDeserializer().deserialize(attr))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def from_item(item: Mapping[str, Any]) -> Item:
    """A wire-format item as Python values; numbers are integers (money in minor units)."""
    return {k: _from_attr(v) for k, v in item.items()}


def counted(name: str, value: int, placeholder: str) -> str:
    """A condition that a counter still holds `value` as read (an absent one counts as 0)."""
    if value == 0:
        return f"(attribute_not_exists({name}) OR {name} = {placeholder})"
    return f"{name} = {placeholder}"


class Unavailable(Exception):
    """DynamoDB stayed busy or unreachable until the request's deadline. Whatever this request
    wrote is either complete or resumable by a retry with the same idempotency key."""


@dataclass
class TransactionCancelled(Exception):
    """A TransactWriteItems was cancelled by a condition; `reasons` has one code per action
    ("None" where the action was fine) and `items` the item each failed condition saw."""

    reasons: list[str]
    items: list[Item | None]

    def failed(self, index: int) -> bool:
        """Whether action `index`'s condition was false (not: whether it met a conflict)."""
        return self.reasons[index] == "ConditionalCheckFailed"

    @property
    def transient(self) -> bool:
        """Cancelled only by contention or throttling: the same actions may simply be retried."""
        codes = set(self.reasons) - {"None", ""}
        return bool(codes) and codes <= TRANSIENT_REASONS


_deadline: ContextVar[float | None] = ContextVar("livecoins_deadline", default=None)


def start_request(budget: float) -> None:
    """Bound the time every retry in the current request (task and its children) may take."""
    _deadline.set(runtime.current().monotonic() + budget)


async def backoff(attempt: int, deadline: float, reason: str) -> None:
    """Full-jitter exponential wait (10 ms doubling, at most 0.5 s), or Unavailable when the
    wait would pass the deadline."""
    source = runtime.current()
    ceiling = min(0.01 * 2**attempt, 0.5)
    wait = ceiling / 2 + source.randbelow(1000) * ceiling / 2000
    if source.monotonic() + wait > deadline:
        raise Unavailable(reason)
    await source.sleep(wait)


_session: Any = None
_session_lock = threading.Lock()


def new_client(settings: Settings) -> Any:
    """A DynamoDB client on the process's one botocore session (its loaded service model and
    credentials are shared by every client the process makes, as boto3's default session)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        session = _session
    return session.create_client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(
            # Retries are ours (Dynamo._call), bounded by the request's deadline.
            retries={"total_max_attempts": 1},
            connect_timeout=settings.dynamodb_connect_timeout,
            read_timeout=settings.dynamodb_read_timeout,
            max_pool_connections=32,
            parameter_validation=False,
        ),
    )


class Dynamo:
    """The one DynamoDB client of a process and the calls the repositories need."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or new_client(settings)
        # How a call reaches the client; the fault simulator replaces it.
        self.invoke: Invoke = self._in_thread
        # Faults met and absorbed, by kind (logged, and counted by the simulator).
        self.faults: Counter[str] = Counter()

    def table(self, name: str) -> str:
        return self.settings.table(name)

    async def _in_thread(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self.client, operation)
        result: dict[str, Any] = await asyncio.to_thread(method, **kwargs)
        return result

    def deadline(self) -> float:
        """When the current request must stop retrying (monotonic seconds)."""
        deadline = _deadline.get()
        if deadline is None:
            return runtime.current().monotonic() + self.settings.retry_budget_seconds
        return deadline

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call, retried on throttles, 500s, timeouts and dropped connections."""
        deadline, attempt = self.deadline(), 0
        while True:
            try:
                return await self.invoke(operation, kwargs)
            except ClientError as error:
                reason = error.response.get("Error", {}).get("Code", "")
                if reason not in TRANSIENT_CODES:
                    raise
            except (BotoCoreError, OSError) as error:  # timeouts, refused or reset connections
                reason = type(error).__name__
            self.faults[reason] += 1
            await backoff(attempt, deadline, reason)
            attempt += 1

    async def get(
        self, table: str, key: Mapping[str, Any], consistent: bool = False
    ) -> Item | None:
        response = await self._call(
            "get_item", TableName=self.table(table), Key=to_item(key), ConsistentRead=consistent
        )
        item = response.get("Item")
        return from_item(item) if item else None

    async def put_if_absent(
        self, table: str, item: Mapping[str, Any], key_attr: str
    ) -> Item | None:
        """Create the item unless one with its key exists; return the existing item if so."""
        try:
            await self._call(
                "put_item",
                TableName=self.table(table),
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": key_attr},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
            return from_item(old) if old else {}
        return None

    async def put(self, table: str, item: Mapping[str, Any]) -> None:
        await self._call("put_item", TableName=self.table(table), Item=to_item(item))

    async def delete(self, table: str, key: Mapping[str, Any]) -> Item | None:
        """DeleteItem; returns the item that was there, if any."""
        response = await self._call(
            "delete_item", TableName=self.table(table), Key=to_item(key), ReturnValues="ALL_OLD"
        )
        old = response.get("Attributes")
        return from_item(old) if old else None

    async def update(
        self,
        table: str,
        key: Mapping[str, Any],
        expression: str,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        condition: str | None = None,
    ) -> Item | None:
        """UpdateItem returning the new item, or None when the condition failed."""
        kwargs: dict[str, Any] = {
            "TableName": self.table(table),
            "Key": to_item(key),
            "UpdateExpression": expression,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if values:
            kwargs["ExpressionAttributeValues"] = to_item(values)
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            response = await self._call("update_item", **kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return from_item(response["Attributes"])

    async def query(
        self,
        table: str,
        key_condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Any],
        limit: int | None = None,
        forward: bool = True,
        start_key: Mapping[str, Any] | None = None,
        index: str | None = None,
        consistent: bool = False,
    ) -> tuple[list[Item], Item | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table(table),
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": forward,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if limit is not None:
            kwargs["Limit"] = limit
        if start_key:
            kwargs["ExclusiveStartKey"] = to_item(start_key)
        if index:
            kwargs["IndexName"] = index
        elif consistent:
            kwargs["ConsistentRead"] = True
        response = await self._call("query", **kwargs)
        items = [from_item(i) for i in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, (from_item(last) if last else None)

    async def page(
        self,
        table: str,
        *,
        key: tuple[str, str],
        sort: str,
        first: int,
        after: str | None,
        index: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[Item], bool]:
        """One page of a partition in sort-key order after a cursor; and whether more exist.

        The cursor is the last item's sort key (see `cursor`), so a page is one Query whatever
        the page number; `Limit first + 1` tells whether another page exists.
        """
        condition = "#pk = :pk"
        names = {"#pk": key[0]}
        values: dict[str, Any] = {":pk": key[1]}
        if after:
            condition += " AND #sk < :after" if newest_first else " AND #sk > :after"
            names["#sk"] = sort
            values[":after"] = decode_cursor(after, (sort,))[sort]
        items, _ = await self.query(
            table,
            condition,
            names=names,
            values=values,
            limit=first + 1,
            forward=not newest_first,
            index=index,
        )
        return items[:first], len(items) > first

    async def merged_page(
        self,
        table: str,
        *,
        keys: Sequence[tuple[str, str]],
        sort: str,
        first: int,
        after: str | None,
        index: str | None = None,
    ) -> tuple[list[Item], bool]:
        """`page` over several partitions (write shards of one list), read in parallel and
        merged newest first: one Query per partition."""
        if len(keys) == 1:
            return await self.page(
                table, key=keys[0], sort=sort, first=first, after=after, index=index
            )
        pages = await asyncio.gather(
            *(
                self.page(table, key=key, sort=sort, first=first, after=after, index=index)
                for key in keys
            )
        )
        merged = list(heapq.merge(*(p[0] for p in pages), key=lambda i: i[sort], reverse=True))
        return merged[:first], len(merged) > first or any(p[1] for p in pages)

    @staticmethod
    def cursor(item: Item, sort: str) -> str:
        return encode_cursor({sort: item[sort]})

    async def scan(self, table: str, segments: int = 1) -> list[Item]:
        """Every item of a table, read in `segments` parallel segments, page by page, strongly
        consistent. For offline jobs only (`livecoins audit`): no request path scans."""

        async def segment(n: int) -> list[Item]:
            found: list[Item] = []
            start: dict[str, Any] | None = None
            while True:
                kwargs: dict[str, Any] = {"TableName": self.table(table), "ConsistentRead": True}
                if segments > 1:
                    kwargs.update(Segment=n, TotalSegments=segments)
                if start:
                    kwargs["ExclusiveStartKey"] = start
                page = await self._call("scan", **kwargs)
                found += [from_item(i) for i in page.get("Items", [])]
                start = page.get("LastEvaluatedKey")
                if not start:
                    return found

        pages = await asyncio.gather(*(segment(n) for n in range(max(segments, 1))))
        return [item for page in pages for item in page]

    async def batch_get(
        self, table: str, keys: Sequence[Mapping[str, Any]], consistent: bool = False
    ) -> list[Item]:
        """BatchGetItem in chunks of 100, retrying unprocessed keys until the deadline;
        `consistent` for reads a money decision rests on."""
        found: list[Item] = []
        name = self.table(table)
        unique = list({tuple(sorted(k.items())): k for k in keys}.values())
        for start in range(0, len(unique), 100):
            chunk: dict[str, Any] = {"Keys": [to_item(k) for k in unique[start : start + 100]]}
            if consistent:
                chunk["ConsistentRead"] = True
            request: dict[str, Any] = {name: chunk}
            deadline, attempt = self.deadline(), 0
            while request:
                response = await self._call("batch_get_item", RequestItems=request)
                found.extend(from_item(i) for i in response.get("Responses", {}).get(name, []))
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self.faults["UnprocessedKeys"] += 1
                    await backoff(attempt, deadline, "UnprocessedKeys")
                    attempt += 1
        return found

    async def committed(self, fetch: Callable[[], Awaitable[Item | None]], what: str) -> Item:
        """An item a committed transaction wrote, read back (strongly consistent). Reads are
        read-committed, not serializable: another item of the same transaction (the
        idempotency record that names this one) can be visible a moment before it, so a miss
        is read again until the request's deadline (then Unavailable: TRY_AGAIN)."""
        deadline, attempt = self.deadline(), 0
        while True:
            found = await fetch()
            if found is not None:
                return found
            self.faults["not yet visible"] += 1
            await backoff(attempt, deadline, f"{what} not yet visible")
            attempt += 1

    async def transact(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """TransactWriteItems, applied at most once; raises TransactionCancelled when a
        condition failed. Contention and throttling are retried until the deadline."""
        deadline, attempt = self.deadline(), 0
        while True:
            # Reused by _call's retries of an ambiguous failure; new after a cancellation.
            token = f"{runtime.current().randbits(128):032x}"
            try:
                await self._call(
                    "transact_write_items", TransactItems=list(actions), ClientRequestToken=token
                )
                return
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                raw = error.response.get("CancellationReasons") or []
                cancelled = TransactionCancelled(
                    [r.get("Code", "None") for r in raw],
                    [from_item(r["Item"]) if r.get("Item") else None for r in raw],
                )
                if not cancelled.transient:
                    raise cancelled from error
                reason = next(r for r in cancelled.reasons if r in TRANSIENT_REASONS)
            self.faults[reason] += 1
            await backoff(attempt, deadline, reason)
            attempt += 1

    # Builders for transaction actions, so repositories state intent, not wire format.
    def put_action(
        self,
        table: str,
        item: Mapping[str, Any],
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"TableName": self.table(table), "Item": to_item(item)}
        _conditions(body, condition, names, values)
        return {"Put": body}

    def update_action(
        self,
        table: str,
        key: Mapping[str, Any],
        expression: str,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "TableName": self.table(table),
            "Key": to_item(key),
            "UpdateExpression": expression,
        }
        _conditions(body, condition, names, values)
        return {"Update": body}

    def condition_action(
        self,
        table: str,
        key: Mapping[str, Any],
        condition: str,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"TableName": self.table(table), "Key": to_item(key)}
        _conditions(body, condition, names, values)
        return {"ConditionCheck": body}

    def delete_action(
        self,
        table: str,
        key: Mapping[str, Any],
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"TableName": self.table(table), "Key": to_item(key)}
        _conditions(body, condition, names, values)
        return {"Delete": body}


def _conditions(
    body: dict[str, Any],
    condition: str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> None:
    if condition:
        body["ConditionExpression"] = condition
        body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if names:
        body["ExpressionAttributeNames"] = dict(names)
    if values:
        body["ExpressionAttributeValues"] = to_item(values)
