"""MemoryDynamo (tests/sim/store.py), the simulator's in-process DynamoDB, held to ministack.

The differential tests run the same requests on MemoryDynamo and on ministack (the project's
local engine, infra/engine.py) over the project's real tables (template.yaml) and require the
same outcome: returned items, Count/ScannedCount/LastEvaluatedKey, error codes and messages,
CancellationReasons and the items they carry. Hand-written cases cover every expression form and
error the store claims; a seeded random generator drives the repositories' own action builders.
`test_known_differences` pins the few places where ministack departs from DynamoDB and the
store follows DynamoDB. The first tests check the store alone: hooks and the fast paths.

SIM_DIFF_REPORT=1 makes a differential test print every difference instead of stopping at the
first (run with -s).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

from infra.config import TABLES, Settings
from infra.dynamo import Dynamo, from_item
from infra.tables import ensure_tables
from tests.sim import expressions
from tests.sim.store import Fidelity, MemoryDynamo, Staged

ENGINE = Path(__file__).resolve().parent.parent / ".venv-engine" / "bin" / "ministack"
SETTINGS = Settings(table_prefix="sim-")


def S(value: str) -> dict[str, Any]:
    return {"S": value}


def N(value: int | str) -> dict[str, Any]:
    return {"N": str(value)}


# --- the store alone -----------------------------------------------------------------------------


def memory_store() -> MemoryDynamo:
    store = MemoryDynamo()
    ensure_tables(store, SETTINGS)
    return store


def test_listeners_see_every_write_in_plain_form() -> None:
    store = memory_store()
    dynamo = Dynamo(SETTINGS, client=store)
    seen: list[tuple[Any, ...]] = []
    store.listeners.append(lambda *event: seen.append(event))
    accounts = SETTINGS.table("accounts")
    credit = dynamo.update_action("accounts", {"id": "a"}, "ADD coins :c", values={":c": 5})
    store.transact_write_items(TransactItems=[credit])
    store.update_item(
        TableName=accounts,
        Key={"id": S("a")},
        UpdateExpression="SET coins = coins - :c",
        ConditionExpression="coins >= :c",
        ExpressionAttributeValues={":c": N(2)},
    )
    with pytest.raises(ClientError):  # a failed write is not reported
        store.transact_write_items(
            TransactItems=[dynamo.update_action("accounts", {"id": "a"}, "SET x = missing")]
        )
    store.delete_item(TableName=accounts, Key={"id": S("a")})
    store.delete_item(TableName=accounts, Key={"id": S("a")})  # nothing to delete: no event
    assert seen == [
        (accounts, ("a", None), None, {"id": "a", "coins": 5}),
        (accounts, ("a", None), {"id": "a", "coins": 5}, {"id": "a", "coins": 3}),
        (accounts, ("a", None), {"id": "a", "coins": 3}, None),
    ]


def test_items_audits_a_table_in_plain_form() -> None:
    store = memory_store()
    ledger = SETTINGS.table("ledger")
    for i in range(3):
        store.put_item(
            TableName=ledger,
            Item={"accountId": S("a"), "entryId": S(f"e{i}"), "coins": N(i), "tags": {"SS": ["x"]}},
        )
    found = sorted(store.items(ledger), key=lambda i: i["entryId"])
    assert found == [
        {"accountId": "a", "entryId": f"e{i}", "coins": i, "tags": {"x"}} for i in range(3)
    ]
    key = {"accountId": S("a"), "entryId": S("e0")}
    assert found[0] == from_item(store.get_item(TableName=ledger, Key=key)["Item"])


def test_a_cancelled_transaction_changes_nothing() -> None:
    store = memory_store()
    dynamo = Dynamo(SETTINGS, client=store)
    seen: list[Any] = []
    store.listeners.append(lambda *event: seen.append(event))
    store.put_item(TableName=SETTINGS.table("accounts"), Item={"id": S("a"), "coins": N(1)})
    seen.clear()
    actions = [
        dynamo.put_action("videos", {"id": "v", "creatorId": "a"}),
        dynamo.update_action(
            "accounts", {"id": "a"}, "SET coins = coins - :c", "coins >= :c", values={":c": 5}
        ),
    ]
    with pytest.raises(ClientError) as raised:
        store.transact_write_items(TransactItems=actions)
    assert type(raised.value).__name__ == "TransactionCanceledException"
    assert isinstance(raised.value, store.exceptions.TransactionCanceledException)
    assert raised.value.operation_name == "TransactWriteItems"
    assert [r["Code"] for r in raised.value.response["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
    ]
    assert seen == []
    assert list(store.items(SETTINGS.table("videos"))) == []


def test_results_are_copies() -> None:
    store = memory_store()
    accounts = SETTINGS.table("accounts")
    store.put_item(TableName=accounts, Item={"id": S("a"), "m": {"M": {"k": N(1)}}})
    got = store.get_item(TableName=accounts, Key={"id": S("a")})["Item"]
    got["m"]["M"]["k"]["N"] = "999"
    got["id"]["S"] = "zzz"
    assert store.get_item(TableName=accounts, Key={"id": S("a")})["Item"] == {
        "id": S("a"),
        "m": {"M": {"k": N(1)}},
    }


async def test_the_product_runs_on_the_store() -> None:
    """The Lambda handler, resolvers and repositories on MemoryDynamo: purchases, a live
    stream, gifts (one refused for want of coins), and the ledger promise holds."""
    from infra.services import Services
    from resolvers.catalog import seed
    from tests.clients import LambdaClient, claims_for
    from tests.conftest import assert_ledger_promise
    from tests.gifting import go_live, send, top_up

    settings = dataclasses.replace(SETTINGS, catalog_cache_seconds=60)
    store = MemoryDynamo()
    services = Services(settings, Dynamo(settings, client=store))
    ensure_tables(store, settings)
    await seed(services.catalog)
    api = LambdaClient(services)
    stream = await go_live(api, claims_for("star"))
    viewers = [claims_for(f"v{i}") for i in range(3)]
    for viewer in viewers:
        await top_up(api, viewer)
    results = [
        await send(api, viewer, f"g{n}", gift="love-bang", stream=stream)
        for n in range(3)
        for viewer in viewers
    ]
    assert [r["__typename"] for r in results] == ["GiftSent"] * 6 + ["InsufficientCoins"] * 3
    assert store.call_counts["TransactWriteItems"] >= 9
    assert_ledger_promise(services)


class CountingDict(dict[Any, Any]):
    """A table's item dict that counts the items read out of it."""

    reads = 0

    def __getitem__(self, key: Any) -> Any:
        CountingDict.reads += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        CountingDict.reads += 1
        return super().get(key, default)


def test_a_page_reads_only_the_page_of_a_big_partition() -> None:
    store = memory_store()
    rankings, ledger = SETTINGS.table("rankings"), SETTINGS.table("ledger")
    for i in range(50_000):
        store.put_item(TableName=ledger, Item={"accountId": S("big"), "entryId": S(f"e{i:06d}")})
        store.put_item(
            TableName=rankings,
            Item={
                "id": S(f"s#u{i:06d}"),
                "rankKey": S("s"),
                "rankSort": N(i % 1000),
            },
        )
    for name in (ledger, rankings):
        table = store._tables[name]
        table.items = CountingDict(table.items)
        for index in table.index_list:  # an index reads its own copy of the items
            index.items = CountingDict(index.items)
    CountingDict.reads = 0
    page = store.query(
        TableName=ledger,
        KeyConditionExpression="accountId = :a AND entryId < :e",
        ExpressionAttributeValues={":a": S("big"), ":e": S("e030000")},
        ScanIndexForward=False,
        Limit=20,
    )
    assert [i["entryId"]["S"] for i in page["Items"]] == [
        f"e{i:06d}" for i in range(29_999, 29_979, -1)
    ]
    assert CountingDict.reads == 20
    CountingDict.reads = 0
    top = store.query(
        TableName=rankings,
        IndexName="byCoins",
        KeyConditionExpression="rankKey = :k",
        ExpressionAttributeValues={":k": S("s")},
        ScanIndexForward=False,
        Limit=11,
    )
    assert {i["rankSort"]["N"] for i in top["Items"]} == {"999"}
    assert CountingDict.reads == 11
    CountingDict.reads = 0
    after = store.query(
        TableName=rankings,
        IndexName="byCoins",
        KeyConditionExpression="rankKey = :k",
        ExpressionAttributeValues={":k": S("s")},
        ScanIndexForward=False,
        Limit=11,
        ExclusiveStartKey=top["LastEvaluatedKey"],
    )
    assert len(after["Items"]) == 11 and CountingDict.reads == 11


def test_expressions_are_parsed_once() -> None:
    store = memory_store()
    dynamo = Dynamo(SETTINGS, client=store)
    action = dynamo.update_action(
        "accounts",
        {"id": "a"},
        "SET coins = if_not_exists(coins, :z) + :c",
        "attribute_not_exists(frozen)",
        values={":z": 0, ":c": 1},
    )
    store.transact_write_items(TransactItems=[action])
    cached = len(expressions._CACHE)
    built = {id(v) for v in expressions._CACHE.values()}
    for _ in range(20):
        store.transact_write_items(TransactItems=[action])
    assert len(expressions._CACHE) == cached
    assert {id(v) for v in expressions._CACHE.values()} == built
    assert store.get_item(TableName=SETTINGS.table("accounts"), Key={"id": S("a")})["Item"][
        "coins"
    ] == N(21)


def test_error_responses_have_the_fields_botocore_models() -> None:
    """botocore copies an error body's members into the response when its model names them:
    `message` for most DynamoDB errors, not for ValidationException or TransactionCanceled."""
    import botocore.session

    from tests.sim import store as sim

    model = botocore.session.get_session().get_service_model("dynamodb")
    for code in sim._CODES:
        members = model.shape_for(code).members
        assert ("message" in members) == (code in sim._MESSAGE_MEMBER), code


def test_client_request_tokens_expire_with_the_clock() -> None:
    now = [1000.0]
    store = MemoryDynamo(clock=lambda: now[0])
    ensure_tables(store, SETTINGS)
    add = {
        "Update": {
            "TableName": SETTINGS.table("accounts"),
            "Key": {"id": S("a")},
            "UpdateExpression": "ADD coins :one",
            "ExpressionAttributeValues": {":one": N(1)},
        }
    }

    def coins() -> str:
        item = store.get_item(TableName=SETTINGS.table("accounts"), Key={"id": S("a")})["Item"]
        return str(item["coins"]["N"])

    store.transact_write_items(TransactItems=[add], ClientRequestToken="t")
    now[0] += 599
    store.transact_write_items(TransactItems=[add], ClientRequestToken="t")
    assert coins() == "1"
    now[0] += 1
    store.transact_write_items(TransactItems=[add], ClientRequestToken="t")
    assert coins() == "2"


# --- DynamoDB's rules the engine cannot show -----------------------------------------------------
# ministack is one serial engine: every read the latest, indexes updated inside the write,
# transactions applied one at a time (never a conflict), no unprocessed keys, TTL deletion on
# a 60-second sweep. With a Fidelity the store does what DynamoDB's developer guide says
# (../shared/FACTS.md); each test names the rule it holds the store to.


