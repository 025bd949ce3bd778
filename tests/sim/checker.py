"""The simulator's invariants, kept as running totals fed by every write the store applies.

After every completed operation the scheduler has stopped the world (no store call runs while
a client is checking), so what the store holds is one consistent moment: the checks below
compare running totals, each O(1) or O(accounts touched) per operation.

- The ledger promise: per account, ledger entries sum to coins (+ held) and to diamonds (+
  earnings shards); nothing is negative.
- Conservation: coins bought - refunded = coins in wallets + spent on gifts and entries;
  diamonds earned = diamonds in wallets + in PENDING and PAID withdrawals; every purchase is
  backed by exactly one approved charge at the provider, every refund by one provider refund.
- Exactly once: one transfer per COMPLETED sendGift record, one withdrawal per
  requestWithdrawal record, one purchase per purchaseCoins record, one membership per join.
- Derived totals agree with the transfers: stream totals (`coinsReceived`), rankings
  (`topGifters`), event participants, daily withdrawal totals (`audit`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from infra.earnings import shard_total

Item = dict[str, Any]


class Violation(AssertionError):
    pass


class Totals:
    """Running totals over the store's tables, updated by the store's write listener."""

    def __init__(self, prefix: str, provider: Any) -> None:
        self.prefix = prefix
        self.provider = provider
        self.wallet_coins: Counter[str] = Counter()
        self.wallet_diamonds: Counter[str] = Counter()  # account item + earnings shards
        self.ledger_coins: Counter[str] = Counter()
        self.ledger_diamonds: Counter[str] = Counter()
        self.touched: set[str] = set()
        self.negative: list[str] = []
        self.sums: Counter[str] = Counter()  # global sums by name
        self.records: Counter[str] = Counter()  # COMPLETED idempotency records by mutation
        self.stream_coins: Counter[str] = Counter()  # from the stream's shards
        self.stream_transfers: Counter[str] = Counter()  # from the transfers
        self.video_coins: Counter[str] = Counter()
        self.video_transfers: Counter[str] = Counter()
        self.ranking: Counter[tuple[str, str]] = Counter()
        self.ranking_transfers: Counter[tuple[str, str]] = Counter()
        self.participants: Counter[str] = Counter()
        self.members: Counter[str] = Counter()
        self.entry_coins: dict[str, int] = {}
        self.daily: Counter[str] = Counter()  # daily#<account>#<day> -> cents
        self.daily_withdrawn: Counter[str] = Counter()  # the same key -> PENDING + PAID cents
        self.charge_ids: Counter[str] = Counter()  # purchases' charge ids
        self.refunded_charges: set[str] = set()
        self.purchase_status: dict[str, str] = {}
        self.by_charge: dict[str, Item] = {}

    def listen(self, table: str, key: Any, old: Item | None, new: Item | None) -> None:
        name = table.removeprefix(self.prefix)
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            return
        if old is not None:
            handler(old, -1)
        if new is not None:
            handler(new, +1)

    def _check(self, what: str, value: int) -> None:
        if value < 0:
            self.negative.append(f"negative balance: {what} = {value}")

    def _accounts(self, item: Item, sign: int) -> None:
        owner = item["id"]
        self.touched.add(owner)
        coins = item.get("coins", 0) + item.get("heldCoins", 0)
        self.wallet_coins[owner] += sign * coins
        self.wallet_diamonds[owner] += sign * item.get("diamonds", 0)
        self.sums["wallet_coins"] += sign * coins
        self.sums["wallet_diamonds"] += sign * item.get("diamonds", 0)
        if sign > 0:
            for field in ("coins", "heldCoins", "diamonds"):
                self._check(f"{owner}.{field}", item.get(field, 0))

    def _earnings(self, item: Item, sign: int) -> None:
        owner = item["accountId"]
        self.touched.add(owner)
        total = shard_total(item)
        self.wallet_diamonds[owner] += sign * total
        self.sums["wallet_diamonds"] += sign * total
        if sign > 0:
            for name, value in item.items():
                if isinstance(value, int) and name != "shard":
                    self._check(f"earnings {item['id']}.{name}", value)

    def _ledger(self, item: Item, sign: int) -> None:
        owner = item["accountId"].split("#")[0]
        self.touched.add(owner)
        self.ledger_coins[owner] += sign * item["coins"]
        self.ledger_diamonds[owner] += sign * item["diamonds"]
        self.sums[f"ledger:{item['kind']}:coins"] += sign * item["coins"]
        self.sums[f"ledger:{item['kind']}:diamonds"] += sign * item["diamonds"]

    def _idempotency(self, item: Item, sign: int) -> None:
        if item.get("status") == "COMPLETED":
            mutation = item["key"].split("#")[1]
            self.records[mutation] += sign

    def _purchases(self, item: Item, sign: int) -> None:
        if "caseId" in item:  # a dispute or a dashboard refund: coins it took from a wallet
            kept = 0 if item["status"] == "won" else 1  # a dispute won gave them back
            self.sums["case_taken"] += sign * item["coinsTaken"] * kept
            return
        if not item["id"].startswith("pur_"):  # charge aliases, reversal records
            return
        self.sums["purchases"] += sign
        self.sums["purchased_coins"] += sign * item["coins"]
        charge = item["chargeId"]
        self.charge_ids[charge] += sign
        if item["status"] == "REFUNDED":  # an admin's refund: what cases had not taken back
            self.sums["refunded_coins"] += sign * (item["coins"] - item.get("takenBack", 0))
            if sign > 0:
                self.refunded_charges.add(charge)
                if charge not in self.provider.refunded:  # money back only after the refund
                    self.negative.append(f"coins taken back for {charge} without a refund")
        if sign > 0:
            self.purchase_status[item["id"]] = item["status"]
            self.by_charge[charge] = item
            if self.charge_ids[charge] > 1:
                self.negative.append(f"charge {charge} credited {self.charge_ids[charge]} times")
            if charge not in self.provider.charges:
                self.negative.append(f"purchase credited without an approved charge {charge}")

    def _transfers(self, item: Item, sign: int) -> None:
        self.sums["transfers"] += sign
        self.sums["gift_coins"] += sign * item["coins"]
        self.sums["gift_diamonds"] += sign * item["diamonds"]
        if item.get("streamId"):
            self.stream_transfers[item["streamId"]] += sign * item["coins"]
            self.ranking_transfers[(item["streamId"], item["senderId"])] += sign * item["coins"]
        else:
            self.video_transfers[item["videoId"]] += sign * item["coins"]

    def _streams(self, item: Item, sign: int) -> None:
        if "#" in item["id"] and "coins" in item:
            self.stream_coins[item["id"].split("#")[0]] += sign * item["coins"]

    def _videos(self, item: Item, sign: int) -> None:
        if "#" in item["id"]:
            self.video_coins[item["id"].split("#")[0]] += sign * item.get("coins", 0)

    def _rankings(self, item: Item, sign: int) -> None:
        stream, sender = item["id"].split("#", 1)
        self.ranking[(stream, sender)] += sign * item["coins"]

    def _events(self, item: Item, sign: int) -> None:
        if "accountId" in item:  # a membership "<eventId>#<accountId>"
            event = item["id"].split("#")[0]
            self.members[event] += sign
            self.sums["memberships"] += sign
            self.sums["entries"] += sign * self.entry_coins[event]
        else:
            self.participants[item["id"]] += sign * item.get("participants", 0)
            self.entry_coins[item["id"]] = item["entryCoins"]

    def _withdrawals(self, item: Item, sign: int) -> None:
        if item["id"].startswith("daily#"):
            self.daily[item["id"]] += sign * item.get("cents", 0)
            if sign > 0:
                self._check(item["id"], item.get("cents", 0))
            return
        self.sums["withdrawals"] += sign
        if item["status"] in ("PENDING", "PAID"):
            self.sums["withdrawn_diamonds"] += sign * item["diamonds"]
            day_key = f"daily#{item['accountId']}#{item['day']}"
            self.daily_withdrawn[day_key] += sign * item["amount"]

    # --- the checks ---------------------------------------------------------------------
    def check(self) -> list[str]:
        """Every invariant that must hold at any moment; the violations found."""
        found = list(self.negative)
        self.negative.clear()
        for owner in self.touched:
            if self.wallet_coins[owner] != self.ledger_coins[owner]:
                found.append(
                    f"ledger promise (coins) of {owner}: wallet {self.wallet_coins[owner]}"
                    f" != entries {self.ledger_coins[owner]}"
                )
            if self.wallet_diamonds[owner] != self.ledger_diamonds[owner]:
                found.append(
                    f"ledger promise (diamonds) of {owner}: wallet "
                    f"{self.wallet_diamonds[owner]} != entries {self.ledger_diamonds[owner]}"
                )
        self.touched.clear()
        s = self.sums
        entries = s["entries"]
        coins_out = s["gift_coins"] + entries
        taken = s["refunded_coins"] + s["case_taken"]
        if s["wallet_coins"] != s["purchased_coins"] - taken - coins_out:
            found.append(
                f"coin conservation: wallets {s['wallet_coins']} != bought "
                f"{s['purchased_coins']} - refunded or charged back {taken} - spent {coins_out}"
            )
        earned = s["gift_diamonds"] + entries + s["ledger:GIFT_REVERSED:diamonds"]
        if s["wallet_diamonds"] + s["withdrawn_diamonds"] != earned:
            found.append(
                f"diamond conservation: wallets {s['wallet_diamonds']} + withdrawn "
                f"{s['withdrawn_diamonds']} != earned {earned} (reversals included)"
            )
        for mutation, table_count in (
            ("sendGift", s["transfers"]),
            ("requestWithdrawal", s["withdrawals"]),
            ("purchaseCoins", s["purchases"]),
            ("joinEvent", s["memberships"]),
        ):
            if self.records[mutation] != table_count:
                found.append(
                    f"exactly once: {self.records[mutation]} COMPLETED {mutation} records, "
                    f"{table_count} effects"
                )
        return found

    def audit(self, settled: bool) -> list[str]:
        """Derived totals against the transfers; with `settled` (faults off, every retry done)
        also: every approved charge credited, every provider refund finished."""
        found: list[str] = []
        for label, derived, source in (
            ("coinsReceived of stream", self.stream_coins, self.stream_transfers),
            ("coinsReceived of video", self.video_coins, self.video_transfers),
            ("topGifters entry", self.ranking, self.ranking_transfers),
            ("event participants", self.participants, self.members),
            ("daily withdrawal total", self.daily, self.daily_withdrawn),
        ):
            for key in set(derived) | set(source):
                if derived[key] != source[key]:  # type: ignore[index]
                    found.append(f"{label} {key}: {derived[key]} != {source[key]}")  # type: ignore[index]
        if settled:
            credited = {c for c, n in self.charge_ids.items() if n}
            for charge in self.provider.charges:
                if charge not in credited:
                    found.append(f"charge {charge} taken but its coins never credited")
            for charge in self.provider.refunded:
                purchase = self.by_charge.get(charge)
                amount = self.provider.charges[charge].amount
                refunded = self.provider.amount_refunded.get(charge, amount)
                expected = -(-purchase["coins"] * refunded // amount) if purchase else 0
                if purchase is None or not (
                    purchase["status"] == "REFUNDED" or purchase.get("takenBack", 0) >= expected
                ):
                    found.append(f"refund of {charge} at the provider never finished")
        return found
