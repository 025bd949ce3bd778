"""Per-call cost of MemoryDynamo on the calls the simulator makes (not collected by pytest).

    .venv/bin/python -m tests.sim.bench_store

Requests are built by the project's own repositories (the gift transaction is the one
resolvers/gifts.py sends: eight actions), against tables holding some data already. Costs
are CPU time per call (time.process_time), best of five rounds, so that other load on the
machine skews them less.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from infra.accounts import AccountsRepo
from infra.config import Settings
from infra.dynamo import Dynamo, to_item
from infra.earnings import EarningsRepo
from infra.idempotency import IdempotencyRepo
from infra.ledger import LedgerRepo
from infra.rankings import RankingsRepo
from infra.streams import StreamsRepo
from infra.tables import ensure_tables
from infra.transfers import TransfersRepo
from tests.sim.store import MemoryDynamo

SETTINGS = Settings(table_prefix="bench-")


def measure(label: str, call: Callable[[int], Any], runs: int) -> float:
    for i in range(min(runs, 200)):  # warm the expression cache and the allocator
        call(-1 - i)
    # CPU time, best of 5 rounds: the figures that hold on a busy machine
    best = float("inf")
    per_round = runs // 5
    for r in range(5):
        start = time.process_time()
        for i in range(r * per_round, (r + 1) * per_round):
            call(i)
        best = min(best, (time.process_time() - start) / per_round)
    micros = best * 1e6
    print(f"{label:<66} {micros:7.1f} µs")
    return micros


def main() -> None:
    store = MemoryDynamo()
    ensure_tables(store, SETTINGS)
    dynamo = Dynamo(SETTINGS, client=store)
    accounts, ledger = AccountsRepo(dynamo), LedgerRepo(dynamo)
    streams, earnings = StreamsRepo(dynamo), EarningsRepo(dynamo)
    transfers, rankings = TransfersRepo(dynamo), RankingsRepo(dynamo)
    idempotency = IdempotencyRepo(dynamo)
    table = SETTINGS.table

    # background data: 2,000 accounts, a 20,000-entry ledger partition, a live stream
    for i in range(2000):
        store.put_item(
            TableName=table("accounts"),
            Item=to_item(
                {"id": f"u{i}", "coins": 10**9, "diamonds": 0, "displayName": f"User {i}"}
            ),
        )
    for i in range(20_000):
        store.transact_write_items(
            TransactItems=[
                ledger.put_action(
                    entry_id=f"e{i:08d}",
                    account_id="u1",
                    kind="PURCHASE",
                    coins=1,
                    diamonds=0,
                    reference_id="r",
                    created_at="2026-01-01T00:00:00.000+00:00",
                )
            ]
        )
    stream = {
        "id": "st",
        "creatorId": "star",
        "title": "t",
        "status": "LIVE",
        "startedAt": "2026-01-01T00:00:00.000+00:00",
        "shards": 32,
    }
    for start in range(0, 34, 25):
        store.transact_write_items(TransactItems=streams.start_actions(stream)[start : start + 25])
    for i in range(5000):
        store.transact_write_items(
            TransactItems=[rankings.add_action("st", f"u{i % 2000}", i % 97)]
        )

    account_key = {"id": {"S": "u7"}}
    results: dict[str, float] = {}
    results["get"] = measure(
        "get_item",
        lambda i: store.get_item(TableName=table("accounts"), Key=account_key, ConsistentRead=True),
        20_000,
    )
    results["put"] = measure(
        "put_item (new item, attribute_not_exists condition)",
        lambda i: store.put_item(
            TableName=table("idempotency"),
            Item=to_item({"key": f"k{i}", "requestHash": "h", "status": "PENDING", "expiresAt": 1}),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": "key"},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
        20_000,
    )
    set_name = {
        "TableName": table("accounts"),
        "UpdateExpression": "SET displayName = :n, coins = if_not_exists(coins, :zero)",
        "ExpressionAttributeValues": to_item({":n": "Renamed", ":zero": 0}),
        "ReturnValues": "ALL_NEW",
    }
    results["update"] = measure(
        "update_item (SET + if_not_exists, ReturnValues=ALL_NEW)",
        lambda i: store.update_item(Key={"id": {"S": f"u{i % 2000}"}}, **set_name),
        20_000,
    )
    debit = accounts.debit_action("u9", 1, 0)["Update"]
    results["update_condition"] = measure(
        "update_item (debit: condition + arithmetic)",
        lambda i: store.update_item(**debit),
        20_000,
    )
    page = {
        "TableName": table("ledger"),
        "KeyConditionExpression": "#pk = :pk AND #sk < :after",
        "ExpressionAttributeNames": {"#pk": "accountId", "#sk": "entryId"},
        "ExpressionAttributeValues": to_item({":pk": "u1", ":after": "e00015000"}),
        "ScanIndexForward": False,
        "Limit": 21,
    }
    results["query"] = measure(
        "query (21-item page of a 20,000-item partition)", lambda i: store.query(**page), 5_000
    )
    top = {
        "TableName": table("rankings"),
        "IndexName": "byCoins",
        "KeyConditionExpression": "rankKey = :k",
        "ExpressionAttributeValues": to_item({":k": "st"}),
        "ScanIndexForward": False,
        "Limit": 11,
    }
    results["query_gsi"] = measure(
        "query (byCoins GSI, KEYS_ONLY, Limit 11)", lambda i: store.query(**top), 5_000
    )
    keys = [{"id": {"S": f"st#{k:02d}"}} for k in range(32)]
    results["batch"] = measure(
        "batch_get_item (32 stream shards)",
        lambda i: store.batch_get_item(RequestItems={table("streams"): {"Keys": keys}}),
        5_000,
    )

    def gift(i: int) -> list[dict[str, Any]]:
        sender, shard = f"u{abs(i) % 2000}", abs(i) % 32
        gift_id = f"gft_{i + 1_000_000:08d}"  # ids grow like the product's ULIDs
        transfer = {
            "id": gift_id,
            "targetId": "st",
            "streamId": "st",
            "senderId": sender,
            "recipientId": "star",
            "giftId": "rose",
            "quantity": 1,
            "coins": 5,
            "diamonds": 5,
            "createdAt": "2026-01-01T00:00:00.000+00:00",
        }
        stamp = "2026-01-01T00:00:00.000+00:00"
        return [
            accounts.debit_action(sender, 5, 0),
            streams.gift_action("st", shard, 5),
            earnings.credit_action("star", shard, 5),
            ledger.put_action(
                entry_id=f"s{i + 1_000_000:08d}",
                account_id=sender,
                kind="GIFT_SENT",
                coins=-5,
                diamonds=0,
                reference_id=gift_id,
                created_at=stamp,
            ),
            ledger.put_action(
                entry_id=f"r{i + 1_000_000:08d}",
                account_id="star",
                kind="GIFT_RECEIVED",
                coins=0,
                diamonds=5,
                shard=shard,
                reference_id=gift_id,
                created_at=stamp,
            ),
            transfers.put_action(transfer),
            idempotency.completed_action(f"{sender}#sendGift#{i}", "h", {"transferId": gift_id}),
            rankings.add_action("st", sender, 5),
        ]

    requests = [gift(i) for i in range(-200, 20_000)]
    results["transact"] = measure(
        "transact_write_items (the 8-action gift)",
        lambda i: store.transact_write_items(TransactItems=requests[i + 200]),
        20_000,
    )
    totals: dict[str, int] = {}

    def tally(name: str, key: Any, old: Any, new: Any) -> None:
        if name == table("accounts") and new is not None:
            totals[key[0]] = new["coins"] - (old["coins"] if old else 0)

    store.listeners.append(tally)
    requests = [gift(i) for i in range(20_000, 40_200)]
    results["transact_listener"] = measure(
        "transact_write_items (8-action gift, with a listener)",
        lambda i: store.transact_write_items(TransactItems=requests[i + 200]),
        20_000,
    )
    store.listeners.clear()
    broke = accounts.debit_action("u3", 10**12, 0)

    def cancelled(i: int) -> None:
        try:
            store.transact_write_items(TransactItems=[*requests[i + 200][1:], broke])
        except store.exceptions.TransactionCanceledException:
            pass

    results["transact_cancelled"] = measure(
        "transact_write_items (8 actions, cancelled: one condition fails)", cancelled, 20_000
    )
    print(f"targets: get/put/update < 100 µs, 8-action transaction < 300 µs: {results}")


if __name__ == "__main__":
    main()
