"""Streams table: live streams, their shards, and the one-live-stream-per-account lock.

Items, all keyed by `id`:
- "<streamId>": the stream (creatorId, title, status, startedAt, endedAt, shards). While it is
  live it carries liveIndex="LIVE" and liveSort="<startedAt>#<id>", which put it in the sparse
  `live` index that lists live streams newest first; ending removes them.
- "<streamId>#<kk>": shard kk of the stream's gift totals: `live` flag and `coins`. A gift
  adds to one shard under the condition live = true, so the LIVE check happens inside the
  gift's transaction without every gift writing one item.
- "live#<accountId>": exists while the account has a live stream (streamId).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.dynamo import Dynamo, Item
from infra.lru import Lru, TtlCache

TABLE = "streams"
LIVE = "LIVE"


def shard_key(stream_id: str, shard: int) -> dict[str, str]:
    return {"id": f"{stream_id}#{shard:02d}"}


class StreamsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._facts: Lru[str, Item] = Lru(dynamo.settings.target_cache_size)
        self._coins: TtlCache[str, int] = TtlCache(dynamo.settings.stream_cache_seconds)

    def start_actions(self, stream: Item) -> list[dict[str, Any]]:
        """The one-live-stream lock (first: its failure means "already live") and the stream."""
        lock = self.dynamo.put_action(
            TABLE,
            {"id": f"live#{stream['creatorId']}", "streamId": stream["id"]},
            condition="attribute_not_exists(id)",
        )
        meta = self.dynamo.put_action(
            TABLE,
            {**stream, "liveIndex": LIVE, "liveSort": f"{stream['startedAt']}#{stream['id']}"},
            condition="attribute_not_exists(id)",
        )
        return [lock, meta]

    def shard_puts(self, stream: Item) -> list[dict[str, Any]]:
        """The stream's K shards, live and empty. Unconditional: written before or with the
        stream item; nothing refers to them until the stream exists."""
        return [
            self.dynamo.put_action(TABLE, {**shard_key(stream["id"], k), "live": True, "coins": 0})
            for k in range(stream["shards"])
        ]

    def end_actions(self, stream: Item, ended_at: str, marker: str) -> list[dict[str, Any]]:
        """The stream ENDED (first: its failure means "already ended") and the lock released.
        `marker` (unique per attempt) lets a retry recognise its own end in the item."""
        meta = self.dynamo.update_action(
            TABLE,
            {"id": stream["id"]},
            "SET #s = :ended, endedAt = :t, endedBy = :m REMOVE liveIndex, liveSort",
            condition="#s = :live",
            names={"#s": "status"},
            values={":ended": "ENDED", ":t": ended_at, ":m": marker, ":live": LIVE},
        )
        lock = self.dynamo.delete_action(TABLE, {"id": f"live#{stream['creatorId']}"})
        return [meta, lock]

    def shard_closes(self, stream: Item) -> list[dict[str, Any]]:
        """Every shard refuses gifts (their `live = true` condition) from then on."""
        return [
            self.dynamo.update_action(
                TABLE, shard_key(stream["id"], k), "SET live = :f", values={":f": False}
            )
            for k in range(stream["shards"])
        ]

    def gift_action(self, stream_id: str, shard: int, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            shard_key(stream_id, shard),
            "ADD coins :c",
            condition="live = :t",
            values={":c": coins, ":t": True},
        )

    async def get(self, stream_id: str) -> Item | None:
        if "#" in stream_id:
            return None
        item = await self.dynamo.get(TABLE, {"id": stream_id}, consistent=True)
        if item is not None and "creatorId" in item:
            facts = {k: item[k] for k in ("creatorId", "shards")}
            facts["indexShards"] = item.get("indexShards", 1)
            self._facts.put(stream_id, facts)
            return item
        return None

    async def facts(self, stream_id: str) -> Item | None:
        """The stream's creator and shard count: cached, since they never change."""
        cached = self._facts.get(stream_id)
        if cached is not None:
            return cached
        await self.get(stream_id)
        return self._facts.get(stream_id)

    async def get_many(self, stream_ids: Sequence[str]) -> dict[str, Item]:
        keys = [{"id": i} for i in stream_ids if "#" not in i]
        return {i["id"]: i for i in await self.dynamo.batch_get(TABLE, keys) if "creatorId" in i}

    async def live_page(self, first: int, after: str | None) -> tuple[list[Item], bool]:
        return await self.dynamo.page(
            TABLE,
            key=("liveIndex", LIVE),
            sort="liveSort",
            first=first,
            after=after,
            index="live",
        )

    @staticmethod
    def cursor(item: Item) -> str:
        return Dynamo.cursor(item, "liveSort")

    async def coins(self, streams: Sequence[tuple[str, int]]) -> dict[str, int]:
        """Coins gifted in each (stream id, shard count): one BatchGetItem per 100 shards
        (none for a stream read within `stream_cache_seconds`)."""
        totals = {s: self._coins.get(s) for s, _ in streams}
        missing = [(s, n) for s, n in streams if totals[s] is None]
        keys = [shard_key(s, k) for s, n in missing for k in range(n)]
        found = {i["id"]: i.get("coins", 0) for i in await self.dynamo.batch_get(TABLE, keys)}
        for s, n in missing:
            totals[s] = self._coins.put(
                s, sum(found.get(shard_key(s, k)["id"], 0) for k in range(n))
            )
        return {s: t or 0 for s, t in totals.items()}
