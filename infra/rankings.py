"""Rankings table: coins each sender gifted in each stream.

Key: streamId (HASH), senderId (RANGE). Each gift adds to its sender's own item, so gifts
from different viewers never write the same item. The byCoins index (rankKey, coins) gives
the stream's viewer ranking in one Query; rankKey is the stream id, or with `index_shards` > 1
one of "<streamId>#<jj>" per sender, read in parallel and merged.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "rankings"
# A tie at the cut is read whole for an exact order, up to this many senders; past it, ties
# among them are broken in index order.
MAX_TIED = 1000


def rank_key(stream_id: str, sender_id: str, index_shards: int) -> str:
    """The sender's byCoins partition: the stream itself, or a stable index shard per sender."""
    if index_shards <= 1:
        return stream_id
    return f"{stream_id}#{zlib.crc32(sender_id.encode()) % index_shards:02d}"


class RankingsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def add_action(
        self, stream_id: str, sender_id: str, coins: int, index_shards: int = 1
    ) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"streamId": stream_id, "senderId": sender_id},
            "SET coins = if_not_exists(coins, :zero) + :c, rankKey = :r",
            values={":c": coins, ":zero": 0, ":r": rank_key(stream_id, sender_id, index_shards)},
        )

    async def top(self, stream_id: str, first: int, index_shards: int = 1) -> list[Item]:
        """The top `first` senders by coins, ties by sender id, exactly: one Query per index
        partition (one by default), and one more for a partition where a tie straddles the cut."""
        keys = (
            [stream_id]
            if index_shards <= 1
            else [f"{stream_id}#{j:02d}" for j in range(index_shards)]
        )
        pages = await asyncio.gather(*(self._top_of(key, first + 1) for key in keys))
        ranked = sorted((i for page in pages for i in page), key=_order)
        if len(ranked) <= first:
            return ranked
        boundary = ranked[first - 1]["coins"]
        # The index orders equal coins arbitrarily: where a partition's fetched page ends on the
        # boundary value, fetch all of its items with that value, so ties break by sender id.
        for key, page in zip(keys, pages, strict=True):
            if len(page) > first and page[-1]["coins"] == boundary:
                tied = await self._tied(key, boundary)
                ranked = [i for i in ranked if not (i["rankKey"] == key and i["coins"] == boundary)]
                ranked += tied
        return sorted(ranked, key=_order)[:first]

    async def _top_of(self, key: str, limit: int) -> list[Item]:
        items, _ = await self.dynamo.query(
            TABLE,
            "rankKey = :k",
            names={},
            values={":k": key},
            limit=limit,
            forward=False,
            index="byCoins",
        )
        return items

    async def _tied(self, key: str, coins: int) -> list[Item]:
        found: list[Item] = []
        start = None
        while True:
            page, start = await self.dynamo.query(
                TABLE,
                "rankKey = :k AND coins = :c",
                names={},
                values={":k": key, ":c": coins},
                limit=MAX_TIED - len(found),
                index="byCoins",
                start_key=start,
            )
            found.extend(page)
            if not start or len(found) >= MAX_TIED:  # every read bounded (issue 9)
                return found


def _order(item: Item) -> tuple[int, str]:
    return (-item["coins"], item["senderId"])
