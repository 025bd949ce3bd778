"""Earnings table: a creator's gift diamonds, spread over shard items "<accountId>#<kk>".

Gifts to one creator can arrive faster than one item takes writes (1,000 write units a
second; a transactional write costs two), so each gift adds to one of `shards` items. The
balance is the account item's `diamonds` plus every shard: one BatchGetItem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.dynamo import Dynamo

TABLE = "earnings"


def shard_id(account_id: str, shard: int) -> str:
    return f"{account_id}#{shard:02d}"


class EarningsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def credit_action(self, account_id: str, shard: int, diamonds: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            "SET accountId = :a, diamonds = if_not_exists(diamonds, :zero) + :d",
            values={":a": account_id, ":zero": 0, ":d": diamonds},
        )

    def debit_action(self, account_id: str, shard: int, diamonds: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            "SET diamonds = diamonds - :d",
            condition="diamonds >= :d",
            values={":d": diamonds},
        )

    async def shards(self, accounts: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
        """Each account's diamonds per shard, for (account id, shard count) pairs."""
        keys = [{"id": shard_id(a, k)} for a, n in accounts for k in range(n)]
        found = {i["id"]: i["diamonds"] for i in await self.dynamo.batch_get(TABLE, keys)}
        return {a: [found.get(shard_id(a, k), 0) for k in range(n)] for a, n in accounts}
