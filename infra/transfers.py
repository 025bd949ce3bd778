"""Transfers table: one item per gift transfer, keyed by its id (a ULID).

The byTarget index (targetId = the stream or video id, id) lists a target's gifts newest
first. The table's stream (NEW_IMAGE) lets an AWS deployment fan gifts out to subscribers.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "transfers"


class TransfersRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def put_action(self, transfer: Item) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, transfer, condition="attribute_not_exists(id)")

    async def get(self, transfer_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": transfer_id}, consistent=True)

    async def page(self, target_id: str, first: int, after: str | None) -> tuple[list[Item], bool]:
        return await self.dynamo.page(
            TABLE,
            key=("targetId", target_id),
            sort="id",
            first=first,
            after=after,
            index="byTarget",
        )

    @staticmethod
    def cursor(item: Item) -> str:
        return Dynamo.cursor(item, "id")
