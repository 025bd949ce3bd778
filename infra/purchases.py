"""Purchases table: completed coin purchases, and what the payment processor did to them.

Items, keyed by `id`:
- "<purchaseId>": the package snapshot (coins, price) at the time of purchase, the buyer, the
  processor's payment and charge ids, `status`, `takenBack` (coins taken back after a refund
  made at the processor or a chargeback); written first in the transaction that credits.
- "charge#<chargeId>": which purchase a processor charge paid for (its webhooks name charges).
- "case#<caseId>": a chargeback (the dispute's id) or a refund made at the processor
  ("refund#<chargeId>#<amount refunded>"): the coins taken back, the restriction, and the
  progress of reversing creators' pending diamonds, step by step (resolvers/chargebacks.py).
- "case#<caseId>#<nnn>": the reversals done, 100 to an item, to restore them if the dispute
  is won.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "purchases"
DAY_PARTITIONS = 8


def day_key(purchase_id: str, created_at: str) -> str:
    """The purchase's byDay partition: its UTC day, spread over DAY_PARTITIONS."""
    return f"{created_at[:10]}#{zlib.crc32(purchase_id.encode()) % DAY_PARTITIONS}"


class PurchasesRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def get(self, purchase_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": purchase_id}, consistent=True)

    def put_action(self, purchase: dict[str, Any]) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, purchase, condition="attribute_not_exists(id)")

    def alias_action(self, charge_id: str, purchase_id: str) -> dict[str, Any]:
        return self.dynamo.put_action(
            TABLE, {"id": f"charge#{charge_id}", "purchaseId": purchase_id}
        )

    async def by_charge(self, charge_id: str) -> Item | None:
        alias = await self.dynamo.get(TABLE, {"id": f"charge#{charge_id}"}, consistent=True)
        return await self.get(alias["purchaseId"]) if alias else None

    def take_back_action(self, purchase_id: str, before: int, coins: int) -> dict[str, Any]:
        """Count coins taken back from the purchase (refunded at the processor, charged back),
        conditioned on the count read: two takers never both count the same coins."""
        return self.dynamo.update_action(
            TABLE,
            {"id": purchase_id},
            "SET takenBack = :after",
            condition="attribute_not_exists(takenBack) OR takenBack = :before"
            if before == 0
            else "takenBack = :before",
            values={":after": before + coins, ":before": before},
        )

    async def on_day(self, day: str) -> list[Item]:
        """Every purchase of a UTC day (YYYY-MM-DD): one Query per byDay partition, paged."""

        async def partition(n: int) -> list[Item]:
            found: list[Item] = []
            start = None
            while True:
                page, start = await self.dynamo.query(
                    TABLE,
                    "#d = :d",
                    names={"#d": "day"},
                    values={":d": f"{day}#{n}"},
                    index="byDay",
                    start_key=start,
                )
                found += page
                if not start:
                    return found

        pages = await asyncio.gather(*(partition(n) for n in range(DAY_PARTITIONS)))
        return [item for page in pages for item in page]

    async def mark_refunded(self, purchase_id: str) -> None:
        """Refunded in full at the processor (its coins taken back by a case)."""
        await self.dynamo.update(
            TABLE,
            {"id": purchase_id},
            "SET #s = :r",
            condition="#s = :c",
            names={"#s": "status"},
            values={":r": "REFUNDED", ":c": "COMPLETED"},
        )

    def give_back_action(self, purchase_id: str, coins: int) -> dict[str, Any]:
        """Coins returned to the buyer (a dispute won): no longer counted as taken back."""
        return self.dynamo.update_action(
            TABLE,
            {"id": purchase_id},
            "SET takenBack = takenBack - :c",
            condition="takenBack >= :c",
            values={":c": coins},
        )

    async def case(self, case_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": f"case#{case_id}"}, consistent=True)

    def open_case_action(self, case: Item) -> dict[str, Any]:
        return self.dynamo.put_action(
            TABLE, {**case, "id": f"case#{case['caseId']}"}, condition="attribute_not_exists(id)"
        )

    def case_step_action(
        self, case_id: str, before: Item, changes: dict[str, Any], status: str | None = None
    ) -> dict[str, Any]:
        """Move a case one step: `changes` set, conditioned on its `step` counter and status as
        read (`before`): one runner at a time lands each step."""
        names = {f"#c{i}": k for i, k in enumerate(changes)}
        values: dict[str, Any] = {f":c{i}": v for i, v in enumerate(changes.values())}
        sets = ", ".join(f"#c{i} = :c{i}" for i in range(len(changes)))
        values.update(
            {":step": before["step"], ":next": before["step"] + 1, ":status": before["status"]}
        )
        return self.dynamo.update_action(
            TABLE,
            {"id": f"case#{case_id}"},
            f"SET step = :next{', ' + sets if sets else ''}",
            condition="step = :step AND #s = :status",
            names={**names, "#s": "status"},
            values=values,
        )

    def reversal_action(self, case_id: str, chunk: int, entry: dict[str, Any]) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": f"case#{case_id}#{chunk:03d}"},
            "SET entries = list_append(if_not_exists(entries, :empty), :e)",
            values={":empty": [], ":e": [entry]},
        )

    async def reversals(self, case_id: str, chunks: int) -> list[Item]:
        items = await self.dynamo.batch_get(
            TABLE, [{"id": f"case#{case_id}#{k:03d}"} for k in range(chunks)]
        )
        ordered = sorted(items, key=lambda i: i["id"])
        return [entry for item in ordered for entry in item.get("entries", [])]

    def status_action(
        self,
        purchase_id: str,
        before: str,
        after: str,
        stamp: str | None = None,
        by: str | None = None,
    ) -> dict[str, Any]:
        """Move the status; with `stamp` (a refund) record when, and with `by` which admin."""
        expression = "SET #s = :after" + (", refundedAt = :t" if stamp else "")
        expression += ", refundedBy = :by" if by else ""
        values = {":after": after, ":before": before, **({":t": stamp} if stamp else {})}
        values.update({":by": by} if by else {})
        return self.dynamo.update_action(
            TABLE,
            {"id": purchase_id},
            expression,
            condition="#s = :before",
            names={"#s": "status"},
            values=values,
        )
