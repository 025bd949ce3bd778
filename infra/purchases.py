"""Purchases table: one item per completed coin purchase.

Key: id. Holds the package snapshot (coins, price) at the time of purchase, the charge id and
the buyer; written only in the transaction that credits the coins.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "purchases"


class PurchasesRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def get(self, purchase_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": purchase_id}, consistent=True)

    def put_action(self, purchase: dict[str, Any]) -> dict[str, Any]:
        return self.dynamo.put_action(TABLE, purchase, condition="attribute_not_exists(id)")

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
