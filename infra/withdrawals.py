"""Withdrawals table: withdrawals and each creator's daily requested total.

Items, keyed by `id`:
- "<withdrawalId>" (a ULID): accountId, diamonds, amount (cents), currency, status,
  createdAt, day, settledAt, settledBy (the admin). While PENDING it carries
  pendingIndex="PENDING" and pendingSort="<createdAt>#<id>", which put it in the sparse
  `pending` review index.
- "daily#<accountId>#<YYYY-MM-DD>": `cents` requested that UTC day, PENDING and PAID. A request
  adds to it under the condition that the total stays within the limit; a rejection takes
  its amount back off. It has no accountId, so it stays out of the byAccount index.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "withdrawals"
PENDING = "PENDING"


def daily_key(account_id: str, day: str) -> dict[str, str]:
    return {"id": f"daily#{account_id}#{day}"}


class WithdrawalsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def create_action(self, withdrawal: Item) -> dict[str, Any]:
        item = {
            **withdrawal,
            "pendingIndex": PENDING,
            "pendingSort": f"{withdrawal['createdAt']}#{withdrawal['id']}",
        }
        return self.dynamo.put_action(TABLE, item, condition="attribute_not_exists(id)")

    def reserve_daily_action(
        self, account_id: str, day: str, cents: int, limit: int
    ) -> dict[str, Any]:
        """Add to the day's total; cancelled if the total would pass `limit`."""
        return self.dynamo.update_action(
            TABLE,
            daily_key(account_id, day),
            "SET cents = if_not_exists(cents, :zero) + :c",
            condition="attribute_not_exists(cents) OR cents <= :most",
            values={":zero": 0, ":c": cents, ":most": limit - cents},
        )

    def release_daily_action(self, account_id: str, day: str, cents: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            daily_key(account_id, day),
            "SET cents = cents - :c",
            condition="cents >= :c",
            values={":c": cents},
        )

    def settle_action(
        self, withdrawal_id: str, status: str, settled_at: str, admin: str | None = None
    ) -> dict[str, Any]:
        """PENDING -> `status`, recording when and (settleWithdrawal) which admin."""
        values = {":to": status, ":t": settled_at, ":pending": PENDING}
        values.update({":by": admin} if admin else {})
        by = ", settledBy = :by" if admin else ""
        return self.dynamo.update_action(
            TABLE,
            {"id": withdrawal_id},
            f"SET #s = :to, settledAt = :t{by} REMOVE pendingIndex, pendingSort",
            condition="#s = :pending",
            names={"#s": "status"},
            values=values,
        )

    async def get(self, withdrawal_id: str, consistent: bool = True) -> Item | None:
        if not withdrawal_id.startswith("wdr_"):
            return None
        return await self.dynamo.get(TABLE, {"id": withdrawal_id}, consistent=consistent)

    async def requested_on(self, account_id: str, day: str) -> int:
        item = await self.dynamo.get(TABLE, daily_key(account_id, day), consistent=True)
        return item["cents"] if item else 0

    async def page(self, account_id: str, first: int, after: str | None) -> tuple[list[Item], bool]:
        return await self.dynamo.page(
            TABLE,
            key=("accountId", account_id),
            sort="id",
            first=first,
            after=after,
            index="byAccount",
        )

    async def pending(self, first: int, after: str | None) -> tuple[list[Item], bool]:
        """The review queue, oldest first (the sparse `pending` index: one Query a page)."""
        return await self.dynamo.page(
            TABLE,
            key=("pendingIndex", PENDING),
            sort="pendingSort",
            first=first,
            after=after,
            index="pending",
            newest_first=False,
        )

    async def pending_page(self, limit: int, after: str | None) -> tuple[list[Item], str | None]:
        """The review queue, oldest first, and the next page's cursor."""
        page, more = await self.pending(limit, after)
        return page, self.pending_cursor(page[-1]) if more else None

    @staticmethod
    def pending_cursor(item: Item) -> str:
        return Dynamo.cursor(item, "pendingSort")

    @staticmethod
    def cursor(item: Item) -> str:
        return Dynamo.cursor(item, "id")
