"""Ledger table: every balance change of every account, one item per entry.

Key: accountId (HASH), entryId (RANGE, a ULID: newest first with ScanIndexForward=False).
Entries are only ever written inside the transaction that changes the balance.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item
from infra.ids import decode_cursor, encode_cursor

TABLE = "ledger"


class LedgerRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def put_action(
        self,
        *,
        entry_id: str,
        account_id: str,
        kind: str,
        coins: int,
        diamonds: int,
        reference_id: str,
        created_at: str,
    ) -> dict[str, Any]:
        item = {
            "accountId": account_id,
            "entryId": entry_id,
            "kind": kind,
            "coins": coins,
            "diamonds": diamonds,
            "referenceId": reference_id,
            "createdAt": created_at,
        }
        return self.dynamo.put_action(
            TABLE,
            item,
            condition="attribute_not_exists(entryId)",
        )

    async def page(self, account_id: str, first: int, after: str | None) -> tuple[list[Item], bool]:
        """Up to `first` entries, newest first, after the cursor; and whether more exist."""
        start = None
        if after:
            start = {"accountId": account_id, **decode_cursor(after, ("entryId",))}
        items, _ = await self.dynamo.query(
            TABLE,
            "accountId = :a",
            names={},
            values={":a": account_id},
            limit=first + 1,
            forward=False,
            start_key=start,
        )
        return items[:first], len(items) > first

    @staticmethod
    def cursor(item: Item) -> str:
        return encode_cursor({"entryId": item["entryId"]})

    async def all_entries(self, account_id: str) -> list[Item]:
        """Every entry of one account (audits and tests; not on any request path)."""
        items: list[Item] = []
        start = None
        while True:
            page, start = await self.dynamo.query(
                TABLE,
                "accountId = :a",
                names={},
                values={":a": account_id},
                start_key=start,
                consistent=True,
            )
            items.extend(page)
            if not start:
                return items
