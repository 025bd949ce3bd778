"""Rankings table: coins each sender gifted in each stream.

Key: streamId (HASH), senderId (RANGE). Each gift adds to its sender's own item, so gifts
from different viewers never write the same item. The byCoins index (streamId, coins) gives
the stream's viewer ranking in one Query.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "rankings"


class RankingsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def add_action(self, stream_id: str, sender_id: str, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"streamId": stream_id, "senderId": sender_id},
            "SET coins = if_not_exists(coins, :zero) + :c",
            values={":c": coins, ":zero": 0},
        )

    async def top(self, stream_id: str, first: int) -> list[Item]:
        """The top `first` senders by coins, ties by sender id, exactly."""
        items, _ = await self.dynamo.query(
            TABLE,
            "streamId = :s",
            names={},
            values={":s": stream_id},
            limit=first + 1,
            forward=False,
            index="byCoins",
        )
        if len(items) > first and items[first]["coins"] == items[first - 1]["coins"]:
            # A tie straddles the cut: the index orders ties arbitrarily, so fetch them all.
            boundary = items[first - 1]["coins"]
            above = [i for i in items if i["coins"] > boundary]
            tied, start = [], None
            while True:
                page, start = await self.dynamo.query(
                    TABLE,
                    "streamId = :s AND coins = :c",
                    names={},
                    values={":s": stream_id, ":c": boundary},
                    index="byCoins",
                    start_key=start,
                )
                tied.extend(page)
                if not start:
                    break
            items = above + tied
        ranked = sorted(items, key=lambda i: (-i["coins"], i["senderId"]))
        return ranked[:first]