class Clock:
    """A virtual clock the test moves."""

    def __init__(self, now: float = 1_796_169_480.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def dynamodb_store(clock: Clock, seed: int = 0, **bounds: Any) -> MemoryDynamo:
    fidelity = Fidelity(**{"unprocessed": 0.0, **bounds})
    store = MemoryDynamo(clock=clock, fidelity=fidelity, rng=random.Random(seed))
    ensure_tables(store, SETTINGS)
    return store


def coins_of(response: dict[str, Any]) -> int | None:
    return int(response["Item"]["coins"]["N"]) if "Item" in response else None


def test_reads_are_eventually_consistent_unless_consistent_read() -> None:
    """Guide, "Read consistency": GetItem, Query and BatchGetItem are eventually consistent
    unless ConsistentRead is true; such a read "might not reflect the results of a recently
    completed write", and repeated "after a short time" it returns the latest data."""
    clock = Clock()
    store = dynamodb_store(clock, stale_reads=0.5, read_lag=1.0)
    accounts, ledger = SETTINGS.table("accounts"), SETTINGS.table("ledger")
    store.put_item(TableName=accounts, Item={"id": S("a"), "coins": N(1)})
    store.put_item(TableName=ledger, Item={"accountId": S("a"), "entryId": S("old")})
    clock.now += 2.0
    store.put_item(TableName=accounts, Item={"id": S("a"), "coins": N(2)})
    store.put_item(TableName=accounts, Item={"id": S("new"), "coins": N(3)})
    store.delete_item(TableName=ledger, Key={"accountId": S("a"), "entryId": S("old")})
    store.put_item(TableName=ledger, Item={"accountId": S("a"), "entryId": S("young")})
    clock.now += 0.1
    key = {"id": S("a")}
    seen = Counter(coins_of(store.get_item(TableName=accounts, Key=key)) for _ in range(200))
    assert set(seen) == {1, 2}  # the old value from a lagging replica, or the latest
    assert seen[2] > seen[1]  # most reads reach an up-to-date replica
    fresh = Counter(
        coins_of(store.get_item(TableName=accounts, Key={"id": S("new")})) for _ in range(100)
    )
    assert set(fresh) == {None, 3}  # a new item may be absent
    consistent = {
        coins_of(store.get_item(TableName=accounts, Key=key, ConsistentRead=True))
        for _ in range(100)
    }
    assert consistent == {2}
    query = {
        "TableName": ledger,
        "KeyConditionExpression": "accountId = :a",
        "ExpressionAttributeValues": {":a": S("a")},
    }
    views = Counter(
        tuple(i["entryId"]["S"] for i in store.query(**query)["Items"]) for _ in range(200)
    )
    # one replica answers a Query: the partition as it was, or as it is
    assert set(views) == {("old",), ("young",)}  # a deleted item may still be returned
    assert {
        tuple(i["entryId"]["S"] for i in store.query(**query, ConsistentRead=True)["Items"])
        for _ in range(50)
    } == {("young",)}
    batch = Counter(
        tuple(
            sorted(
                int(i["coins"]["N"])
                for i in store.batch_get_item(
                    RequestItems={accounts: {"Keys": [key, {"id": S("new")}]}}
                )["Responses"][accounts]
            )
        )
        for _ in range(200)
    )
    assert {(2, 3), (1,), (2,), (1, 3)} >= set(batch) and len(batch) > 2  # key by key
    clock.now += 1.0  # past the lag bound: every replica has caught up
    assert {coins_of(store.get_item(TableName=accounts, Key=key)) for _ in range(100)} == {2}
    assert {len(store.query(**query)["Items"]) for _ in range(50)} == {1}
    assert store.events["stale read"] > 0


def test_a_global_secondary_index_lags_its_table() -> None:
    """Guide, "Read consistency": reads from a GSI are always eventually consistent (and
    ConsistentRead on one is a ValidationException, held to the engine in
    test_queries_and_paging); a transaction's changes reach GSIs "eventually, after the
    transaction completes". Each base write reaches the index within `index_lag`, in order."""
    clock = Clock()
    store = dynamodb_store(clock, index_lag=1.0)
    transfers = SETTINGS.table("transfers")

    def sent_by(sender: str) -> list[str]:
        page = store.query(
            TableName=transfers,
            IndexName="bySender",
            KeyConditionExpression="senderId = :s",
            ExpressionAttributeValues={":s": S(sender)},
        )
        return [i["id"]["S"] for i in page["Items"]]

    store.put_item(TableName=transfers, Item={"id": S("t1"), "senderId": S("u1"), "coins": N(5)})
    assert sent_by("u1") == []  # not in the index yet
    assert store.get_item(TableName=transfers, Key={"id": S("t1")}, ConsistentRead=True)
    clock.now += 1.0
    assert sent_by("u1") == ["t1"]
    # moved to another sender, then deleted: the index catches up in order, by the bound
    store.put_item(TableName=transfers, Item={"id": S("t1"), "senderId": S("u2"), "coins": N(6)})
    clock.now += 0.01
    store.delete_item(TableName=transfers, Key={"id": S("t1")})
    views = []
    for _ in range(120):
        clock.now += 0.01
        views.append((tuple(sent_by("u1")), tuple(sent_by("u2"))))
    assert views[0] == (("t1",), ())  # the index entry outlives the base item for a while
    assert views[-1] == ((), ())
    order = [v for i, v in enumerate(views) if i == 0 or v != views[i - 1]]
    assert order in (
        [(("t1",), ()), ((), ())],
        [(("t1",), ()), ((), ("t1",)), ((), ())],
    )


def test_a_transaction_holds_its_items_until_it_is_applied() -> None:
    """Guide, "Transaction conflict handling": a PutItem, UpdateItem or DeleteItem on an item
    of an ongoing TransactWriteItems fails with TransactionConflictException; a
    TransactWriteItems or TransactGetItems touching one is cancelled (TransactionCanceled,
    reason TransactionConflict for that action); a concurrent GetItem succeeds. "Error
    handling": a retry with the ClientRequestToken of one in flight gets
    TransactionInProgressException (the SDK's documented exception)."""
    clock = Clock()
    store = dynamodb_store(clock)
    dynamo = Dynamo(SETTINGS, client=store)
    accounts, ledger = SETTINGS.table("accounts"), SETTINGS.table("ledger")
    store.put_item(TableName=accounts, Item={"id": S("a"), "coins": N(10)})
    store.put_item(TableName=accounts, Item={"id": S("poor"), "coins": N(0)})
    heard: list[Any] = []
    store.listeners.append(lambda *event: heard.append(event))
    debit = dynamo.update_action(
        "accounts", {"id": "a"}, "SET coins = coins - :c", "coins >= :c", values={":c": 4}
    )
    entry = dynamo.put_action("ledger", {"accountId": "a", "entryId": "e1", "coins": -4})
    staged = store.begin_transact_write_items(TransactItems=[debit, entry], ClientRequestToken="t1")
    assert isinstance(staged, Staged) and not staged.done
    # decided: committed for the listeners (all of it at once), not yet applied for readers
    assert [event[3] for event in heard] == [
        {"id": "a", "coins": 6},
        {"accountId": "a", "entryId": "e1", "coins": -4},
    ]
    # a GetItem is serialized before it: the last committed value until the commit applies it
    assert (
        coins_of(store.get_item(TableName=accounts, Key={"id": S("a")}, ConsistentRead=True)) == 10
    )
    assert store.committed_item(accounts, {"id": S("a")}) == {"id": S("a"), "coins": N(10)}
    applied: list[Any] = []
    store.on_apply.append(lambda table, key, old, new: applied.append(key))

    def code(call: Callable[[], Any]) -> tuple[str, list[str]]:
        with pytest.raises(ClientError) as raised:
            call()
        response = raised.value.response
        return response["Error"]["Code"], [
            r["Code"] for r in response.get("CancellationReasons", [])
        ]

    poor = dynamo.update_action(
        "accounts", {"id": "poor"}, "SET coins = coins - :c", "coins >= :c", values={":c": 1}
    )
    # another transaction: a conflict at the held item, a failed condition elsewhere (mixed)
    assert code(lambda: store.transact_write_items(TransactItems=[debit, poor])) == (
        "TransactionCanceledException",
        ["TransactionConflict", "ConditionalCheckFailed"],
    )
    assert code(
        lambda: store.update_item(
            TableName=accounts,
            Key={"id": S("a")},
            UpdateExpression="SET coins = :c",
            ExpressionAttributeValues={":c": N(0)},
        )
    ) == ("TransactionConflictException", [])
    assert code(
        lambda: store.delete_item(TableName=ledger, Key={"accountId": S("a"), "entryId": S("e1")})
    ) == (
        "TransactionConflictException",
        [],
    )
    assert code(
        lambda: store.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": accounts, "Key": {"id": S("poor")}}},
                {"Get": {"TableName": accounts, "Key": {"id": S("a")}}},
            ]
        )
    ) == ("TransactionCanceledException", ["None", "TransactionConflict"])
    assert code(
        lambda: store.transact_write_items(TransactItems=[debit, entry], ClientRequestToken="t1")
    ) == ("TransactionInProgressException", [])
    assert code(
        lambda: store.transact_write_items(TransactItems=[entry], ClientRequestToken="t1")
    ) == ("IdempotentParameterMismatchException", [])
    # two plain writes never conflict; nor does a write to an item the transaction lacks
    for _ in range(2):
        store.update_item(
            TableName=accounts,
            Key={"id": S("poor")},
            UpdateExpression="ADD coins :c",
            ExpressionAttributeValues={":c": N(1)},
        )
    applied.clear()
    while not store.commit_step(staged):
        pass
    assert sorted(applied, key=repr) == [("a", "e1"), ("a", None)]  # item by item
    assert (
        coins_of(store.get_item(TableName=accounts, Key={"id": S("a")}, ConsistentRead=True)) == 6
    )
    store.transact_write_items(TransactItems=[debit, entry], ClientRequestToken="t1")  # a replay
    assert (
        coins_of(store.get_item(TableName=accounts, Key={"id": S("a")}, ConsistentRead=True)) == 6
    )
    store.update_item(  # released
        TableName=accounts,
        Key={"id": S("a")},
        UpdateExpression="ADD coins :c",
        ExpressionAttributeValues={":c": N(1)},
    )
    assert store.in_flight() == 0
    assert (
        store.events["TransactionConflict"] == 1
        and store.events["TransactionInProgressException"] == 1
    )


def test_readers_can_see_a_transaction_half_applied() -> None:
    """Guide, "Isolation levels": between a transaction and a Query, Scan or BatchGetItem
    (as a unit) the isolation is read-committed, not serializable: the read may return some
    of a transaction's items new and others old. Every item read is a committed value."""
    partial = 0
    for seed in range(10):
        store = dynamodb_store(Clock(), seed=seed)
        dynamo = Dynamo(SETTINGS, client=store)
        ledger = SETTINGS.table("ledger")
        rows = [
            dynamo.put_action("ledger", {"accountId": "a", "entryId": f"e{i}", "coins": i})
            for i in range(6)
        ]
        staged = store.begin_transact_write_items(TransactItems=rows)
        seen: list[int] = []
        while True:
            query = store.query(
                TableName=ledger,
                KeyConditionExpression="accountId = :a",
                ExpressionAttributeValues={":a": S("a")},
                ConsistentRead=True,
            )
            seen.append(query["Count"])
            if store.commit_step(staged):
                break
        final = store.query(
            TableName=ledger,
            KeyConditionExpression="accountId = :a",
            ExpressionAttributeValues={":a": S("a")},
            ConsistentRead=True,
        )
        assert seen[0] == 0 and final["Count"] == 6
        assert seen == sorted(seen)  # applied item by item, never undone
        partial += any(0 < n < 6 for n in seen)
    assert partial >= 5  # most transactions were seen half applied


def test_unprocessed_keys_come_back_in_the_shape_of_the_request() -> None:
    """API reference, BatchGetItem: a partial result when the answer would pass 16 MB or
    throughput runs short, the rest in UnprocessedKeys, "in the same form as RequestItems"
    (Keys with the table's ProjectionExpression, ExpressionAttributeNames and ConsistentRead);
    BatchWriteItem likewise hands back UnprocessedItems. The product's batch_get retries them."""
    import asyncio

    clock = Clock()
    store = dynamodb_store(clock, unprocessed=1.0)
    accounts = SETTINGS.table("accounts")
    for i in range(5):
        store.put_item(TableName=accounts, Item={"id": S(f"a{i}"), "coins": N(i)})
    clock.now += 2.0  # every replica has them
    request = {
        "Keys": [{"id": S(f"a{i}")} for i in range(5)],
        "ProjectionExpression": "#c, id",
        "ExpressionAttributeNames": {"#c": "coins"},
        "ConsistentRead": True,
    }
    answer = store.batch_get_item(RequestItems={accounts: request})
    left = answer["UnprocessedKeys"][accounts]
    assert {k: v for k, v in left.items() if k != "Keys"} == {
        k: v for k, v in request.items() if k != "Keys"
    }
    got = {i["id"]["S"] for i in answer["Responses"][accounts]}
    assert 1 <= len(left["Keys"]) <= 4 and got | {k["id"]["S"] for k in left["Keys"]} == {
        f"a{i}" for i in range(5)
    }
    assert not got & {k["id"]["S"] for k in left["Keys"]}
    written = store.batch_write_item(
        RequestItems={accounts: [{"PutRequest": {"Item": {"id": S(f"w{i}")}}} for i in range(4)]}
    )
    assert 1 <= len(written["UnprocessedItems"][accounts]) <= 3

    dynamo = Dynamo(SETTINGS, client=store)
    found = asyncio.run(dynamo.batch_get("accounts", [{"id": f"a{i}"} for i in range(5)]))
    assert sorted(i["coins"] for i in found) == [0, 1, 2, 3, 4]
    assert dynamo.faults["UnprocessedKeys"] > 0


