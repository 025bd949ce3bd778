"""The local engine's Query index (handlers/engine_launcher.py, `QueryIndex`): every page a
Limit-ed Query of one partition can ask for is the page ministack's own, unindexed path gives.

ministack's own answer is had by asking the same page through a form the index leaves alone
(an equivalent `ExclusiveStartKey`, or no Limit at all, sliced here), on the same data.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import pytest

from infra.config import Settings
from infra.dynamo import new_client
from infra.tables import ensure_tables

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def ledger(engine: str) -> Iterator[tuple[Any, str]]:
    """A ledger table with partitions of several sizes (sort keys out of order on purpose)."""
    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine, table_prefix="qi-")
    client = new_client(settings)
    ensure_tables(client, settings)
    table = settings.table("ledger")
    rng = random.Random(7)
    for account, size in (("big", 400), ("small", 3), ("one", 1)):
        ids = [f"tx_{n:05d}" for n in range(0, size * 2, 2)]  # even: odd bounds fall between
        rng.shuffle(ids)
        for start in range(0, len(ids), 25):
            client.batch_write_item(
                RequestItems={
                    table: [
                        {
                            "PutRequest": {
                                "Item": {
                                    "accountId": {"S": account},
                                    "entryId": {"S": entry},
                                    "coins": {"N": str(len(entry))},
                                }
                            }
                        }
                        for entry in ids[start : start + 25]
                    ]
                }
            )
    yield client, table


def query(client: Any, table: str, account: str, **kwargs: Any) -> dict[str, Any]:
    condition = "#pk = :pk"
    names, values = {"#pk": "accountId"}, {":pk": {"S": account}}
    if "op" in kwargs:
        condition += f" AND #sk {kwargs.pop('op')} :b"
        names["#sk"], values[":b"] = "entryId", {"S": kwargs.pop("bound")}
    answer: dict[str, Any] = client.query(
        TableName=table,
        KeyConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        **kwargs,
    )
    return answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["entryId"]["S"] for item in answer["Items"]]


CASES = [
    (account, op, bound, limit, forward)
    for account in ("big", "small", "one", "nobody")
    for op, bound in (
        (None, None),
        ("<", "tx_00101"),
        ("<", "tx_00100"),
        ("<=", "tx_00100"),
        (">", "tx_00100"),
        (">=", "tx_00100"),
        ("<", "tx_00000"),
        (">", "tx_99999"),
        ("<=", "tx_00799"),
    )
    for limit in (1, 2, 20, 401)
    for forward in (True, False)
]


def test_every_indexed_page_is_ministacks_own(ledger: tuple[Any, str]) -> None:
    client, table = ledger
    for account, op, bound, limit, forward in CASES:
        case = f"{account} {op} {bound} Limit {limit} forward={forward}"
        condition = {"op": op, "bound": bound} if op else {}
        # GIVEN ministack's whole answer in order (no Limit: the index leaves it alone)
        everything = ids(query(client, table, account, ScanIndexForward=forward, **condition))
        # WHEN the page is asked with a Limit (indexed)
        page = query(client, table, account, ScanIndexForward=forward, Limit=limit, **condition)
        # THEN it is the first `limit` of them, with a LastEvaluatedKey exactly when ministack
        # gives one (it does whenever the page is full)
        assert ids(page) == everything[:limit], case
        assert ("LastEvaluatedKey" in page) == (len(everything) >= limit), case
        assert page["Count"] == page["ScannedCount"] == len(ids(page)), case
        # AND paging on from it with ExclusiveStartKey (not indexed) continues where it stopped
        if "LastEvaluatedKey" in page and len(everything) > limit:
            rest = query(
                client,
                table,
                account,
                ScanIndexForward=forward,
                ExclusiveStartKey=page["LastEvaluatedKey"],
                **condition,
            )
            assert ids(rest) == everything[limit:], case


def test_the_index_follows_writes(ledger: tuple[Any, str]) -> None:
    client, table = ledger

    def newest(n: int) -> list[str]:
        return ids(query(client, table, "big", ScanIndexForward=False, Limit=n))

    assert newest(2) == ["tx_00798", "tx_00796"]
    for entry in ("tx_00999", "tx_00001", "tx_00997"):  # appends, one in the middle
        item = {"accountId": {"S": "big"}, "entryId": {"S": entry}, "coins": {"N": "1"}}
        client.put_item(TableName=table, Item=item)
    assert newest(3) == ["tx_00999", "tx_00997", "tx_00798"]
    page = query(client, table, "big", op="<", bound="tx_00002", Limit=5)
    assert ids(page) == ["tx_00000", "tx_00001"]
    key = {"accountId": {"S": "big"}, "entryId": {"S": "tx_00999"}}
    client.delete_item(TableName=table, Key=key)
    assert newest(2) == ["tx_00997", "tx_00798"]
    client.put_item(
        TableName=table,
        Item={"accountId": {"S": "big"}, "entryId": {"S": "tx_00999"}, "coins": {"N": "2"}},
    )
    assert newest(1) == ["tx_00999"]
    assert query(client, table, "big", ScanIndexForward=False, Limit=1)["Items"][0]["coins"] == {
        "N": "2"
    }


def test_other_queries_keep_ministacks_answers(ledger: tuple[Any, str]) -> None:
    client, table = ledger
    # a key condition the index does not read: ministack's own path, same items
    between = client.query(
        TableName=table,
        KeyConditionExpression="accountId = :pk AND entryId BETWEEN :a AND :b",
        ExpressionAttributeValues={
            ":pk": {"S": "big"},
            ":a": {"S": "tx_00010"},
            ":b": {"S": "tx_00016"},
        },
        Limit=3,
    )
    assert ids(between) == ["tx_00010", "tx_00012", "tx_00014"]
    # an invalid request is ministack's validation error, as before
    with pytest.raises(client.exceptions.ClientError, match="ValidationException"):
        query(client, table, "big", op="<", bound="x", Limit=0)
