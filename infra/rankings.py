"""Rankings table: coins each sender gifted in each stream.

Key: id = "<streamId>#<senderId>": each (stream, sender) is its own partition, so gifts from
different viewers never share a partition key (a stream-keyed table made every gift to a
stream write one item collection: 1,000 WCU/s, about 500 gifts/s; docs/scaling.md).

The byCoins index (rankKey, rankSort) is the viewer ranking. rankKey is the stream id, or
with `index_shards` = J > 1 one of "<streamId>#<jj>" (a stable shard per sender). rankSort
is one number that orders by coins, then by sender id:

    rankSort = coins * 2**48 + (2**48 - 1 - prefix(senderId))

where prefix is the first 6 bytes of the sender id (UTF-8, zero-padded) as an integer. A gift
adds coins * 2**48, so the write stays a plain addition (no read); a Query of the index,
highest first, then returns senders by coins and by id, and `topGifters(first)` is one Query of
first + 1 items per index partition. Only senders whose ids share their first 6 bytes and
whose coins are equal tie on rankSort; those few are read whole (bounded by MAX_TIED) and
ordered by full id, so the ranking stays exact. While a sender's coins in one stream stay under
10**12, rankSort has at most 27 digits: exact in DynamoDB (38 digits) and in the local engine
and moto, whose arithmetic keeps 28.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from infra.dynamo import Dynamo, Item
from infra.lru import TtlCache

TABLE = "rankings"
PREFIX_BITS = 48
_SPAN = 1 << PREFIX_BITS
# More senders than this tied on rankSort (same first 6 bytes of id and same coins) at the
# cut is not expected from an identity provider's ids (Cognito subs are random UUIDs).
MAX_TIED = 1_000
# myRank places the caller within the first RANK_LIMIT senders only: past them a place is not
# worth reading more of the index for.
RANK_LIMIT = 100


def rank_key(stream_id: str, sender_id: str, index_shards: int) -> str:
    """The sender's byCoins partition: the stream itself, or a stable index shard per sender."""
    if index_shards <= 1:
        return stream_id
    return f"{stream_id}#{zlib.crc32(sender_id.encode()) % index_shards:02d}"


def _prefix(sender_id: str) -> int:
    return int.from_bytes(sender_id.encode()[: PREFIX_BITS // 8].ljust(PREFIX_BITS // 8, b"\0"))


def rank_base(sender_id: str) -> int:
    """rankSort of a sender with 0 coins."""
    return _SPAN - 1 - _prefix(sender_id)


class RankingsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._top: TtlCache[tuple[str, int], list[Item]] = TtlCache(
            dynamo.settings.stream_cache_seconds
        )

    def add_action(
        self, stream_id: str, sender_id: str, coins: int, index_shards: int = 1
    ) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": f"{stream_id}#{sender_id}"},
            "SET coins = if_not_exists(coins, :zero) + :c, "
            "rankSort = if_not_exists(rankSort, :base) + :step, rankKey = :r",
            values={
                ":c": coins,
                ":zero": 0,
                ":base": rank_base(sender_id),
                ":step": coins * _SPAN,
                ":r": rank_key(stream_id, sender_id, index_shards),
            },
        )

    async def top(self, stream_id: str, first: int, index_shards: int = 1) -> list[Item]:
        """The top `first` senders by coins, ties by sender id, exactly: one Query per index
        partition (one by default), each of `first + 1` items, highest first."""
        cached = self._top.get((stream_id, first))
        if cached is not None:
            return cached
        return self._top.put(
            (stream_id, first), await self._read_top(stream_id, first, index_shards)
        )

    async def _read_top(self, stream_id: str, first: int, index_shards: int) -> list[Item]:
        keys = (
            [stream_id]
            if index_shards <= 1
            else [f"{stream_id}#{j:02d}" for j in range(index_shards)]
        )
        pages = await asyncio.gather(*(self._top_of(key, first + 1) for key in keys))
        ranked = sorted((_entry(stream_id, i) for page in pages for i in page), key=_order)
        if len(ranked) <= first:
            return ranked
        # Only entries with equal rankSort can be out of order (same id prefix, same coins):
        # where one sits at the end of a partition's page, read all of them.
        boundary = ranked[first - 1]["rankSort"]
        for key, page in zip(keys, pages, strict=True):
            if len(page) > first and page[-1]["rankSort"] == boundary:
                tied = [_entry(stream_id, i) for i in await self._tied(key, boundary)]
                ranked = [
                    i for i in ranked if not (i["rankKey"] == key and i["rankSort"] == boundary)
                ]
                ranked += tied
        return sorted(ranked, key=_order)[:first]

    async def mine(
        self, stream_id: str, sender_id: str, index_shards: int = 1
    ) -> tuple[int, int | None]:
        """The sender's coins in the stream and place in its ranking (None past RANK_LIMIT or
        with nothing gifted): a consistent GetItem of the sender's own entry, then per index
        partition one Query of the byCoins entries at or above it, highest first, Limit
        RANK_LIMIT + 1. Keys only: at most 101 small entries read, however big the stream."""
        own = await self.dynamo.get(TABLE, {"id": f"{stream_id}#{sender_id}"}, consistent=True)
        if own is None or own.get("coins", 0) <= 0:
            return 0, None
        score = own["rankSort"]
        keys = (
            [stream_id]
            if index_shards <= 1
            else [f"{stream_id}#{j:02d}" for j in range(index_shards)]
        )
        pages = await asyncio.gather(*(self._at_or_above(key, score) for key in keys))
        ahead = 0
        for key, page in zip(keys, pages, strict=True):
            if len(page) > RANK_LIMIT and page[-1]["rankSort"] == score:
                # ties on rankSort (same id prefix, same coins) past the page: read them whole
                page = [i for i in page if i["rankSort"] > score] + await self._tied(key, score)
            entries = (_entry(stream_id, i) for i in page)
            ahead += sum(1 for i in entries if _order(i) < (-own["coins"], sender_id))
        return own["coins"], ahead + 1 if ahead < RANK_LIMIT else None

    async def _at_or_above(self, key: str, rank_sort: int) -> list[Item]:
        items, _ = await self.dynamo.query(
            TABLE,
            "rankKey = :k AND rankSort >= :s",
            names={},
            values={":k": key, ":s": rank_sort},
            limit=RANK_LIMIT + 1,
            forward=False,
            index="byCoins",
        )
        return items

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

    async def _tied(self, key: str, rank_sort: int) -> list[Item]:
        items, _ = await self.dynamo.query(
            TABLE,
            "rankKey = :k AND rankSort = :s",
            names={},
            values={":k": key, ":s": rank_sort},
            index="byCoins",
            limit=MAX_TIED,
        )
        return items


def _entry(stream_id: str, index_item: Item) -> Item:
    """An index entry (keys only) as a ranking: the sender from the key, coins from rankSort."""
    return {
        "senderId": index_item["id"][len(stream_id) + 1 :],
        "coins": index_item["rankSort"] // _SPAN,
        "rankSort": index_item["rankSort"],
        "rankKey": index_item["rankKey"],
    }


def _order(item: Item) -> tuple[int, str]:
    return (-item["coins"], item["senderId"])