def test_a_batch_get_answers_at_most_16_mb() -> None:
    """API reference, BatchGetItem: "A single operation can retrieve up to 16 MB of data";
    past that it returns a partial result and the rest as UnprocessedKeys (ministack returns
    everything)."""
    store = memory_store()
    accounts = SETTINGS.table("accounts")
    for i in range(50):
        store.put_item(TableName=accounts, Item={"id": S(f"big{i}"), "blob": S("x" * 390_000)})
    keys = [{"id": S(f"big{i}")} for i in range(50)]
    answer = store.batch_get_item(RequestItems={accounts: {"Keys": keys}})
    returned = len(answer["Responses"][accounts])
    assert returned == 16 * 1024 * 1024 // 390_010
    assert answer["UnprocessedKeys"] == {accounts: {"Keys": keys[returned:]}}


def test_ttl_deletes_expired_items_some_time_after_they_expire() -> None:
    """Guide, "How it works: TTL": an item whose TTL attribute is a Number of epoch seconds
    older than now (but not five years older) is deleted by a background process, typically
    within 48 hours; until then it "still appears in reads", and an update that moves or
    removes its expiry is honoured. The deletion reaches indexes and the stream like a
    DeleteItem (here: the listeners, with `expiring` set, as a system delete)."""
    clock = Clock()
    store = dynamodb_store(clock, ttl_delay=100.0)
    records = SETTINGS.table("idempotency")
    now = int(clock.now)
    heard: list[tuple[str, bool]] = []
    store.listeners.append(
        lambda table, key, old, new: heard.append((key[0], store.expiring)) if new is None else None
    )
    items = {
        "soon": N(now + 10),
        "moved": N(now + 10),
        "text": S(str(now + 10)),  # not a Number: TTL ignores it
        "ancient": N(now - 6 * 365 * 86_400),  # malformed-looking: five years or more
        "later": N(now + 10_000),
    }
    for name, expires in items.items():
        store.put_item(TableName=records, Item={"key": S(name), "expiresAt": expires})

    def present() -> set[str]:
        return {
            n
            for n in items
            if "Item" in store.get_item(TableName=records, Key={"key": S(n)}, ConsistentRead=True)
        }

    clock.now += 11  # expired, not yet deleted: still readable
    assert present() == set(items)
    store.update_item(
        TableName=records,
        Key={"key": S("moved")},
        UpdateExpression="SET expiresAt = :x",
        ExpressionAttributeValues={":x": N(now + 5_000)},
    )
    clock.now += 100
    assert present() == set(items) - {"soon"}
    assert heard == [("soon", True)]
    clock.now += 5_100
    assert present() == {"text", "ancient", "later"}
    assert store.events["TTL deletion"] == 2


def test_a_transaction_holds_at_most_4_mb_of_items() -> None:
    """Guide, "TransactWriteItems API": "The aggregate size of the items in the transaction
    cannot exceed 4 MB" (held to the engine in test_transaction_limits)."""
    store = memory_store()
    big = [
        {
            "Put": {
                "TableName": SETTINGS.table("accounts"),
                "Item": {"id": S(f"b{i}"), "x": S("y" * 390_000)},
            }
        }
        for i in range(11)
    ]
    with pytest.raises(ClientError) as raised:
        store.transact_write_items(TransactItems=big)
    assert raised.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "Transaction request exceeds the 4MB transaction size limit",
    }
    store.transact_write_items(TransactItems=big[:10])


# --- against ministack -----------------------------------------------------------------------


