"""Events table: events "<eventId>" and their participants "<eventId>#<accountId>"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.dynamo import Dynamo, Item, counted

TABLE = "events"


def member_key(event_id: str, account_id: str) -> dict[str, str]:
    return {"id": f"{event_id}#{account_id}"}


class EventsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def create_action(self, event: Item) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, event, condition="attribute_not_exists(id)")

    async def get(self, event_id: str, consistent: bool = False) -> Item | None:
        if "#" in event_id:
            return None
        return await self.dynamo.get(TABLE, {"id": event_id}, consistent=consistent)

    async def joined(self, event_id: str, account_ids: Sequence[str]) -> set[str]:
        keys = [member_key(event_id, a) for a in account_ids]
        return {i["accountId"] for i in await self.dynamo.batch_get(TABLE, keys)}

    async def members(self, keys: Sequence[str]) -> dict[str, Item]:
        """Memberships by id ("<eventId>#<accountId>"), strongly consistent."""
        items = await self.dynamo.batch_get(TABLE, [{"id": k} for k in keys], consistent=True)
        return {item["id"]: item for item in items}

    def reversed_action(self, member_id: str, before: int, after: int) -> dict[str, Any]:
        """The entry's coins whose diamonds are reversed (at most its coins), as read."""
        return self.dynamo.update_action(
            TABLE,
            {"id": member_id},
            "SET reversedCoins = :after",
            condition=f"{counted('reversedCoins', before, ':before')} AND coins >= :after",
            values={":before": before, ":after": after},
        )

    def join_actions(
        self, event_id: str, account_id: str, joined_at: str, paid: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The participant count and the membership; `paid` keeps on it what the entry paid
        (host, coins, diamonds, earnings shard and bucket) for a reversal to find."""
        count = self.dynamo.update_action(
            TABLE,
            {"id": event_id},
            "ADD participants :one",
            condition="attribute_exists(id)",
            values={":one": 1},
        )
        member = self.dynamo.put_action(
            TABLE,
            {
                **member_key(event_id, account_id),
                "accountId": account_id,
                "joinedAt": joined_at,
                **(paid or {}),
            },
            condition="attribute_not_exists(id)",
        )
        return [count, member]
