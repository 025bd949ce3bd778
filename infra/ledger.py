"""Ledger table: every balance change of every account, one item per entry.

Key: accountId (HASH), entryId (RANGE, a ULID: newest first with ScanIndexForward=False).
Entries are only ever written inside the transaction that changes the balance.

A creator's gift income can arrive faster than one partition takes writes, so an account with
`shards` spreads its GIFT_RECEIVED and EVENT_INCOME entries over partition keys
"<accountId>#<kk>" (shard 0 is "<accountId>" itself), at most PARTITIONS of them whatever the
account's shard count: new entries never conflict, so partitions only need write throughput
(PARTITIONS x 1,000 WCU/s), not the item spread the balances need. A page of a recipient's
ledger merges one Query per partition.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "ledger"
PARTITIONS = 32


class LedgerRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    @staticmethod
    def partition(account_id: str, shard: int) -> str:
        part = shard % PARTITIONS
        return account_id if part == 0 else f"{account_id}#{part:02d}"

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
        shard: int = 0,
    ) -> dict[str, Any]:
        item = {
            "accountId": self.partition(account_id, shard),
            "entryId": entry_id,
            "kind": kind,
            "coins": coins,
            "diamonds": diamonds,
            "referenceId": reference_id,
            "createdAt": created_at,
        }
        return self.dynamo.put_action(TABLE, item, condition="attribute_not_exists(entryId)")

    async def page(
        self, account_id: str, first: int, after: str | None, shards: int = 1
    ) -> tuple[list[Item], bool]:
        """Up to `first` entries, newest first, after the cursor; and whether more exist.
        A sharded account's partitions are read in parallel and merged by entry id."""
        count = min(max(shards, 1), PARTITIONS)
        keys = [("accountId", self.partition(account_id, k)) for k in range(count)]
        return await self.dynamo.merged_page(
            TABLE, keys=keys, sort="entryId", first=first, after=after
        )

    async def spending(
        self, account_id: str, *, after: str | None, since: str, limit: int
    ) -> tuple[list[Item], bool]:
        """Up to `limit` entries of the account's own partition, newest first, older than
        `after` (an entry id) and newer than `since`; strongly consistent (the chargeback walk
        decides on them); and whether more exist."""
        condition, values = "accountId = :a", {":a": account_id}
        if after and since:
            condition += " AND entryId BETWEEN :since AND :after"
            values.update({":since": since, ":after": after})
        elif after:
            condition += " AND entryId < :after"
            values[":after"] = after
        elif since:
            condition += " AND entryId > :since"
            values[":since"] = since
        items, last = await self.dynamo.query(
            TABLE, condition, {}, values, limit=limit, forward=False, consistent=True
        )
        return [i for i in items if i["entryId"] not in (after, since)], last is not None

    @staticmethod
    def cursor(item: Item) -> str:
        return Dynamo.cursor(item, "entryId")
