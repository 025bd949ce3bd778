"""Withdrawals table: withdrawals and each creator's daily requested total.

Items, keyed by `id`:
- "<withdrawalId>" (a ULID): accountId, diamonds, amount (cents), currency, status,
  createdAt, day, settledAt, settledBy (the admin). While PENDING it carries
  pendingIndex="PENDING" and pendingSort="<createdAt>#<id>", which put it in the sparse
  `pending` review index.
- "daily#<accountId>#<YYYY-MM-DD>": `cents` requested that UTC day, PENDING and PAID. A request
  adds to it under the condition that the total stays within the limit; a rejection takes
  its amount back off. It has no accountId, so it stays out of the byAccount index.

Paid through a payouts processor (resolvers/payouts.py), a withdrawal also carries:
payoutAccount (the creator's connected account, from the request); payoutStartedAt and
payoutBy once an admin's settlement asked for its transfer (a transfer may exist from then on,
so it can no longer be rejected), payoutAttempt (the transfer's idempotency key is the
withdrawal id, then "<id>:<n>" after each definite refusal, which clears payoutStartedAt and
records payoutRefusal); once PAID, payoutReference (the transfer); after a reversal of that
transfer, reversedAmount (cents reversed so far, as the processor says) and returnedDiamonds
(given back for them).
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item, counted

TABLE = "withdrawals"
PENDING = "PENDING"
IS_PENDING = "#s = :pending"


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
        """PENDING -> `status`, recording when and (settleWithdrawal) which admin; never once
        a transfer of it may exist (payoutStartedAt: only the transfer may then close it)."""
        values = {":to": status, ":t": settled_at, ":pending": PENDING}
        values.update({":by": admin} if admin else {})
        by = ", settledBy = :by" if admin else ""
        action = self.dynamo.update_action(
            TABLE,
            {"id": withdrawal_id},
            f"SET #s = :to, settledAt = :t{by} REMOVE pendingIndex, pendingSort",
            condition="#s = :pending",
            names={"#s": "status"},
            values=values,
        )
        action["Update"]["ConditionExpression"] += " AND attribute_not_exists(payoutStartedAt)"
        return action

    # --- paid through the payouts processor ----------------------------------------------
    async def start_payout(
        self, withdrawal_id: str, admin: str, destination: str, at: str
    ) -> Item | None:
        """Mark a PENDING withdrawal as being paid by transfer (from here a transfer may exist,
        so it can no longer be rejected); keeps the destination and attempt already recorded.
        The item after, or None when it is not PENDING."""
        return await self.dynamo.update(
            TABLE,
            {"id": withdrawal_id},
            "SET payoutBy = :by, payoutAccount = if_not_exists(payoutAccount, :dest), "
            "payoutAttempt = if_not_exists(payoutAttempt, :one), "
            "payoutStartedAt = if_not_exists(payoutStartedAt, :at)",
            names={"#s": "status"},
            values={":by": admin, ":dest": destination, ":one": 1, ":at": at, ":pending": PENDING},
            condition=IS_PENDING,
        )

    async def refuse_payout(
        self, withdrawal_id: str, attempt: int, code: str, at: str
    ) -> Item | None:
        """The processor refused this attempt for good, and replays that refusal to anyone who
        asks with its key: no transfer exists or can under it. The withdrawal stays PENDING,
        payable again with the next attempt's key, or rejectable. None when the attempt had
        moved on already."""
        return await self.dynamo.update(
            TABLE,
            {"id": withdrawal_id},
            "SET payoutAttempt = :next, payoutRefusal = :code, payoutRefusedAt = :at "
            "REMOVE payoutStartedAt",
            names={"#s": "status"},
            values={
                ":n": attempt,
                ":next": attempt + 1,
                ":code": code,
                ":at": at,
                ":pending": PENDING,
            },
            condition="#s = :pending AND payoutAttempt = :n",
        )

    async def mark_paid(
        self, withdrawal_id: str, transfer_id: str, settled_at: str, admin: str
    ) -> Item | None:
        """PENDING -> PAID by its transfer (whoever found the transfer first); None when it
        was not PENDING."""
        return await self.dynamo.update(
            TABLE,
            {"id": withdrawal_id},
            "SET #s = :paid, settledAt = :t, settledBy = :by, payoutReference = :tr "
            "REMOVE pendingIndex, pendingSort",
            names={"#s": "status"},
            values={
                ":paid": "PAID",
                ":t": settled_at,
                ":by": admin,
                ":tr": transfer_id,
                ":pending": PENDING,
            },
            condition="#s = :pending AND attribute_exists(payoutStartedAt)",
        )

    def returned_action(
        self, withdrawal_id: str, transfer_id: str, before: int, after: int, reversed_cents: int
    ) -> dict[str, Any]:
        """Diamonds given back for a reversal of the withdrawal's transfer: from `before` (as
        read) to `after`, with the cents reversed that they stand for."""
        return self.dynamo.update_action(
            TABLE,
            {"id": withdrawal_id},
            "SET returnedDiamonds = :after, reversedAmount = :r",
            condition="#s = :paid AND payoutReference = :tr AND "
            + counted("returnedDiamonds", before, ":before"),
            names={"#s": "status"},
            values={
                ":after": after,
                ":r": reversed_cents,
                ":paid": "PAID",
                ":tr": transfer_id,
                ":before": before,
            },
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
