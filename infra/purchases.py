"""Purchases table: completed coin purchases, and what the payment processor did to them.

Items, keyed by `id`:
- "<purchaseId>": the package snapshot (coins, price) at the time of purchase, the buyer, the
  processor's payment and charge ids, `status`, the PURCHASE ledger entry's id (`entryId`);
  written first in the transaction that credits. What money after the payment did to it
  (resolvers/money_back.py): `refunded` (cents the processor returned or lost, as last
  converged), `takenBack` = `fromWallet` + `spent` (coins taken back from the wallet, and
  found spent), `covered` (spent coins whose creators' diamonds are reversed), `held` (coins
  an admin's refund holds), `records` (reversal records), the walk through the buyer's ledger
  (`walk`, `walkDone`), and the convergence's `gen` / `settled` / `step` counters.
- "charge#<chargeId>": which purchase a processor charge paid for (its webhooks name charges).
- "rev#<purchaseId>#<nnnnnn>": one reversal of what the purchase's spent coins paid for (a
  gift transfer or an event entry): a stack, pushed as coins are found spent and popped as
  they come back.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from infra.dynamo import Dynamo, Item, counted

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
        """Which purchase a charge paid for: written once (a charge never names two)."""
        return self.dynamo.put_action(
            TABLE,
            {"id": f"charge#{charge_id}", "purchaseId": purchase_id},
            condition="attribute_not_exists(id) OR purchaseId = :p",
            values={":p": purchase_id},
        )

    async def by_charge(self, charge_id: str) -> Item | None:
        """The purchase a charge paid for (both written by one transaction: the alias can be
        visible a moment before the purchase, which is then read again)."""
        alias = await self.dynamo.get(TABLE, {"id": f"charge#{charge_id}"}, consistent=True)
        if alias is None:
            return None
        return await self.dynamo.committed(lambda: self.get(alias["purchaseId"]), "purchase")

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

    # --- money after the payment (resolvers/money_back.py) ---------------------------------
    async def bump(self, purchase_id: str) -> Item | None:
        """A new convergence of the purchase: its generation + 1 (None: no such purchase).
        Every step of an older one is refused from now on."""
        return await self.dynamo.update(
            TABLE,
            {"id": purchase_id},
            "ADD gen :one",
            condition="attribute_exists(id) AND begins_with(id, :pur)",
            values={":one": 1, ":pur": "pur_"},
        )

    def step_action(self, before: Item, changes: dict[str, Any]) -> dict[str, Any]:
        """One step of the convergence `before["gen"]`: `changes` set, conditioned on the step
        counter and generation as read, so one runner lands each step and a superseded one
        none."""
        names = {f"#c{i}": k for i, k in enumerate(changes)}
        values: dict[str, Any] = {f":c{i}": v for i, v in enumerate(changes.values())}
        sets = "".join(f", #c{i} = :c{i}" for i in range(len(changes)))
        values.update({":step": before.get("step", 0), ":next": before.get("step", 0) + 1})
        values[":gen"] = before.get("gen", 0)
        return self.dynamo.update_action(
            TABLE,
            {"id": before["id"]},
            f"SET step = :next{sets}",
            condition=f"{counted('step', before.get('step', 0), ':step')} AND gen = :gen",
            names=names or None,
            values=values,
        )

    def hold_action(self, before: Item, held: int, admin: str) -> dict[str, Any]:
        """An admin's refund begins: COMPLETED -> REFUNDING, `held` coins of the buyer's
        wallet set aside for it, conditioned on what was taken back and the step as read (a
        case taking the same coins meanwhile makes this fail); which admin asked, recorded."""
        return self.dynamo.update_action(
            TABLE,
            {"id": before["id"]},
            "SET #s = :refunding, held = :held, step = :next, refundedBy = :by",
            condition=f"#s = :completed AND {counted('step', before.get('step', 0), ':step')} "
            f"AND {counted('takenBack', before.get('takenBack', 0), ':taken')}",
            names={"#s": "status"},
            values={
                ":refunding": "REFUNDING",
                ":completed": "COMPLETED",
                ":held": held,
                ":step": before.get("step", 0),
                ":next": before.get("step", 0) + 1,
                ":taken": before.get("takenBack", 0),
                ":by": admin,
            },
        )

    def release_action(self, before: Item) -> dict[str, Any]:
        """The admin's refund was refused: REFUNDING -> COMPLETED, its held coins released."""
        return self.dynamo.update_action(
            TABLE,
            {"id": before["id"]},
            "SET #s = :completed, held = :zero, step = :next",
            condition=f"#s = :refunding AND held = :held AND "
            f"{counted('step', before.get('step', 0), ':step')}",
            names={"#s": "status"},
            values={
                ":refunding": "REFUNDING",
                ":completed": "COMPLETED",
                ":held": before.get("held", 0),
                ":zero": 0,
                ":step": before.get("step", 0),
                ":next": before.get("step", 0) + 1,
            },
        )

    async def settle(self, before: Item, status: str, refunded: int, stamp: str) -> Item | None:
        """The convergence `before["gen"]` is done: record it, with the purchase's status and
        the money back it converged to (None when another step or runner came first)."""
        values: dict[str, Any] = {
            ":gen": before.get("gen", 0),
            ":step": before.get("step", 0),
            ":status": status,
            ":refunded": refunded,
        }
        expression = "SET settled = :gen, #s = :status, refunded = :refunded"
        if status == "REFUNDED" and before["status"] != "REFUNDED":
            expression += ", refundedAt = :t"
            values[":t"] = stamp
        return await self.dynamo.update(
            TABLE,
            {"id": before["id"]},
            expression,
            condition=f"gen = :gen AND {counted('step', before.get('step', 0), ':step')}",
            names={"#s": "status"},
            values=values,
        )

    async def rewalk(self, before: Item) -> None:
        """A walk that found nothing more to reverse starts again from where it began."""
        await self.dynamo.update(
            TABLE,
            {"id": before["id"]},
            "SET walk = walkFrom, walkDone = :no, step = step + :one",
            condition="walkDone = :yes",
            values={":no": False, ":yes": True, ":one": 1},
        )

    @staticmethod
    def record_id(purchase_id: str, n: int) -> str:
        return f"rev#{purchase_id}#{n:06d}"

    async def record(self, purchase_id: str, n: int) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": self.record_id(purchase_id, n)}, consistent=True)

    def push_record_action(self, purchase_id: str, n: int, record: Item) -> dict[str, Any]:
        return self.dynamo.put_action(
            TABLE,
            {**record, "id": self.record_id(purchase_id, n), "purchaseId": purchase_id},
            condition="attribute_not_exists(id)",
        )

    def pop_record_action(
        self, purchase_id: str, n: int, before: Item, left: dict[str, int] | None
    ) -> dict[str, Any]:
        """Give back (part of) the top reversal: `left` its remaining coins, diamonds and owed
        diamonds, or None when all of it came back (the record goes)."""
        key = {"id": self.record_id(purchase_id, n)}
        if left is None:
            return self.dynamo.delete_action(
                TABLE, key, "coins = :u", values={":u": before["coins"]}
            )
        return self.dynamo.update_action(
            TABLE,
            key,
            "SET coins = :coins, diamonds = :diamonds, owed = :owed",
            condition="coins = :u",
            values={":u": before["coins"], **{f":{k}": v for k, v in left.items()}},
        )

    async def records(self, purchase_id: str, count: int) -> list[Item]:
        """A purchase's live reversal records (for audits)."""
        keys = [{"id": self.record_id(purchase_id, n)} for n in range(count)]
        return sorted(await self.dynamo.batch_get(TABLE, keys), key=lambda i: i["id"])