def normalize(value: Any) -> Any:
    """Sets in a fixed order (DynamoDB returns set members in no particular order)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, members),) = value.items()
            if kind in ("SS", "NS", "BS") and isinstance(members, list):
                return {kind: sorted(members)}
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def outcome(client: Any, op: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        response = getattr(client, op)(**copy.deepcopy(kwargs))
    except ParamValidationError as error:  # the client's own checks, before sending
        return "ParamValidationError", str(error)
    except ClientError as error:
        body = {k: v for k, v in error.response.items() if k != "ResponseMetadata"}
        assert error.operation_name == _OPERATIONS[op]
        return str(error.response["Error"]["Code"]), normalize(body)
    response.pop("ResponseMetadata", None)
    if op == "batch_get_item":
        for found in response["Responses"].values():
            found.sort(key=repr)
    return "ok", normalize(response)


_OPERATIONS = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_get_item": "BatchGetItem",
    "transact_write_items": "TransactWriteItems",
    "batch_write_item": "BatchWriteItem",
    "transact_get_items": "TransactGetItems",
}


def _without_messages(result: tuple[str, Any]) -> tuple[str, Any]:
    code, body = result
    if code in ("ok", "ParamValidationError"):
        return result
    body = copy.deepcopy(body)
    body["Error"].pop("Message", None)
    body.pop("message", None)
    for reason in body.get("CancellationReasons", ()):
        if reason["Code"] != "ConditionalCheckFailed":
            reason.pop("Message", None)
    return code, body


class Pair:
    """The same requests on ministack and on MemoryDynamo."""

    compared = 0  # operations compared in this session

    def __init__(self, real: Any, memory: MemoryDynamo, settings: Settings) -> None:
        self.real = real
        self.memory = memory
        self.settings = settings
        self.dynamo = Dynamo(settings, client=memory)  # for the repositories' action builders

    def t(self, name: str) -> str:
        return self.settings.table(name)

    def both(self, op: str, **kwargs: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
        Pair.compared += 1
        return outcome(self.real, op, kwargs), outcome(self.memory, op, kwargs)

    def same(self, op: str, expect: str | None = None, messages: bool = True, **kwargs: Any) -> Any:
        """Run on both; require equal outcomes (and `expect`: "ok" or an error code)."""
        real, memory = self.both(op, **kwargs)
        if not messages:
            real, memory = _without_messages(real), _without_messages(memory)
        if memory != real and os.environ.get("SIM_DIFF_REPORT"):
            print(f"\nDIFF {op} {str(kwargs)[:300]}\n  ministack {real}\n  memory    {memory}")
            return memory[1]
        assert memory == real, f"{op} {kwargs}"
        if expect is not None:
            assert real[0] == expect, f"{op} {kwargs}: {real}"
        return memory[1]

    def pages(self, op: str, expect_pages: int | None = None, **kwargs: Any) -> list[Any]:
        """Follow LastEvaluatedKey to the end, comparing every page."""
        items: list[Any] = []
        pages = 0
        while True:
            page = self.same(op, "ok", **kwargs)
            pages += 1
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if expect_pages is not None:
            assert pages == expect_pages
        return items

    def same_tables(self) -> None:
        """Every table holds the same items on both; `items()` agrees with Scan."""
        for name in (self.t(t) for t in TABLES):
            real = [
                i
                for p in self.real.get_paginator("scan").paginate(TableName=name)
                for i in p["Items"]
            ]
            memory = [
                i
                for p in self.memory.get_paginator("scan").paginate(TableName=name)
                for i in p["Items"]
            ]
            assert sorted(map(repr, normalize(memory))) == sorted(map(repr, normalize(real))), name
            keys = sorted(self.memory._tables[name].key_names)
            audited = {tuple(i[k] for k in keys): i for i in self.memory.items(name)}
            assert audited == {tuple(from_item(i)[k] for k in keys): from_item(i) for i in memory}


_prefixes = itertools.count()


@pytest.fixture
def pair(engine: str) -> Pair:
    settings = dataclasses.replace(
        Settings(), dynamodb_endpoint=engine, table_prefix=f"diff{next(_prefixes)}-"
    )
    real = boto3.client(
        "dynamodb",
        endpoint_url=engine,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    memory = MemoryDynamo()
    ensure_tables(real, settings)
    ensure_tables(memory, settings)
    return Pair(real, memory, settings)


engine_test = pytest.mark.engine


# Every attribute type, for conditions to look at.
EVERYTHING = {
    "id": S("c"),
    "n": N(5),
    "neg": N("-2.5"),
    "s": S("hello"),
    "b": {"B": b"\x01\x02\x03"},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "l": {"L": [N(1), S("x"), {"L": [N(2)]}]},
    "m": {"M": {"k": N(1), "deep": {"M": {"q": S("v")}}}},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"x"]},
    "blank": S(""),
}


@engine_test
def test_items_round_trip_with_canonical_numbers(pair: Pair) -> None:
    accounts = pair.t("accounts")
    pair.same("put_item", "ok", TableName=accounts, Item=EVERYTHING)
    pair.same("get_item", "ok", TableName=accounts, Key={"id": S("c")}, ConsistentRead=True)
    numbers = {
        "id": S("nums"),
        "a": N("007"),
        "b": N("1.50"),
        "c": N("-0"),
        "d": N("1e2"),
        "e": {"NS": ["3", "1.0", "02"]},
        "f": {"L": [N("0.10")]},
        "g": N("-12.3400"),
    }
    pair.same("put_item", "ok", TableName=accounts, Item=numbers, ReturnValues="ALL_OLD")
    pair.same("put_item", "ok", TableName=accounts, Item=numbers, ReturnValues="ALL_OLD")
    pair.same("get_item", "ok", TableName=accounts, Key={"id": S("nums")})
    pair.same("get_item", "ok", TableName=accounts, Key={"id": S("none")})
    pair.same(
        "delete_item", "ok", TableName=accounts, Key={"id": S("nums")}, ReturnValues="ALL_OLD"
    )
    pair.same(
        "delete_item", "ok", TableName=accounts, Key={"id": S("nums")}, ReturnValues="ALL_OLD"
    )
    pair.same_tables()


CONDITIONS: list[tuple[str, dict[str, Any], dict[str, str] | None]] = [
    ("n = :v", {":v": N(5)}, None),
    ("n = :v", {":v": N("5.0")}, None),
    ("n = :v", {":v": S("5")}, None),
    ("n <> :v", {":v": N(5)}, None),
    ("n <> :v", {":v": S("5")}, None),
    ("absent <> :v", {":v": N(5)}, None),
    ("absent = :v", {":v": N(5)}, None),
    ("n < :v", {":v": N(6)}, None),
    ("n < :v", {":v": N(5)}, None),
    ("n <= :v", {":v": N(5)}, None),
    ("n > :v", {":v": N("4.99")}, None),
    ("n >= :v", {":v": N(6)}, None),
    ("neg < :v", {":v": N(-2)}, None),
    ("s < :v", {":v": S("help")}, None),
    ("s > :v", {":v": S("hello")}, None),
    ("b < :v", {":v": {"B": b"\x01\x03"}}, None),
    ("n < :v", {":v": S("6")}, None),
    ("absent < :v", {":v": N(6)}, None),
    ("l < :v", {":v": N(6)}, None),
    ("n BETWEEN :lo AND :hi", {":lo": N(5), ":hi": N(9)}, None),
    ("n BETWEEN :lo AND :hi", {":lo": N(6), ":hi": N(9)}, None),
    ("s between :lo and :hi", {":lo": S("a"), ":hi": S("z")}, None),
    ("n BETWEEN :lo AND :hi", {":lo": S("a"), ":hi": S("z")}, None),
    ("n IN (:a, :b)", {":a": N(4), ":b": N(5)}, None),
    ("s IN (:a, :b)", {":a": N(4), ":b": N(5)}, None),
    ("m IN (:a)", {":a": {"M": {"deep": {"M": {"q": S("v")}}, "k": N(1)}}}, None),
    ("attribute_exists(n) AND attribute_not_exists(absent)", {}, None),
    ("NOT attribute_exists(n)", {}, None),
    ("attribute_exists(absent) OR attribute_exists(t)", {}, None),
    ("attribute_not_exists(z)", {}, None),
    ("(n = :five OR s = :five) AND NOT (t = :f)", {":five": N(5), ":f": {"BOOL": False}}, None),
    ("n = :five OR s = :five AND t = :f", {":five": N(5), ":f": {"BOOL": False}}, None),
    ("NOT n = :five", {":five": N(5)}, None),
    ("attribute_type(n, :t)", {":t": S("N")}, None),
    ("attribute_type(ss, :t)", {":t": S("SS")}, None),
    ("attribute_type(s, :t)", {":t": S("N")}, None),
    ("attribute_type(absent, :t)", {":t": S("N")}, None),
    ("begins_with(s, :p)", {":p": S("he")}, None),
    ("begins_with(s, :p)", {":p": S("lo")}, None),
    ("begins_with(b, :p)", {":p": {"B": b"\x01"}}, None),
    ("contains(s, :p)", {":p": S("ell")}, None),
    ("contains(s, :p)", {":p": S("xyz")}, None),
    ("contains(ss, :p)", {":p": S("a")}, None),
    ("contains(ns, :p)", {":p": N(2)}, None),
    ("contains(ns, :p)", {":p": S("2")}, None),
    ("contains(l, :p)", {":p": S("x")}, None),
    ("contains(l, :p)", {":p": {"L": [N(2)]}}, None),
    ("contains(absent, :p)", {":p": S("x")}, None),
    ("size(s) = :v", {":v": N(5)}, None),
    ("size(l) > :v", {":v": N(2)}, None),
    ("size(m) = :v", {":v": N(2)}, None),
    ("size(ss) < :v", {":v": N(3)}, None),
    ("size(b) = :v", {":v": N(3)}, None),
    ("size(n) = :v", {":v": N(1)}, None),
    ("size(absent) = :v", {":v": N(0)}, None),
    ("m.k = :v", {":v": N(1)}, None),
    ("m.deep.q = :v", {":v": S("v")}, None),
    ("l[1] = :v", {":v": S("x")}, None),
    ("l[2][0] = :v", {":v": N(2)}, None),
    ("l[9] = :v", {":v": N(2)}, None),
    ("attribute_exists(m.deep.q) AND attribute_not_exists(m.nope)", {}, None),
    ("#m.#k = :v", {":v": N(1)}, {"#m": "m", "#k": "k"}),
    ("#s = :v", {":v": S("hello")}, {"#s": "s"}),
    ("t = :v", {":v": {"BOOL": True}}, None),
    ("z = :v", {":v": {"NULL": True}}, None),
    ("blank = :v", {":v": S("")}, None),
    ("ss = :v", {":v": {"SS": ["b", "a"]}}, None),
    ("l = :v", {":v": {"L": [N(1), S("x"), {"L": [N(2)]}]}}, None),
    ("(attribute_exists(n))", {}, None),
]


@engine_test
def test_condition_expressions(pair: Pair) -> None:
    accounts = pair.t("accounts")
    pair.same("put_item", "ok", TableName=accounts, Item=EVERYTHING)
    for condition, values, names in CONDITIONS:
        for on_failure in ("ALL_OLD", "NONE"):
            kwargs: dict[str, Any] = {
                "TableName": accounts,
                "Item": EVERYTHING,
                "ConditionExpression": condition,
                "ReturnValuesOnConditionCheckFailure": on_failure,
            }
            if values:
                kwargs["ExpressionAttributeValues"] = values
            if names:
                kwargs["ExpressionAttributeNames"] = names
            pair.same("put_item", **kwargs)
    # the same conditions on an item that does not exist, and on updates and deletes
    for condition, values, names in CONDITIONS[:12]:
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        if values:
            extra_values: dict[str, Any] = {"ExpressionAttributeValues": values}
        else:
            extra_values = {}
        pair.same(
            "update_item",
            TableName=accounts,
            Key={"id": S("ghost")},
            UpdateExpression="SET touched = :yes",
            ConditionExpression=condition,
            ExpressionAttributeValues={**values, ":yes": N(1)},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **extra,
        )
        pair.same(
            "delete_item",
            TableName=accounts,
            Key={"id": S("c")},
            ConditionExpression=condition,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ReturnValues="ALL_OLD",
            **extra_values,
            **extra,
        )
        pair.same("put_item", TableName=accounts, Item=EVERYTHING)
    pair.same_tables()


INVALID_CONDITIONS: list[tuple[str, dict[str, Any] | None, dict[str, str] | None]] = [
    ("begins_with(s, :p)", {":p": N(1)}, None),
    ("n BETWEEN :lo AND :hi", {":lo": N(9), ":hi": N(1)}, None),
    ("n = = :v", {":v": N(1)}, None),
    ("n = :v AND", {":v": N(1)}, None),
    ("status = :v", {":v": N(1)}, None),
    ("n = :v", {":v": N(1), ":unused": N(2)}, None),
    ("n = :undefined", {":v": N(1)}, None),
    ("n = :v", None, None),
    ("#undefined = :v", {":v": N(1)}, None),
    ("n = :v", {":v": N(1)}, {"#unused": "n"}),
    ("", {":v": N(1)}, None),
    ("n = :v", {}, None),
    ("contains(s, s)", None, None),
    ("size(n)", None, None),
    ("n = :v", {":v": N("abc")}, None),
]


@engine_test
def test_invalid_conditions(pair: Pair) -> None:
    accounts = pair.t("accounts")
    pair.same("put_item", "ok", TableName=accounts, Item=EVERYTHING)
    for condition, values, names in INVALID_CONDITIONS:
        kwargs: dict[str, Any] = {
            "TableName": accounts,
            "Item": EVERYTHING,
            "ConditionExpression": condition,
        }
        if values is not None:
            kwargs["ExpressionAttributeValues"] = values
        if names is not None:
            kwargs["ExpressionAttributeNames"] = names
        pair.same("put_item", "ValidationException", messages=False, **kwargs)


UPDATES: list[tuple[str, dict[str, Any] | None, dict[str, str] | None, str]] = [
    ("SET coins = if_not_exists(coins, :zero) + :c", {":zero": N(0), ":c": N(7)}, None, "ALL_NEW"),
    ("SET coins = coins - :c", {":c": N(2)}, None, "ALL_NEW"),
    ("SET a = :one, b = :two", {":one": N(1), ":two": N("2.5")}, None, "UPDATED_NEW"),
    ("SET c = a", None, None, "ALL_NEW"),
    ("SET d = :ten - a", {":ten": N(10)}, None, "UPDATED_NEW"),
    ("SET e = a + b", None, None, "ALL_OLD"),
    ("set f = :one", {":one": N(1)}, None, "NONE"),
    ("SET l = :list", {":list": {"L": [N(1)]}}, None, "ALL_NEW"),
    ("SET l = list_append(l, :more)", {":more": {"L": [S("x")]}}, None, "ALL_NEW"),
    ("SET l = list_append(:more, l)", {":more": {"L": [S("y")]}}, None, "UPDATED_NEW"),
    (
        "SET l2 = list_append(if_not_exists(l2, :empty), :more)",
        {":empty": {"L": []}, ":more": {"L": [N(3)]}},
        None,
        "ALL_NEW",
    ),
    ("REMOVE b, c", None, None, "ALL_NEW"),
    ("REMOVE nada", None, None, "UPDATED_NEW"),
    ("SET d = :ten", {":ten": N(11)}, None, "UPDATED_OLD"),
    ("ADD a :one", {":one": N(1)}, None, "UPDATED_NEW"),
    ("ADD tally :one", {":one": N(-4)}, None, "ALL_NEW"),
    ("ADD tags :t", {":t": {"SS": ["x", "y"]}}, None, "ALL_NEW"),
    ("ADD tags :t", {":t": {"SS": ["y", "z"]}}, None, "UPDATED_NEW"),
    ("ADD nums :t", {":t": {"NS": ["1", "2"]}}, None, "ALL_NEW"),
    ("DELETE tags :t", {":t": {"SS": ["x", "q"]}}, None, "ALL_NEW"),
    ("DELETE nums :t", {":t": {"NS": ["1", "2"]}}, None, "ALL_NEW"),
    ("DELETE nada :t", {":t": {"SS": ["x"]}}, None, "ALL_NEW"),
    (
        "SET g = :one REMOVE d ADD h :one DELETE tags :t",
        {":one": N(1), ":t": {"SS": ["y"]}},
        None,
        "ALL_NEW",
    ),
    ("REMOVE e SET #s = :s", {":s": S("LIVE")}, {"#s": "status"}, "ALL_NEW"),
    ("SET m = :m", {":m": {"M": {"k": N(1), "deep": {"M": {}}}}}, None, "ALL_NEW"),
    ("SET m.k = :two, m.deep.x = :two", {":two": N(2)}, None, "UPDATED_NEW"),
    ("SET l[0] = :two", {":two": N(2)}, None, "ALL_NEW"),
    ("SET l[10] = :two", {":two": N(3)}, None, "ALL_NEW"),
    ("REMOVE m.k, l[1]", None, None, "ALL_NEW"),
    ("SET big = :n", {":n": N("1234567890123456789012345")}, None, "ALL_NEW"),
    ("SET big = big + :n", {":n": N("0.5")}, None, "ALL_NEW"),
    ("SET #k = :v", {":v": S("x")}, {"#k": "key"}, "ALL_NEW"),
]

INVALID_UPDATES: list[tuple[str, dict[str, Any] | None, dict[str, str] | None]] = [
    ("SET q = absent + :one", {":one": N(1)}, None),
    ("SET q = absent", None, None),
    ("SET q = list_append(absent, :l)", {":l": {"L": []}}, None),
    ("ADD #s :one", {":one": N(1)}, {"#s": "status"}),
    ("ADD coins :s", {":s": S("x")}, None),
    ("ADD tags :l", {":l": {"L": [S("x")]}}, None),
    ("DELETE coins :t", {":t": {"SS": ["x"]}}, None),
    ("DELETE tags :s", {":s": S("x")}, None),
    ("SET id = :v", {":v": S("other")}, None),
    ("REMOVE id", None, None),
    ("SET m.nope.deeper = :v", {":v": N(1)}, None),
    ("SET status = :v", {":v": N(1)}, None),
    ("SET a = nosuch(:v)", {":v": N(1)}, None),
    ("SET a = :undefined", {":v": N(1)}, None),
    ("SET a = :v", {":v": N(1), ":w": N(2)}, None),
    ("", {":v": N(1)}, None),
    ("HELLO a = :v", {":v": N(1)}, None),
]


@engine_test
def test_update_expressions(pair: Pair) -> None:
    accounts = pair.t("accounts")
    for key in ("u1", "u2"):
        for text, values, names, returns in UPDATES:
            kwargs: dict[str, Any] = {
                "TableName": accounts,
                "Key": {"id": S(key)},
                "UpdateExpression": text,
                "ReturnValues": returns,
            }
            if values:
                kwargs["ExpressionAttributeValues"] = values
            if names:
                kwargs["ExpressionAttributeNames"] = names
            pair.same("update_item", "ok", **kwargs)
        pair.same("get_item", "ok", TableName=accounts, Key={"id": S(key)})
    for text, values, names in INVALID_UPDATES:
        kwargs = {"TableName": accounts, "Key": {"id": S("u1")}, "UpdateExpression": text}
        if values is not None:
            kwargs["ExpressionAttributeValues"] = values
        if names is not None:
            kwargs["ExpressionAttributeNames"] = names
        pair.same("update_item", "ValidationException", messages=False, **kwargs)
    # UpdateItem without an UpdateExpression creates the bare item
    pair.same(
        "update_item", "ok", TableName=accounts, Key={"id": S("bare")}, ReturnValues="ALL_NEW"
    )
    pair.same_tables()


@engine_test
def test_errors(pair: Pair) -> None:
    accounts, ledger, withdrawals = pair.t("accounts"), pair.t("ledger"), pair.t("withdrawals")
    rankings = pair.t("rankings")
    nowhere = pair.t("accounts") + "-absent"
    unknown_table: list[tuple[str, dict[str, Any]]] = [
        ("get_item", {"TableName": nowhere, "Key": {"id": S("a")}}),
        ("put_item", {"TableName": nowhere, "Item": {"id": S("a")}}),
        (
            "update_item",
            {"TableName": nowhere, "Key": {"id": S("a")}, "UpdateExpression": "REMOVE a"},
        ),
        ("delete_item", {"TableName": nowhere, "Key": {"id": S("a")}}),
        (
            "query",
            {
                "TableName": nowhere,
                "KeyConditionExpression": "id = :a",
                "ExpressionAttributeValues": {":a": S("a")},
            },
        ),
        ("scan", {"TableName": nowhere}),
        ("batch_get_item", {"RequestItems": {nowhere: {"Keys": [{"id": S("a")}]}}}),
        (
            "transact_write_items",
            {"TransactItems": [{"Put": {"TableName": nowhere, "Item": {"id": S("a")}}}]},
        ),
    ]
    for op, kwargs in unknown_table:
        pair.same(op, "ResourceNotFoundException", **kwargs)
    invalid: list[tuple[str, dict[str, Any]]] = [
        ("get_item", {"TableName": accounts, "Key": {"id": S("")}}),
        ("put_item", {"TableName": accounts, "Item": {"id": S("")}}),
        (
            "update_item",
            {"TableName": accounts, "Key": {"id": S("")}, "UpdateExpression": "REMOVE a"},
        ),
        ("delete_item", {"TableName": ledger, "Key": {"accountId": S("a"), "entryId": S("")}}),
        ("put_item", {"TableName": accounts, "Item": {"id": S("x" * 2049)}}),
        ("get_item", {"TableName": accounts, "Key": {"id": S("x" * 2049)}}),
        (
            "put_item",
            {"TableName": ledger, "Item": {"accountId": S("a"), "entryId": S("y" * 1025)}},
        ),
        ("put_item", {"TableName": accounts, "Item": {"id": S("big"), "blob": S("x" * 409_600)}}),
        ("put_item", {"TableName": accounts, "Item": {"coins": N(1)}}),
        ("put_item", {"TableName": ledger, "Item": {"accountId": S("a")}}),
        ("get_item", {"TableName": ledger, "Key": {"accountId": S("a")}}),
        ("get_item", {"TableName": accounts, "Key": {"id": S("a"), "extra": S("b")}}),
        ("put_item", {"TableName": accounts, "Item": {"id": N(1)}}),
        ("get_item", {"TableName": accounts, "Key": {"id": N(1)}}),
        ("delete_item", {"TableName": accounts, "Key": {"id": {"B": b"x"}}}),
        (
            "put_item",
            {
                "TableName": rankings,
                "Item": {
                    "id": S("s#u"),
                    "rankKey": S("s"),
                    "rankSort": S("many"),
                },
            },
        ),
        ("put_item", {"TableName": withdrawals, "Item": {"id": S("w"), "accountId": S("")}}),
    ]
    loose: list[tuple[str, dict[str, Any]]] = [  # same codes; the messages differ in wording
        ("put_item", {"TableName": accounts, "Item": {"id": S("a"), "n": N("1e200")}}),
        ("put_item", {"TableName": accounts, "Item": {"id": S("a"), "n": {"NULL": False}}}),
        ("put_item", {"TableName": accounts, "Item": {"id": S("a"), "s": {"SS": ["x", "x"]}}}),
        ("put_item", {"TableName": accounts, "Item": {"id": S("a")}, "ReturnValues": "ALL_NEW"}),
        (
            "update_item",
            {
                "TableName": withdrawals,
                "Key": {"id": S("w")},
                "UpdateExpression": "SET accountId = :e",
                "ExpressionAttributeValues": {":e": S("")},
            },
        ),
        (
            "update_item",
            {
                "TableName": rankings,
                "Key": {"id": S("s#u")},
                "UpdateExpression": "SET rankSort = :e",
                "ExpressionAttributeValues": {":e": S("x")},
            },
        ),
        (
            "batch_get_item",
            {"RequestItems": {accounts: {"Keys": [{"id": S("a")}, {"id": S("a")}]}}},
        ),
        (
            "batch_get_item",
            {"RequestItems": {accounts: {"Keys": [{"id": S(f"k{i}")} for i in range(101)]}}},
        ),
    ]
    for op, kwargs in invalid:
        pair.same(op, "ValidationException", **kwargs)
    for op, kwargs in loose:
        pair.same(op, "ValidationException", messages=False, **kwargs)
    pair.same_tables()


@engine_test
def test_transactions(pair: Pair) -> None:
    accounts, ledger = pair.t("accounts"), pair.t("ledger")
    dynamo = pair.dynamo
    pair.same(
        "put_item",
        "ok",
        TableName=accounts,
        Item={"id": S("rich"), "coins": N(100), "diamonds": N(0)},
    )
    pair.same(
        "put_item",
        "ok",
        TableName=accounts,
        Item={"id": S("poor"), "coins": N(1), "diamonds": N(0)},
    )
    debit = dynamo.update_action(
        "accounts", {"id": "poor"}, "SET coins = coins - :c", "coins >= :c", values={":c": 5}
    )
    quiet = dict(debit["Update"])
    del quiet["ReturnValuesOnConditionCheckFailure"]
    check = {
        "ConditionCheck": {
            "TableName": accounts,
            "Key": {"id": S("rich")},
            "ConditionExpression": "coins > :c",
            "ExpressionAttributeValues": {":c": N(1000)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    entry = dynamo.put_action(
        "ledger",
        {"accountId": "rich", "entryId": "e1", "coins": 5},
        condition="attribute_not_exists(entryId)",
    )
    cases: list[tuple[str, list[dict[str, Any]]]] = [
        (
            "ok",
            [
                entry,
                dynamo.update_action(
                    "accounts",
                    {"id": "rich"},
                    "SET coins = coins - :c",
                    "coins >= :c",
                    values={":c": 5},
                ),
            ],
        ),
        ("TransactionCanceledException", [entry]),  # the entry exists now
        (
            "TransactionCanceledException",
            [
                dynamo.put_action("ledger", {"accountId": "rich", "entryId": "e2"}),
                debit,
                check,
                dynamo.update_action(
                    "accounts",
                    {"id": "ghost"},
                    "SET coins = coins - :c",
                    "coins >= :c",
                    values={":c": 1},
                ),
            ],
        ),
        (
            "TransactionCanceledException",
            [{"Update": quiet}, dynamo.delete_action("accounts", {"id": "rich"})],
        ),
        (
            "TransactionCanceledException",
            [  # an update that fails to evaluate: ValidationError
                dynamo.update_action(
                    "accounts", {"id": "rich"}, "SET x = nope + :c", values={":c": 1}
                ),
                dynamo.put_action("ledger", {"accountId": "rich", "entryId": "e3"}),
            ],
        ),
        (
            "TransactionCanceledException",
            [  # a failed condition wins over the update's error
                dynamo.update_action(
                    "accounts",
                    {"id": "rich"},
                    "SET x = nope + :c",
                    "attribute_not_exists(id)",
                    values={":c": 1},
                ),
            ],
        ),
        (
            "TransactionCanceledException",
            [  # a wrong key type cancels; conditions are not read
                {"Put": {"TableName": accounts, "Item": {"id": N(1)}}},
                debit,
            ],
        ),
        (
            "TransactionCanceledException",
            [
                {"Delete": {"TableName": accounts, "Key": {"id": N(1)}}},
                dynamo.put_action("ledger", {"accountId": "x", "entryId": "y"}),
            ],
        ),
        (
            "ValidationException",
            [debit, dynamo.update_action("accounts", {"id": "poor"}, "REMOVE x")],
        ),
        ("ValidationException", [dynamo.put_action("accounts", {"id": "poor"}), debit]),
        (
            "ValidationException",
            [
                dynamo.put_action("ledger", {"accountId": f"a{i}", "entryId": "e"})
                for i in range(101)
            ],
        ),
        ("ParamValidationError", []),
        ("ValidationException", [{"Put": {"TableName": accounts, "Item": {"id": S("")}}}]),
        (
            "ValidationException",
            [
                dynamo.update_action(
                    "accounts", {"id": "x"}, "SET a = :s", values={":s": 1, ":t": 2}
                )
            ],
        ),
        (
            "ValidationException",
            [{"Put": {"TableName": accounts, "Item": {"id": S("a"), "x": S("y" * 409_600)}}}],
        ),
        (
            "ok",
            [
                dynamo.put_action("ledger", {"accountId": f"a{i}", "entryId": "e"})
                for i in range(100)
            ],
        ),
        (
            "ok",
            [
                check
                | {
                    "ConditionCheck": {
                        **check["ConditionCheck"],
                        "ConditionExpression": "coins < :c",
                    }
                },
                dynamo.delete_action("accounts", {"id": "poor"}),
                dynamo.delete_action("accounts", {"id": "nobody"}),
            ],
        ),
    ]
    for expect, actions in cases:
        pair.same(
            "transact_write_items",
            expect,
            messages=expect != "ValidationException",
            TransactItems=actions,
        )
        pair.same("get_item", "ok", TableName=accounts, Key={"id": S("rich")})
    pair.same(
        "query",
        "ok",
        TableName=ledger,
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": S("rich")},
    )
    pair.same_tables()


@engine_test
def test_client_request_token(pair: Pair) -> None:
    accounts = pair.t("accounts")
    add = pair.dynamo.update_action("accounts", {"id": "a"}, "ADD coins :one", values={":one": 1})
    other = pair.dynamo.update_action("accounts", {"id": "b"}, "ADD coins :one", values={":one": 1})
    pair.same(
        "transact_write_items",
        "ok",
        TransactItems=[add],
        ClientRequestToken=pair.t("accounts") + "-1",
    )
    pair.same(
        "transact_write_items",
        "ok",
        TransactItems=[add],
        ClientRequestToken=pair.t("accounts") + "-1",
    )
    pair.same("get_item", "ok", TableName=accounts, Key={"id": S("a")})
    pair.same(
        "transact_write_items",
        "IdempotentParameterMismatchException",
        TransactItems=[other],
        ClientRequestToken=pair.t("accounts") + "-1",
    )
    pair.same(
        "transact_write_items",
        "ok",
        TransactItems=[add],
        ClientRequestToken=pair.t("accounts") + "-2",
    )
    pair.same("transact_write_items", "ok", TransactItems=[add])
    pair.same(
        "transact_write_items",
        "ValidationException",
        messages=False,
        TransactItems=[add],
        ClientRequestToken="t" * 37,
    )
    pair.same("get_item", "ok", TableName=accounts, Key={"id": S("a")})
    pair.same_tables()


@engine_test
def test_queries_and_paging(pair: Pair) -> None:
    ledger, rankings, streams = pair.t("ledger"), pair.t("rankings"), pair.t("streams")
    withdrawals = pair.t("withdrawals")
    for i in range(23):
        pair.same(
            "put_item",
            "ok",
            TableName=ledger,
            Item={"accountId": S("acct"), "entryId": S(f"e{i:02d}"), "coins": N(i % 4)},
        )
    pair.same(
        "put_item", "ok", TableName=ledger, Item={"accountId": S("other"), "entryId": S("e05")}
    )
    values = {":a": S("acct")}
    ranges: list[tuple[str, dict[str, Any]]] = [
        ("", {}),
        (" AND entryId = :e", {":e": S("e07")}),
        (" AND entryId < :e", {":e": S("e07")}),
        (" AND entryId <= :e", {":e": S("e07")}),
        (" AND entryId > :e", {":e": S("e07")}),
        (" AND entryId >= :e", {":e": S("e07")}),
        (" AND entryId BETWEEN :e AND :f", {":e": S("e03"), ":f": S("e1")}),
        (" AND begins_with(entryId, :e)", {":e": S("e1")}),
        (" AND begins_with(entryId, :e)", {":e": S("f")}),
    ]
    for condition, extra in ranges:
        for forward in (True, False):
            for limit in (None, 1, 4, 23):
                kwargs: dict[str, Any] = {
                    "TableName": ledger,
                    "KeyConditionExpression": "accountId = :a" + condition,
                    "ExpressionAttributeValues": {**values, **extra},
                    "ScanIndexForward": forward,
                }
                if limit:
                    kwargs["Limit"] = limit
                pair.pages("query", **kwargs)
    # names, a filter (Count vs ScannedCount), projections, Select=COUNT
    pair.pages(
        "query",
        TableName=ledger,
        KeyConditionExpression="#p = :a AND #s > :e",
        ExpressionAttributeNames={"#p": "accountId", "#s": "entryId"},
        ExpressionAttributeValues={":a": S("acct"), ":e": S("e04")},
        Limit=5,
    )
    pair.pages(
        "query",
        TableName=ledger,
        KeyConditionExpression="accountId = :a",
        FilterExpression="coins = :c",
        ExpressionAttributeValues={":a": S("acct"), ":c": N(1)},
        Limit=6,
    )
    pair.same(
        "query",
        "ok",
        TableName=ledger,
        KeyConditionExpression="accountId = :a",
        ProjectionExpression="entryId, coins",
        ExpressionAttributeValues={":a": S("acct")},
        Limit=3,
    )
    pair.same(
        "query",
        "ok",
        TableName=ledger,
        KeyConditionExpression="accountId = :a",
        Select="COUNT",
        ExpressionAttributeValues={":a": S("acct")},
    )
    pair.same(
        "query",
        "ok",
        TableName=ledger,
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": S("nobody")},
    )

    # a table with a hash key only: a query finds one item or none
    accounts = pair.t("accounts")
    pair.same("put_item", "ok", TableName=accounts, Item={"id": S("solo"), "coins": N(1)})
    for limit in (None, 1):
        pair.pages(
            "query",
            TableName=accounts,
            KeyConditionExpression="id = :a",
            ExpressionAttributeValues={":a": S("solo")},
            **({"Limit": limit} if limit else {}),
        )

    # a KEYS_ONLY index with ties on its range key, read both ways in small pages
    for i in range(13):
        pair.same(
            "update_item",
            "ok",
            TableName=rankings,
            Key={"id": S(f"s1#u{i:02d}")},
            UpdateExpression=(
                "SET rankSort = if_not_exists(rankSort, :z) + :c, rankKey = :r, note = :n"
            ),
            ExpressionAttributeValues={":z": N(0), ":c": N(i % 3), ":r": S("s1"), ":n": S("x")},
        )
    pair.same(
        "put_item",
        "ok",
        TableName=rankings,
        Item={"id": S("s1#unranked"), "rankSort": N(9)},
    )
    for forward in (True, False):
        for limit in (1, 2, 5, 13, 14):
            pair.pages(
                "query",
                TableName=rankings,
                IndexName="byCoins",
                KeyConditionExpression="rankKey = :k",
                ExpressionAttributeValues={":k": S("s1")},
                ScanIndexForward=forward,
                Limit=limit,
            )
        pair.pages(
            "query",
            TableName=rankings,
            IndexName="byCoins",
            KeyConditionExpression="rankKey = :k AND rankSort = :c",
            ExpressionAttributeValues={":k": S("s1"), ":c": N(1)},
            ScanIndexForward=forward,
            Limit=2,
        )
        pair.pages(
            "query",
            TableName=rankings,
            IndexName="byCoins",
            KeyConditionExpression="rankKey = :k AND rankSort BETWEEN :a AND :b",
            ExpressionAttributeValues={":k": S("s1"), ":a": N(1), ":b": N(2)},
            ScanIndexForward=forward,
            Limit=3,
        )
        pair.pages(
            "query",
            TableName=rankings,
            IndexName="byCoins",
            KeyConditionExpression="rankKey = :k AND rankSort > :c",
            ExpressionAttributeValues={":k": S("s1"), ":c": N(0)},
            ScanIndexForward=forward,
        )

    pair.same(
        "query",
        "ok",
        TableName=rankings,
        IndexName="byCoins",
        Select="COUNT",
        KeyConditionExpression="rankKey = :k",
        ExpressionAttributeValues={":k": S("s1")},
    )

    # sparse indexes: only items with the index keys are in them
    for i in range(6):
        live = {"liveIndex": S("LIVE"), "liveSort": S(f"2026-01-0{i}#st{i}")} if i % 2 else {}
        pair.same("put_item", "ok", TableName=streams, Item={"id": S(f"st{i}"), **live})
    live_page: dict[str, Any] = {
        "TableName": streams,
        "IndexName": "live",
        "KeyConditionExpression": "liveIndex = :l",
        "ExpressionAttributeValues": {":l": S("LIVE")},
        "ScanIndexForward": False,
        "Limit": 2,
    }
    pair.pages("query", **live_page)
    pair.same(
        "update_item",
        "ok",
        TableName=streams,
        Key={"id": S("st3")},
        UpdateExpression="REMOVE liveIndex, liveSort",
    )
    pair.pages("query", **live_page)
    for i in range(7):
        item = {"id": S(f"wdr_{i}"), "accountId": S(f"acc{i % 2}"), "cents": N(i)}
        if i % 3:
            item |= {"pendingIndex": S("PENDING"), "pendingSort": S(f"2026#{6 - i}")}
        pair.same("put_item", "ok", TableName=withdrawals, Item=item)
    pair.same(
        "put_item", "ok", TableName=withdrawals, Item={"id": S("daily#acc0#2026"), "cents": N(5)}
    )
    for forward in (True, False):
        pair.pages(
            "query",
            TableName=withdrawals,
            IndexName="byAccount",
            KeyConditionExpression="accountId = :a AND id > :w",
            ExpressionAttributeValues={":a": S("acc0"), ":w": S("wdr_0")},
            ScanIndexForward=forward,
            Limit=1,
        )
        pair.pages(
            "query",
            TableName=withdrawals,
            IndexName="pending",
            KeyConditionExpression="pendingIndex = :p",
            ExpressionAttributeValues={":p": S("PENDING")},
            ScanIndexForward=forward,
            Limit=2,
        )

    bad: list[dict[str, Any]] = [
        {
            "TableName": ledger,
            "IndexName": "nope",
            "KeyConditionExpression": "accountId = :a",
            "ExpressionAttributeValues": values,
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "entryId = :a",
            "ExpressionAttributeValues": values,
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a AND coins = :a",
            "ExpressionAttributeValues": values,
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a",
            "ExpressionAttributeValues": {":a": N(1)},
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a AND entryId BETWEEN :z AND :b",
            "ExpressionAttributeValues": {**values, ":z": S("z"), ":b": S("b")},
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a",
            "ExpressionAttributeValues": {**values, ":x": S("x")},
        },
        {
            "TableName": rankings,
            "IndexName": "byCoins",
            "KeyConditionExpression": "rankKey = :k",
            "ExpressionAttributeValues": {":k": S("s1")},
            "ConsistentRead": True,
        },
        {
            "TableName": rankings,
            "IndexName": "byCoins",
            "KeyConditionExpression": "rankKey = :k AND begins_with(rankSort, :c)",
            "ExpressionAttributeValues": {":k": S("s1"), ":c": S("1")},
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a",
            "ExpressionAttributeValues": values,
            "ExclusiveStartKey": {"accountId": S("acct")},
        },
        {
            "TableName": ledger,
            "KeyConditionExpression": "accountId = :a",
            "ExpressionAttributeValues": {":a": S("")},
        },
    ]
    for kwargs in bad:
        pair.same("query", "ValidationException", messages=False, **kwargs)
    pair.same(
        "query",
        "ParamValidationError",
        TableName=ledger,
        Limit=0,
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues=values,
    )


@engine_test
def test_scan_and_batch_get(pair: Pair) -> None:
    accounts, ledger = pair.t("accounts"), pair.t("ledger")
    for i in range(9):
        pair.same("put_item", "ok", TableName=accounts, Item={"id": S(f"a{i}"), "coins": N(i)})
        pair.same(
            "put_item",
            "ok",
            TableName=ledger,
            Item={"accountId": S(f"a{i % 3}"), "entryId": S(f"e{i}"), "coins": N(i)},
        )
    for table in (accounts, ledger):
        for limit in (None, 1, 4, 9):
            pair.pages("scan", TableName=table, **({"Limit": limit} if limit else {}))
        pair.pages(
            "scan",
            TableName=table,
            FilterExpression="coins > :c",
            ExpressionAttributeValues={":c": N(4)},
            Limit=3,
        )
    pair.same("scan", "ok", TableName=accounts, Select="COUNT")
    pair.same(
        "batch_get_item",
        "ok",
        RequestItems={
            accounts: {
                "Keys": [{"id": S("a1")}, {"id": S("nobody")}, {"id": S("a8")}],
                "ConsistentRead": True,
            },
            ledger: {
                "Keys": [
                    {"accountId": S("a0"), "entryId": S("e0")},
                    {"accountId": S("a0"), "entryId": S("e1")},
                ]
            },
        },
    )
    pair.same(
        "batch_get_item",
        "ok",
        RequestItems={
            accounts: {
                "Keys": [{"id": S("a2")}],
                "ProjectionExpression": "#c",
                "ExpressionAttributeNames": {"#c": "coins"},
            }
        },
    )
    pair.same(
        "batch_write_item",
        "ok",
        RequestItems={
            accounts: [
                {"PutRequest": {"Item": {"id": S("w1"), "coins": N(1)}}},
                {"DeleteRequest": {"Key": {"id": S("a1")}}},
                {"DeleteRequest": {"Key": {"id": S("nobody")}}},
            ],
            ledger: [{"PutRequest": {"Item": {"accountId": S("w1"), "entryId": S("e")}}}],
        },
    )
    pair.same(
        "transact_get_items",
        "ok",
        TransactItems=[
            {"Get": {"TableName": accounts, "Key": {"id": S("w1")}}},
            {"Get": {"TableName": accounts, "Key": {"id": S("a1")}}},
            {
                "Get": {
                    "TableName": ledger,
                    "Key": {"accountId": S("a0"), "entryId": S("e3")},
                    "ProjectionExpression": "coins",
                }
            },
        ],
    )
    for projection, names in [
        ("coins, id", None),
        ("#c", {"#c": "coins"}),
        ("m.k, l[1], l[5], absent", None),
        ("m.deep.q, m.k", None),
    ]:
        kwargs: dict[str, Any] = {"ProjectionExpression": projection}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        pair.same("put_item", "ok", TableName=accounts, Item={**EVERYTHING, "id": S("p")})
        pair.same("get_item", "ok", TableName=accounts, Key={"id": S("p")}, **kwargs)
    pair.same_tables()
    pair.same(
        "batch_get_item",
        "ValidationException",
        RequestItems={accounts: {"Keys": [{"id": S("a1")}, {"id": S("a1")}]}},
    )


@engine_test
def test_transaction_limits(pair: Pair) -> None:
    """100 actions and 4 MB of items per transaction (the guide; ministack enforces both)."""
    accounts = pair.t("accounts")
    puts = [
        {"Put": {"TableName": accounts, "Item": {"id": S(f"b{i}"), "x": S("y" * 390_000)}}}
        for i in range(11)
    ]
    pair.same("transact_write_items", "ValidationException", TransactItems=puts)
    pair.same("transact_write_items", "ok", TransactItems=puts[:10])
    pair.same(
        "transact_write_items",
        "ValidationException",
        messages=False,
        TransactItems=[
            pair.dynamo.put_action("ledger", {"accountId": f"a{i}", "entryId": "e"})
            for i in range(101)
        ],
    )
    pair.same_tables()


@engine_test
def test_ttl_settings_and_expired_items(pair: Pair) -> None:
    """The tables' TTL attributes as the engine reports them, and an item past its expiry is
    still read until TTL deletes it (the guide; ministack sweeps once a minute)."""
    for name in TABLES:
        pair.same("describe_time_to_live", "ok", TableName=pair.t(name))
    records = pair.t("idempotency")
    an_hour_ago = int(time.time()) - 3600
    expired = {"key": S("k"), "expiresAt": N(an_hour_ago), "status": S("COMPLETED")}
    pair.same("put_item", "ok", TableName=records, Item=expired)
    pair.same("get_item", "ok", TableName=records, Key={"key": S("k")}, ConsistentRead=True)


# Where ministack departs from DynamoDB, the store follows DynamoDB: (request, ministack's
# outcome, the store's outcome, the source for DynamoDB's behaviour). "Alternator" is the
# ScyllaDB Alternator test suite (test/alternator), which its authors run against DynamoDB.
KNOWN_DIFFERENCES: list[tuple[str, dict[str, Any], str, str, str]] = [
    (
        "put_item",
        {"Item": {"id": S("a"), "n": N(1)}, "ConditionExpression": "x = y"},
        "ok",
        "ConditionalCheckFailedException",
        "two absent attributes are not equal: Alternator test_update_condition_eq_two_unset",
    ),
    (
        "put_item",
        {
            "Item": {"id": S("a"), "n": N(1)},
            "ConditionExpression": "begins_with(n, :p)",
            "ExpressionAttributeValues": {":p": S("1")},
        },
        "ValidationException",
        "ConditionalCheckFailedException",
        "an item attribute of the wrong type fails the condition: Alternator "
        "test_update_condition_begins_with",
    ),
    (
        "put_item",
        {
            "Item": {"id": S("a"), "n": N(1)},
            "ConditionExpression": "n < :v",
            "ExpressionAttributeValues": {":v": {"L": [N(1)]}},
        },
        "ConditionalCheckFailedException",
        "ValidationException",
        "a :value no comparison can use is an error: Alternator test_update_condition_lt",
    ),
    (
        "put_item",
        {
            "Item": {"id": S("a"), "n": N(1)},
            "ConditionExpression": "attribute_type(n, :t)",
            "ExpressionAttributeValues": {":t": S("DOG")},
        },
        "ConditionalCheckFailedException",
        "ValidationException",
        "Alternator test_update_condition_attribute_type_unknown",
    ),
    (
        "put_item",
        {"Item": {"id": S("a"), "n": N(1)}, "ConditionExpression": "nosuch(n)"},
        "ConditionalCheckFailedException",
        "ValidationException",
        '"Invalid function name": Alternator test_update_expression_unknown_function',
    ),
    (
        "put_item",
        {
            "Item": {"id": S("a"), "n": N(1)},
            "ConditionExpression": "n = :v",
            "ExpressionAttributeValues": {":v": {"SS": []}},
        },
        "ConditionalCheckFailedException",
        "ValidationException",
        "an empty set is not a value: Alternator test_update_expression_delete_sets",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :v REMOVE n",
            "ExpressionAttributeValues": {":v": N(2)},
        },
        "ok",
        "ValidationException",
        '"Two document paths overlap": Alternator test_update_expression_multi_overlap',
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :v, n = :w",
            "ExpressionAttributeValues": {":v": N(2), ":w": N(3)},
        },
        "ok",
        "ValidationException",
        "Alternator test_update_expression_multi_overlap",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :v SET o = :v",
            "ExpressionAttributeValues": {":v": N(2)},
        },
        "ok",
        "ValidationException",
        "one SET section: Alternator test_update_expression_multi",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :v + :v + :v",
            "ExpressionAttributeValues": {":v": N(2)},
        },
        "ok",
        "ValidationException",
        "Alternator test_update_expression_plus_basic",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :s + :v",
            "ExpressionAttributeValues": {":v": N(2), ":s": S("x")},
        },
        "ok",
        "ValidationException",
        "Alternator test_update_expression_plus_basic",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = s + :v",
            "ExpressionAttributeValues": {":v": N(2)},
        },
        "ok",
        "ValidationException",
        "adding a string attribute (s = 'x' here) is a type error",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET n = :a + :b",
            "ExpressionAttributeValues": {":a": N("1e50"), ":b": N(1)},
        },
        "ok",
        "ValidationException",
        "no rounding to 38 digits: Alternator test_update_expression_plus_imprecise",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET m = :a + :b",
            "ExpressionAttributeValues": {":a": N(10**37), ":b": N(1)},
            "ReturnValues": "UPDATED_NEW",
        },
        "ok",
        "ok",
        "38 exact digits (ministack rounds to 28): Alternator test_number.py",
    ),
    (
        "update_item",
        {
            "Key": {"id": S("a")},
            "UpdateExpression": "SET fresh = :v",
            "ExpressionAttributeValues": {":v": N(2)},
            "ReturnValues": "UPDATED_OLD",
        },
        "ok",
        "ok",
        "no Attributes when nothing existed: Alternator test_update_item_returnvalues_updated_old",
    ),
    (
        "update_item",
        {"Key": {"id": S("ghost")}, "UpdateExpression": "REMOVE x", "ReturnValues": "ALL_NEW"},
        "ok",
        "ok",
        "an update that only removes creates no item: Alternator "
        "test_update_item_returnvalues_all_new, scylladb issue 5862",
    ),
    (
        "transact_write_items",
        {"TransactItems": [{"Put": {"Item": {"coins": N(1)}}}]},
        "ok",
        "ValidationException",
        "every write needs the whole key",
    ),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {
                    "Update": {
                        "Key": {},
                        "UpdateExpression": "SET a = :a",
                        "ExpressionAttributeValues": {":a": N(1)},
                    }
                }
            ]
        },
        "ok",
        "ValidationException",
        "every write needs the whole key",
    ),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {
                    "Update": {
                        "Key": {"id": S("a")},
                        "UpdateExpression": "SET status = :s",
                        "ExpressionAttributeValues": {":s": N(1)},
                    }
                }
            ]
        },
        "TransactionCanceledException",
        "ValidationException",
        "an invalid expression rejects the request before it runs, as in UpdateItem",
    ),
    (
        "query",
        {
            "TableName": "ledger",
            "KeyConditionExpression": "accountId = :a OR entryId = :a",
            "ExpressionAttributeValues": {":a": S("a")},
        },
        "ok",
        "ValidationException",
        "a key condition is a conjunction (DynamoDB Query API reference)",
    ),
]


@engine_test
def test_known_differences(pair: Pair) -> None:
    accounts = pair.t("accounts")
    for op, kwargs, real_code, memory_code, source in KNOWN_DIFFERENCES:
        pair.both("put_item", TableName=accounts, Item={"id": S("a"), "n": N(1), "s": S("x")})
        request = copy.deepcopy(kwargs)
        for member in request.get("TransactItems", [request]):
            for body in member.values() if "TransactItems" in request else [member]:
                body["TableName"] = pair.t(body.get("TableName", "accounts"))
        real, memory = pair.both(op, **request)
        assert (real[0], memory[0]) == (real_code, memory_code), (source, real, memory)
        assert real != memory, source
    real, memory = pair.both("get_item", TableName=accounts, Key={"id": S("ghost")})
    assert "Item" in real[1] and "Item" not in memory[1]


# --- random traffic through the repositories' own builders --------------------------------------

ACCOUNTS = ["a0", "a1", "a2", "a3"]
STREAMS = {"st0": "a0", "st1": "a1"}  # stream -> creator
VIDEOS = ["v0", "v1"]
EVENTS = ["ev0", "ev1"]
DAYS = ["2026-01-01", "2026-01-02"]


class Traffic:
    """Random requests over a small key space, built the way the product builds them."""

    def __init__(self, rng: random.Random, pair: Pair) -> None:
        from infra.accounts import AccountsRepo
        from infra.earnings import EarningsRepo
        from infra.events import EventsRepo
        from infra.idempotency import IdempotencyRepo
        from infra.ledger import LedgerRepo
        from infra.purchases import PurchasesRepo
        from infra.rankings import RankingsRepo
        from infra.streams import StreamsRepo
        from infra.transfers import TransfersRepo
        from infra.videos import VideosRepo
        from infra.withdrawals import WithdrawalsRepo

        self.rng = rng
        self.pair = pair
        d = self.dynamo = pair.dynamo
        self.accounts, self.ledger, self.earnings = AccountsRepo(d), LedgerRepo(d), EarningsRepo(d)
        self.idempotency, self.purchases = IdempotencyRepo(d), PurchasesRepo(d)
        self.streams, self.videos, self.transfers = StreamsRepo(d), VideosRepo(d), TransfersRepo(d)
        self.rankings, self.events, self.withdrawals = (
            RankingsRepo(d),
            EventsRepo(d),
            WithdrawalsRepo(d),
        )
        self.tokens: list[tuple[str, list[dict[str, Any]]]] = []
        self.builders: list[Callable[[], list[dict[str, Any]]]] = [
            self.credit,
            self.credit,
            self.debit,
            self.debit,
            self.add_diamonds,
            self.hold,
            self.release,
            self.take,
            self.start_stream,
            self.end_stream,
            self.gift_stream,
            self.gift_stream,
            self.create_video,
            self.gift_video,
            self.earn,
            self.spend_earnings,
            self.ledger_entry,
            self.ledger_entry,
            self.completed,
            self.complete,
            self.withdraw,
            self.reserve,
            self.release_daily,
            self.settle,
            self.rank,
            self.transfer,
            self.join,
            self.create_event,
            self.purchase,
            self.purchase_status,
            self.drop_lock,
        ]

    # values
    def acc(self) -> str:
        return self.rng.choice(ACCOUNTS)

    def coins(self, most: int = 40) -> int:
        return self.rng.randint(0, most)

    def stamp(self) -> str:
        r = self.rng
        return f"2026-01-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:00:00.000+00:00"

    def stream(self) -> dict[str, Any]:
        stream_id = self.rng.choice(list(STREAMS))
        return {
            "id": stream_id,
            "creatorId": STREAMS[stream_id],
            "title": "t",
            "status": "LIVE",
            "startedAt": self.stamp(),
            "shards": 2,
        }

    # transaction actions, as the resolvers build them
    def credit(self) -> list[dict[str, Any]]:
        r = self.rng
        return [
            self.accounts.credit_action(
                self.acc(),
                self.coins(60),
                self.coins(30),
                f"name-{r.randint(0, 2)}",
                r.choice([None, "2000-01-01"]),
                r.choice([None, None, 2]),
            )
        ]

    def debit(self) -> list[dict[str, Any]]:
        return [self.accounts.debit_action(self.acc(), self.coins(), self.coins(20))]

    def add_diamonds(self) -> list[dict[str, Any]]:
        return [self.accounts.add_diamonds_action(self.acc(), self.coins(10))]

    def hold(self) -> list[dict[str, Any]]:
        return [self.accounts.hold_coins_action(self.acc(), self.coins(20))]

    def release(self) -> list[dict[str, Any]]:
        return [self.accounts.release_held_action(self.acc(), self.coins(20))]

    def take(self) -> list[dict[str, Any]]:
        return [self.accounts.take_held_action(self.acc(), self.coins(20))]

    def start_stream(self) -> list[dict[str, Any]]:
        stream = self.stream()
        return self.streams.start_actions(stream) + self.streams.shard_puts(stream)

    def end_stream(self) -> list[dict[str, Any]]:
        stream = self.stream()
        return self.streams.end_actions(stream, self.stamp(), "end") + self.streams.shard_closes(
            stream
        )

    def gift_stream(self) -> list[dict[str, Any]]:
        return [
            self.streams.gift_action(
                self.rng.choice(list(STREAMS)), self.rng.randint(0, 1), self.coins()
            )
        ]

    def create_video(self) -> list[dict[str, Any]]:
        video = {
            "id": self.rng.choice(VIDEOS),
            "creatorId": self.acc(),
            "shards": 2,
            "creatorAdult": self.rng.choice([True, False]),
            "title": "v",
        }
        return [self.videos.create_action(video)]

    def gift_video(self) -> list[dict[str, Any]]:
        return [
            self.videos.gift_action(self.rng.choice(VIDEOS), self.rng.randint(0, 1), self.coins())
        ]

    def earn(self) -> list[dict[str, Any]]:
        return [self.earnings.credit_action(self.acc(), self.rng.randint(0, 1), self.coins())]

    def spend_earnings(self) -> list[dict[str, Any]]:
        return [self.earnings.debit_action(self.acc(), self.rng.randint(0, 1), self.coins())]

    def ledger_entry(self) -> list[dict[str, Any]]:
        r = self.rng
        return [
            self.ledger.put_action(
                entry_id=f"e{r.randint(0, 40):03d}",
                account_id=self.acc(),
                kind=r.choice(["GIFT_SENT", "PURCHASE", "GIFT_RECEIVED"]),
                coins=self.coins() - 20,
                diamonds=self.coins(),
                reference_id=f"ref{r.randint(0, 9)}",
                created_at=self.stamp(),
                shard=r.choice([0, 0, 1]),
            )
        ]

    def record_key(self) -> str:
        return f"{self.acc()}#sendGift#k{self.rng.randint(0, 4)}"

    def completed(self) -> list[dict[str, Any]]:
        return [
            self.idempotency.completed_action(
                self.record_key(),
                self.rng.choice(["h1", "h2"]),
                {"transferId": f"gft_{self.rng.randint(0, 9)}"},
            )
        ]

    def complete(self) -> list[dict[str, Any]]:
        return [self.idempotency.complete_action(self.record_key(), self.rng.choice(["h1", "h2"]))]

    def withdraw(self) -> list[dict[str, Any]]:
        amount = self.coins(500)
        return [
            self.withdrawals.create_action(
                {
                    "id": f"wdr_{self.rng.randint(0, 9)}",
                    "accountId": self.acc(),
                    "diamonds": amount,
                    "amount": amount // 2,
                    "currency": "USD",
                    "status": "PENDING",
                    "createdAt": self.stamp(),
                    "day": self.rng.choice(DAYS),
                }
            )
        ]

    def reserve(self) -> list[dict[str, Any]]:
        return [
            self.withdrawals.reserve_daily_action(
                self.acc(), self.rng.choice(DAYS), self.coins(60), 100
            )
        ]

    def release_daily(self) -> list[dict[str, Any]]:
        return [
            self.withdrawals.release_daily_action(self.acc(), self.rng.choice(DAYS), self.coins(60))
        ]

    def settle(self) -> list[dict[str, Any]]:
        return [
            self.withdrawals.settle_action(
                f"wdr_{self.rng.randint(0, 9)}", self.rng.choice(["PAID", "REJECTED"]), self.stamp()
            )
        ]

    def rank(self) -> list[dict[str, Any]]:
        return [
            self.rankings.add_action(
                self.rng.choice(list(STREAMS)),
                self.acc(),
                self.coins(5),
                self.rng.choice([1, 1, 2]),
            )
        ]

    def transfer(self) -> list[dict[str, Any]]:
        stream_id = self.rng.choice(list(STREAMS))
        return [
            self.transfers.put_action(
                {
                    "id": f"gft_{self.rng.randint(0, 30):03d}",
                    "targetId": self.transfers.index_key(
                        stream_id, self.rng.randint(0, 1), self.rng.choice([1, 2])
                    ),
                    "streamId": stream_id,
                    "senderId": self.acc(),
                    "coins": self.coins(),
                    "createdAt": self.stamp(),
                }
            )
        ]

    def join(self) -> list[dict[str, Any]]:
        return self.events.join_actions(self.rng.choice(EVENTS), self.acc(), self.stamp())

    def create_event(self) -> list[dict[str, Any]]:
        event = {"id": self.rng.choice(EVENTS), "hostId": self.acc(), "price": self.coins(9)}
        return [self.dynamo.put_action("events", event, condition="attribute_not_exists(id)")]

    def purchase(self) -> list[dict[str, Any]]:
        return [
            self.purchases.put_action(
                {
                    "id": f"pur_{self.rng.randint(0, 5)}",
                    "accountId": self.acc(),
                    "coins": self.coins(),
                    "status": "COMPLETED",
                    "createdAt": self.stamp(),
                }
            )
        ]

    def purchase_status(self) -> list[dict[str, Any]]:
        """The money-back convergence's conditional steps on a purchase (step and gen)."""
        before = {
            "id": f"pur_{self.rng.randint(0, 5)}",
            "step": self.rng.randint(0, 2),
            "gen": self.rng.randint(0, 2),
            "status": self.rng.choice(["COMPLETED", "REFUNDING", "REFUNDED"]),
            "takenBack": self.rng.choice([0, 5]),
            "held": self.rng.choice([0, 3]),
        }
        choice = self.rng.randrange(3)
        if choice == 0:
            return [self.purchases.step_action(before, {"takenBack": self.rng.randint(0, 9)})]
        if choice == 1:
            return [self.purchases.hold_action(before, self.rng.randint(0, 9), "root")]
        return [self.purchases.release_action(before)]

    def drop_lock(self) -> list[dict[str, Any]]:
        return [self.dynamo.delete_action("streams", {"id": f"live#{self.acc()}"})]

    # whole requests
    def transaction(self) -> tuple[str, dict[str, Any]]:
        r = self.rng
        if self.tokens and r.random() < 0.1:  # replay a request with its token, or misuse the token
            token, sent = r.choice(self.tokens)
            if r.random() < 0.3:
                sent = sent + self.credit()
            return "transact_write_items", {"TransactItems": sent, "ClientRequestToken": token}
        actions: list[dict[str, Any]] = []
        targets: set[str] = set()
        for _ in range(r.randint(1, 4)):
            for action in r.choice(self.builders)():
                body = next(iter(action.values()))
                target = repr((body["TableName"], body.get("Key") or body["Item"].get("id")))
                if target in targets and r.random() < 0.95:
                    continue
                targets.add(target)
                actions.append(action)
        request: dict[str, Any] = {"TransactItems": actions}
        if r.random() < 0.1:
            # tokens are account-wide: unique to this test's engine tables
            token = f"{self.pair.settings.table_prefix}token-{r.randint(0, 5)}"
            request["ClientRequestToken"] = token
            self.tokens.append((token, actions))
        return "transact_write_items", request

    def key(self) -> tuple[str, dict[str, Any]]:
        """A random (logical table, key) that may or may not exist."""
        r = self.rng
        acc, st = self.acc(), r.choice(list(STREAMS))
        table, key = r.choice(
            [
                ("accounts", {"id": acc}),
                ("streams", {"id": st}),
                ("streams", {"id": f"{st}#0{r.randint(0, 1)}"}),
                ("streams", {"id": f"live#{acc}"}),
                ("videos", {"id": f"{r.choice(VIDEOS)}#0{r.randint(0, 1)}"}),
                ("earnings", {"id": f"{acc}#0{r.randint(0, 1)}"}),
                ("idempotency", {"key": self.record_key()}),
                ("withdrawals", {"id": f"daily#{acc}#{r.choice(DAYS)}"}),
                ("withdrawals", {"id": f"wdr_{r.randint(0, 9)}"}),
                ("rankings", {"id": f"{st}#{acc}"}),
                ("events", {"id": r.choice(EVENTS)}),
                ("purchases", {"id": f"pur_{r.randint(0, 5)}"}),
                ("ledger", {"accountId": acc, "entryId": f"e{r.randint(0, 40):03d}"}),
            ]
        )
        return table, key

    def single(self) -> tuple[str, dict[str, Any]]:
        from infra.dynamo import to_item

        r = self.rng
        table, key = self.key()
        name = self.pair.t(table)
        kind = r.randrange(6)
        if kind == 0:
            return "get_item", {
                "TableName": name,
                "Key": to_item(key),
                "ConsistentRead": r.random() < 0.5,
            }
        if kind == 1:  # Dynamo.put_if_absent, as accounts.create and idempotency.claim use it
            item = {**key, "coins": self.coins(), "displayName": "new", "status": "PENDING"}
            first = next(iter(key))
            return "put_item", {
                "TableName": name,
                "Item": to_item(item),
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": first},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        if kind == 2:  # Dynamo.update, as accounts.set_display_name and idempotency.fail use it
            account = {"id": self.acc()}
            choices: list[tuple[Any, ...]] = [
                (
                    "accounts",
                    account,
                    "SET displayName = :n, coins = if_not_exists(coins, :zero), diamonds = "
                    "if_not_exists(diamonds, :zero), createdAt = if_not_exists(createdAt, :t)",
                    None,
                    None,
                    {":n": f"n{r.randint(0, 3)}", ":zero": 0, ":t": self.stamp()},
                ),
                ("accounts", account, "REMOVE birthdate", None, None, None),
                ("accounts", account, "SET birthdate = :b", None, None, {":b": "1999-09-09"}),
                (
                    "idempotency",
                    {"key": self.record_key()},
                    "SET #s = :failed, #e = :e",
                    "#s = :pending AND requestHash = :h",
                    {"#s": "status", "#e": "error"},
                    {
                        ":failed": "FAILED",
                        ":pending": "PENDING",
                        ":h": r.choice(["h1", "h2"]),
                        ":e": {"code": "X", "fields": ["a", 1]},
                    },
                ),
            ]
            if not self.pair.memory.get_item(
                TableName=self.pair.t("accounts"), Key=to_item(account)
            ).get("Item"):
                del choices[1]  # on a missing item: a known difference (test_known_differences)
            logical, key, expression, condition, names, values = r.choice(choices)
            kwargs: dict[str, Any] = {
                "TableName": self.pair.t(logical),
                "Key": to_item(key),
                "UpdateExpression": expression,
                "ReturnValues": "ALL_NEW",
            }
            if names:
                kwargs["ExpressionAttributeNames"] = names
            if values:
                kwargs["ExpressionAttributeValues"] = to_item(values)
            if condition:
                kwargs["ConditionExpression"] = condition
            return "update_item", kwargs
        if kind == 3:
            kwargs = {
                "TableName": name,
                "Key": to_item(key),
                "ReturnValues": r.choice(["NONE", "ALL_OLD"]),
            }
            if r.random() < 0.5:
                kwargs |= {
                    "ConditionExpression": "attribute_exists(#k)",
                    "ExpressionAttributeNames": {"#k": next(iter(key))},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            return "delete_item", kwargs
        if kind == 4:
            keys = {repr(k): k for k in (self.key() for _ in range(r.randint(1, 12)))}
            request: dict[str, Any] = {}
            for logical, k in keys.values():
                request.setdefault(self.pair.t(logical), {"Keys": []})["Keys"].append(to_item(k))
            return "batch_get_item", {"RequestItems": request}
        return self.query()

    def query(self) -> tuple[str, dict[str, Any]]:
        """The product's queries (Dynamo.page / query)."""
        r = self.rng
        st, acc = r.choice(list(STREAMS)), self.acc()
        forward = r.random() < 0.3
        after = f"e{r.randint(0, 40):03d}"
        choices: list[tuple[Any, ...]] = [
            (None, "ledger", "#pk = :pk", {"#pk": "accountId"}, {":pk": acc}),
            (
                None,
                "ledger",
                "#pk = :pk AND #sk < :after",
                {"#pk": "accountId", "#sk": "entryId"},
                {":pk": r.choice([acc, f"{acc}#01"]), ":after": after},
            ),
            (
                "byCoins",
                "rankings",
                "rankKey = :k",
                None,
                {":k": r.choice([st, f"{st}#00", f"{st}#01"])},
            ),
            (
                "byCoins",
                "rankings",
                "rankKey = :k AND coins = :c",
                None,
                {":k": st, ":c": self.coins(5)},
            ),
            (
                "byTarget",
                "transfers",
                "#pk = :pk",
                {"#pk": "targetId"},
                {":pk": r.choice([st, f"{st}#00", f"{st}#01"])},
            ),
            (
                "byAccount",
                "withdrawals",
                "#pk = :pk AND #sk < :after",
                {"#pk": "accountId", "#sk": "id"},
                {":pk": acc, ":after": f"wdr_{r.randint(0, 9)}"},
            ),
            ("pending", "withdrawals", "#pk = :pk", {"#pk": "pendingIndex"}, {":pk": "PENDING"}),
            ("live", "streams", "#pk = :pk", {"#pk": "liveIndex"}, {":pk": "LIVE"}),
            (None, "catalog", "#k = :k", {"#k": "kind"}, {":k": "GIFT"}),
        ]
        index, table, condition, names, values = r.choice(choices)
        from infra.dynamo import to_item

        kwargs: dict[str, Any] = {
            "TableName": self.pair.t(table),
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": forward,
            "Limit": r.randint(1, 6),
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if index:
            kwargs["IndexName"] = index
        return "query", kwargs


@engine_test
@pytest.mark.parametrize("seed", [11, 22, 33, 44])
def test_random_operations(pair: Pair, seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    if seed == 44:
        # The DynamoDB-like store at rest (every replica and index caught up, each transaction
        # applied in its steps before the next call) answers exactly as the engine does.
        pair.memory = MemoryDynamo(
            clock=clock,
            fidelity=Fidelity(stale_reads=1.0, read_lag=0.01, index_lag=0.01, unprocessed=0.0),
            rng=random.Random(seed),
        )
        pair.dynamo = Dynamo(pair.settings, client=pair.memory)
        ensure_tables(pair.memory, pair.settings)
    traffic = Traffic(rng, pair)
    outcomes: Counter[str] = Counter()
    for step in range(500):
        op, kwargs = traffic.transaction() if rng.random() < 0.55 else traffic.single()
        for _page in range(3):
            clock.now += 0.02
            result = pair.same(op, **kwargs)
            outcomes[
                result.get("Error", {}).get("Code", "ok") if isinstance(result, dict) else "?"
            ] += 1
            if op != "query" or "LastEvaluatedKey" not in result:
                break
            kwargs = {**kwargs, "ExclusiveStartKey": result["LastEvaluatedKey"]}
        if step % 100 == 99:
            pair.same_tables()
    pair.same_tables()
    # the traffic exercises both success and every kind of refusal
    assert outcomes["ok"] > 100 and outcomes["TransactionCanceledException"] > 30, outcomes
    assert outcomes["ConditionalCheckFailedException"] and outcomes["ValidationException"], outcomes
