"""DynamoDB access: one low-level client, item (de)serialisation, and async wrappers.

boto3 is synchronous; every call runs in a worker thread so the aiohttp server's event loop
(and its WebSocket subscribers) never blocks on the network. Numbers are integers only.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.config import Settings
from infra.ids import decode_cursor, encode_cursor

Item = dict[str, Any]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attr(value: Any) -> dict[str, Any]:
    if isinstance(value, float):
        raise TypeError("floats are not stored; use integers in minor units")
    return _serializer.serialize(value)


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def from_item(item: Mapping[str, Any]) -> Item:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


@dataclass
class TransactionCancelled(Exception):
    """A TransactWriteItems was cancelled; `reasons` has one code per action ("None" if fine)."""

    reasons: list[str]
    items: list[Item | None]

    def failed(self, index: int) -> bool:
        return self.reasons[index] not in ("None", "")

    @property
    def conflict(self) -> bool:
        return "TransactionConflict" in self.reasons


async def backoff(attempt: int) -> None:
    """Jittered exponential wait before retrying a transaction that met a concurrent one."""
    await asyncio.sleep(0.01 * 2**attempt + secrets.randbelow(10) / 1000)


class Dynamo:
    """The one DynamoDB client of a process and the calls the repositories need."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or boto3.client(
            "dynamodb",
            region_name=settings.region,
            endpoint_url=settings.dynamodb_endpoint,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=32,
            ),
        )

    def table(self, name: str) -> str:
        return self.settings.table(name)

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, operation)
        result: dict[str, Any] = await asyncio.to_thread(method, **kwargs)
        return result

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

    async def batch_get(self, table: str, keys: Sequence[Mapping[str, Any]]) -> list[Item]:
        """BatchGetItem in chunks of 100, retrying unprocessed keys."""
        found: list[Item] = []
        name = self.table(table)
        unique = list({tuple(sorted(k.items())): k for k in keys}.values())
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                name: {"Keys": [to_item(k) for k in unique[start : start + 100]]}
            }
            for attempt in range(8):
                response = await self._call("batch_get_item", RequestItems=request)
                found.extend(from_item(i) for i in response.get("Responses", {}).get(name, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise RuntimeError("BatchGetItem left keys unprocessed after retries")
        return found

    async def transact(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """TransactWriteItems; raise TransactionCancelled with per-action reasons."""
        try:
            await self._call("transact_write_items", TransactItems=list(actions))
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raw = error.response.get("CancellationReasons") or []
            reasons = [r.get("Code", "None") for r in raw]
            items = [from_item(r["Item"]) if r.get("Item") else None for r in raw]
            raise TransactionCancelled(reasons, items) from error

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

    def delete_action(self, table: str, key: Mapping[str, Any]) -> dict[str, Any]:
        return {"Delete": {"TableName": self.table(table), "Key": to_item(key)}}


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
