"""Transfers table: one item per gift transfer, keyed by its id (a ULID).

The byTarget index (targetId = the stream or video id, id) lists a target's gifts newest
first. With `index_shards` > 1 a target's transfers spread over "<targetId>#<jj>" index
partitions, read in parallel and merged. The table's stream (NEW_IMAGE) lets an AWS
deployment fan gifts out to subscribers.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item, counted
from infra.lru import TtlCache

TABLE = "transfers"


class TransfersRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._first: TtlCache[tuple[str, int], tuple[list[Item], bool]] = TtlCache(
            dynamo.settings.stream_cache_seconds
        )

    def put_action(self, transfer: Item) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, transfer, condition="attribute_not_exists(id)")

    async def get(self, transfer_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": transfer_id}, consistent=True)

    async def get_many(self, transfer_ids: list[str]) -> dict[str, Item]:
        """Transfers by id, strongly consistent (a money decision reads them)."""
        items = await self.dynamo.batch_get(
            TABLE, [{"id": i} for i in transfer_ids], consistent=True
        )
        return {item["id"]: item for item in items}

    def reversed_action(self, transfer_id: str, before: int, after: int) -> dict[str, Any]:
        """The coins of this gift whose diamonds are reversed (at most its coins, across every
        purchase whose spent coins paid for it), conditioned on the count read."""
        return self.dynamo.update_action(
            TABLE,
            {"id": transfer_id},
            "SET reversedCoins = :after",
            condition=f"{counted('reversedCoins', before, ':before')} AND coins >= :after",
            values={":before": before, ":after": after},
        )

    @staticmethod
    def index_key(target_id: str, index_shard: int, index_shards: int) -> str:
        """The transfer's byTarget partition: the target itself, or one of its index shards."""
        if index_shards <= 1:
            return target_id
        return f"{target_id}#{index_shard % index_shards:02d}"

    async def page(
        self, target_id: str, index_shards: int, first: int, after: str | None
    ) -> tuple[list[Item], bool]:
        """A page of the target's gifts, newest first; the first page may be up to
        `stream_cache_seconds` old (what every viewer of a big stream polls)."""
        if after is None:
            cached = self._first.get((target_id, first))
            if cached is None:
                cached = self._first.put(
                    (target_id, first), await self._page(target_id, index_shards, first, None)
                )
            return cached
        return await self._page(target_id, index_shards, first, after)

    async def _page(
        self, target_id: str, index_shards: int, first: int, after: str | None
    ) -> tuple[list[Item], bool]:
        keys = [
            ("targetId", self.index_key(target_id, j, index_shards))
            for j in range(max(index_shards, 1))
        ]
        return await self.dynamo.merged_page(
            TABLE, keys=keys, sort="id", first=first, after=after, index="byTarget"
        )

    async def by_sender(
        self, sender_id: str, first: int, after: str | None
    ) -> tuple[list[Item], bool]:
        """A sender's gifts, newest first (the bySender index): what a chargeback reverses."""
        return await self.dynamo.page(
            TABLE,
            key=("senderId", sender_id),
            sort="id",
            first=first,
            after=after,
            index="bySender",
        )

    @staticmethod
    def cursor(item: Item) -> str:
        return Dynamo.cursor(item, "id")
