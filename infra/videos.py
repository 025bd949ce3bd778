"""Videos table: videos "<videoId>" and their gift-total shards "<videoId>#<kk>"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.dynamo import Dynamo, Item
from infra.lru import Lru

TABLE = "videos"


def shard_key(video_id: str, shard: int) -> dict[str, str]:
    return {"id": f"{video_id}#{shard:02d}"}


class VideosRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._facts: Lru[str, Item] = Lru(dynamo.settings.target_cache_size)

    def create_action(self, video: Item) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, video, condition="attribute_not_exists(id)")

    def gift_action(self, video_id: str, shard: int, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            shard_key(video_id, shard),
            "SET coins = if_not_exists(coins, :zero) + :c",
            values={":c": coins, ":zero": 0},
        )

    async def get(self, video_id: str) -> Item | None:
        if "#" in video_id:
            return None
        item = await self.dynamo.get(TABLE, {"id": video_id}, consistent=True)
        if item is not None:
            facts = {k: item[k] for k in ("creatorId", "shards", "creatorAdult")}
            facts["indexShards"] = item.get("indexShards", 1)
            self._facts.put(video_id, facts)
        return item

    async def facts(self, video_id: str) -> Item | None:
        cached = self._facts.get(video_id)
        if cached is not None:
            return cached
        await self.get(video_id)
        return self._facts.get(video_id)

    async def get_many(self, video_ids: Sequence[str]) -> dict[str, Item]:
        keys = [{"id": i} for i in video_ids if "#" not in i]
        return {i["id"]: i for i in await self.dynamo.batch_get(TABLE, keys)}

    async def coins(self, videos: Sequence[tuple[str, int]]) -> dict[str, int]:
        keys = [shard_key(v, k) for v, n in videos for k in range(n)]
        found = {i["id"]: i.get("coins", 0) for i in await self.dynamo.batch_get(TABLE, keys)}
        return {v: sum(found.get(shard_key(v, k)["id"], 0) for k in range(n)) for v, n in videos}
