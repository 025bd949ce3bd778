"""The simulator's invariants, kept as running totals fed by every write the store applies.

After every completed operation the scheduler has stopped the world (no store call runs while
a client is checking), so what the store holds is one consistent moment: the checks below
compare running totals, each O(1) or O(accounts touched) per operation.

- The ledger promise: per account, ledger entries sum to coins (+ held) and to diamonds (+
  earnings shards); nothing is negative.
- Conservation: coins bought - taken back from wallets = coins in wallets + spent on gifts
  and entries; diamonds earned - reversed - repaid = diamonds in wallets + in PENDING and PAID
  withdrawals; every purchase is backed by exactly one approved charge at the provider.
- Money back, after every write (resolvers/money_back.py): per purchase, taken back = from
  the wallet + found spent, within [0, its coins], nothing negative; per gift or event entry,
  coins reversed within [0, its coins] and equal to its purchases' reversal records; each
  record's diamonds what its coins paid (rounded down) and its owed part within them; per
  creator, owed diamonds = records' owed + CLAWBACK entries; the restriction exactly where
  spent coins were taken back (or an admin cleared it since); no withdrawal while owed.
- Once every delivery is applied (`audit(settled=True)`): every purchase took back exactly
  what its charge's state implies, and every charge is credited or refunded in full.
- Exactly once: one transfer per COMPLETED sendGift record, one withdrawal per
  requestWithdrawal record, one purchase per purchaseCoins record, one membership per join.
- Derived totals agree with the transfers: stream totals (`coinsReceived`), rankings
  (`topGifters`), event participants, daily withdrawal totals (`audit`).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from infra.dynamo import from_item
from infra.earnings import BUCKET_PREFIX, bucket_seconds, shard_total
from infra.rankings import PREFIX_BITS, rank_base

Item = dict[str, Any]


HISTORY_SECONDS = 60.0  # how long a read's answer may be checked against


class Violation(AssertionError):
    pass


class Totals:
    """Running totals over the store's tables, updated by the store's write listener."""

    def __init__(
        self,
        prefix: str,
        provider: Any,
        clock: Any = None,
        hold: int = 0,
        daily_limit: int | None = None,
    ) -> None:
        self.prefix = prefix
        self.provider = provider
        self.clock = clock  # virtual time (when a bucket may leave an earnings item)
        self.hold = hold
        self.daily_limit = daily_limit
        self.gifts: dict[
            str, tuple[str, str, int, int]
        ] = {}  # id -> (sender, ulid, coins, reversed)
        self.entries: dict[str, tuple[str, str, int, int]] = {}  # membership -> (joiner, at, ...)
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
        self.by_charge: dict[str, Item] = {}
        self.purchases: dict[str, Item] = {}
        self.accounts: dict[str, Item] = {}
        self.record_coins: Counter[str] = Counter()  # purchase -> Σ its reversal records' coins
        self.ref_records: Counter[str] = Counter()  # gift or membership -> Σ records' coins
        self.ref_reversed: Counter[str] = Counter()  # gift or membership -> reversedCoins
        self.owed_records: Counter[str] = Counter()  # creator -> Σ records' owed diamonds
        self.clawback: Counter[str] = Counter()  # creator -> Σ CLAWBACK entries' diamonds
        self.touched_purchases: set[str] = set()
        self.touched_refs: set[str] = set()
        self.touched_creators: set[str] = set()
        self.writes = 0  # write sequence: when spent coins were found, when an admin cleared
        self.spent_at: dict[str, int] = {}
        self.cleared_at: dict[str, int] = {}
        self.withdrawals_seen: set[str] = set()
        self.touched_derived: dict[str, set[Any]] = {}
        self.history: dict[tuple[Any, ...], deque[tuple[float, int]]] = {}
        self.visible: Counter[tuple[Any, ...]] = Counter()  # what readers see, by key
        self.entry_ulids: dict[str, str] = {}  # membership -> its EVENT_ENTRY entry's ULID
        self.reached: Counter[str] = Counter()

    def listen(self, table: str, key: Any, old: Item | None, new: Item | None) -> None:
        self.writes += 1
        name = table.removeprefix(self.prefix)
        if name == "idempotency" and new is None:
            return  # a record's TTL expired (nothing else deletes one): what it did stays done
        self._transition(name, old, new)
        if old is None and new is not None:  # what the run reached: new items by kind
            if name == "ledger":
                sign = "+" if new["coins"] + new["diamonds"] > 0 else "-"
                self.reached[f"{new['kind']}{sign}"] += 1
            elif name == "purchases" and new["id"].startswith("rev#"):
                self.reached["reversal" + (" owed" if new.get("owed") else "")] += 1
        elif (
            name == "accounts"
            and new
            and (new.get("owedDiamonds", 0) > (old or {}).get("owedDiamonds", 0))
        ):
            self.reached["owed"] += 1
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            return
        if old is not None:
            handler(old, -1)
        if new is not None:
            handler(new, +1)

    # --- what reads may answer: each value's recent history -----------------------------
    def now(self) -> float:
        return float(self.clock()) if self.clock else 0.0

    def _held(self, key: tuple[Any, ...], value: int) -> None:
        """`key` holds `value` from now on (kept for a minute of virtual time)."""
        history = self.history.setdefault(key, deque())
        now = self.now()
        if history and history[-1][1] == value:
            return
        history.append((now, value))
        while len(history) > 2 and history[1][0] < now - HISTORY_SECONDS:
            history.popleft()

    def applied(self, table: str, key: Any, old: Any, new: Any) -> None:
        """A write became visible to readers (the store's `on_apply`, wire form): the values
        reads may answer change now, not when its transaction was decided."""
        name = table.removeprefix(self.prefix)
        if name not in ("accounts", "earnings", "streams", "rankings"):
            return
        before = from_item(old) if old is not None else {}
        after = from_item(new) if new is not None else {}
        item = after or before
        if name == "accounts":
            owner = item["id"]
            coins = lambda i: i.get("coins", 0) + i.get("heldCoins", 0)  # noqa: E731
            self._shift(("coins", owner), coins(after) - coins(before))
            self._shift(("diamonds", owner), after.get("diamonds", 0) - before.get("diamonds", 0))
        elif name == "earnings":
            change = (shard_total(after) if after else 0) - (shard_total(before) if before else 0)
            self._shift(("diamonds", item["accountId"]), change)
        elif name == "streams" and "#" in item["id"]:
            change = after.get("coins", 0) - before.get("coins", 0)
            self._shift(("stream", item["id"].split("#")[0]), change)
        elif name == "rankings":
            stream, sender = item["id"].split("#", 1)
            self._shift(("rank", stream, sender), after.get("coins", 0) - before.get("coins", 0))

    def _shift(self, key: tuple[Any, ...], change: int) -> None:
        if change:
            self.visible[key] += change
            self._held(key, self.visible[key])

    def between(self, key: tuple[Any, ...], value: int, since: float) -> bool:
        """For a counter that only grows, read from several items each at its own moment:
        whether `value` lies between what it held at `since` and what it holds now."""
        history = self.history.get(key)
        if not history:
            return value == 0
        before = [v for t, v in history if t <= since]
        low = before[-1] if before else 0
        return low <= value <= history[-1][1]

    def was(self, key: tuple[Any, ...], value: int, since: float) -> bool:
        """Whether `key` held `value` at some moment from `since` on."""
        history = self.history.get(key)
        if not history:
            return value == 0
        held = [v for t, v in history if t >= since]
        before = [v for t, v in history if t < since]
        return (
            value in held
            or (bool(before) and before[-1] == value)
            or (not before and value == 0 and history[0][0] >= since)
        )

    def _transition(self, name: str, old: Item | None, new: Item | None) -> None:
        """Rules about how one item may change, with both of its versions in hand."""
        if name == "earnings" and old is not None and new is not None and self.clock:
            size, now = bucket_seconds(self.hold), self.clock()
            for bucket in set(old) - set(new):
                if bucket.startswith(BUCKET_PREFIX) and bucket[1:].isdigit():
                    if int(bucket[1:]) + size + self.hold > now:  # folded before it matured
                        self.negative.append(f"{new['id']}: pending bucket {bucket} withdrawn")
        elif name == "withdrawals" and new is not None and not new["id"].startswith("daily#"):
            before = (old or {}).get("status", "PENDING")
            if before != new["status"] and before != "PENDING":
                self.negative.append(f"withdrawal {new['id']} {before} -> {new['status']}")
        elif name == "withdrawals" and new is not None and self.daily_limit is not None:
            if new.get("cents", 0) > self.daily_limit:
                self.negative.append(f"{new['id']}: {new['cents']} cents > the daily limit")
        elif name == "rankings" and new is not None:
            expected = rank_base(new["id"].split("#", 1)[1]) + new["coins"] * (1 << PREFIX_BITS)
            if new.get("rankSort") != expected:
                self.negative.append(f"ranking {new['id']}: rankSort differs from its coins")

    def _check(self, what: str, value: int) -> None:
        if value < 0:
            self.negative.append(f"negative balance: {what} = {value}")

    def _accounts(self, item: Item, sign: int) -> None:
        owner = item["id"]
        self.touched.add(owner)
        if sign > 0:
            before = self.accounts.get(owner, {})
            if before.get("restrictedBy") and not item.get("restrictedBy"):
                if item.get("restrictionClearedAt") != before.get("restrictionClearedAt"):
                    self.cleared_at[owner] = self.writes
            self.accounts[owner] = item
            for purchase in item.get("restrictedBy") or ():
                self.touched_purchases.add(purchase)
            self.touched_creators.add(owner)
            self._check(f"{owner}.owedDiamonds", item.get("owedDiamonds", 0))
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
        if item["kind"] == "CLAWBACK":
            self.clawback[owner] += sign * item["diamonds"]
            self.touched_creators.add(owner)
        elif item["kind"] == "EVENT_ENTRY" and sign > 0:  # when the entry was paid, in order
            self.entry_ulids[f"{item['referenceId']}#{owner}"] = item["entryId"].split("_", 1)[1]
        self.ledger_coins[owner] += sign * item["coins"]
        self.ledger_diamonds[owner] += sign * item["diamonds"]
        self.sums[f"ledger:{item['kind']}:coins"] += sign * item["coins"]
        self.sums[f"ledger:{item['kind']}:diamonds"] += sign * item["diamonds"]

    def _idempotency(self, item: Item, sign: int) -> None:
        if item.get("status") == "COMPLETED":
            mutation = item["key"].split("#")[1]
            self.records[mutation] += sign

    def _purchases(self, item: Item, sign: int) -> None:
        if item["id"].startswith("rev#"):  # a reversal record
            purchase, ref, creator = item["purchaseId"], item["refId"], item["creatorId"]
            self.record_coins[purchase] += sign * item["coins"]
            self.ref_records[ref] += sign * item["coins"]
            self.owed_records[creator] += sign * item.get("owed", 0)
            self.touched_purchases.add(purchase)
            self.touched_refs.add(ref)
            self.touched_creators.add(creator)
            if sign > 0:
                self._in_window(item)
                paid = item["unitDiamonds"] * item["coins"] // item["unitCoins"]
                if item["diamonds"] != paid or not 0 <= item.get("owed", 0) <= item["diamonds"]:
                    self.negative.append(f"reversal record {item['id']}: {item}")
                if not 0 < item["coins"] <= item["unitCoins"]:
                    self.negative.append(f"reversal record {item['id']} coins: {item}")
            return
        if not item["id"].startswith("pur_"):  # charge aliases
            return
        self.sums["purchases"] += sign
        self.sums["purchased_coins"] += sign * item["coins"]
        self.sums["taken_from_wallets"] += sign * item.get("fromWallet", 0)
        charge = item["chargeId"]
        self.charge_ids[charge] += sign
        if sign > 0:
            before = self.purchases.get(item["id"], {})
            if item.get("spent", 0) > before.get("spent", 0):
                self.spent_at[item["id"]] = self.writes
            self.purchases[item["id"]] = item
            self.by_charge[charge] = item
            self.touched_purchases.add(item["id"])
            if self.charge_ids[charge] > 1:
                self.negative.append(f"charge {charge} credited {self.charge_ids[charge]} times")
            if charge not in self.provider.charges:
                self.negative.append(f"purchase credited without an approved charge {charge}")
            taken, wallet, spent = (item.get(k, 0) for k in ("takenBack", "fromWallet", "spent"))
            if taken != wallet + spent or not 0 <= taken <= item["coins"]:
                self.negative.append(
                    f"purchase {item['id']}: taken back {taken} != from the wallet {wallet} + "
                    f"spent {spent}, or outside [0, {item['coins']}]"
                )
            for field in ("fromWallet", "spent", "covered", "held", "records"):
                self._check(f"purchase {item['id']}.{field}", item.get(field, 0))

    def _in_window(self, record: Item) -> None:
        """A purchase's coins paid only for what was bought after it and before they were
        found spent: a reversal outside that window takes from the wrong gift."""
        purchase = self.purchases.get(record["purchaseId"])
        paid = self.gifts.get(record["refId"]) or self.entries.get(record["refId"])
        if purchase is None or paid is None:
            return
        since = purchase.get("entryId", "tx_").split("_", 1)[1]
        until = purchase.get("walkFrom", "tx_~").split("_", 1)[1]
        if not since < paid[1] < until:
            self.negative.append(f"{record['id']}: reverses {record['refId']}, outside its window")

    def _reversal_counter(self, ref: str, item: Item, sign: int) -> None:
        self.ref_reversed[ref] += sign * item.get("reversedCoins", 0)
        if sign > 0:
            self.touched_refs.add(ref)
            if not 0 <= item.get("reversedCoins", 0) <= item.get("coins", 0):
                self.negative.append(f"{ref} reversed {item.get('reversedCoins')} coins of {item}")

    def _transfers(self, item: Item, sign: int) -> None:
        if sign > 0:
            ulid = item["id"].split("_", 1)[1]
            self.gifts[item["id"]] = (
                item["senderId"],
                ulid,
                item["coins"],
                item.get("reversedCoins", 0),
            )
        self._reversal_counter(item["id"], item, sign)
        self.sums["transfers"] += sign
        self.sums["gift_coins"] += sign * item["coins"]
        self.sums["gift_diamonds"] += sign * item["diamonds"]
        if item.get("streamId"):
            self.stream_transfers[item["streamId"]] += sign * item["coins"]
            self.ranking_transfers[(item["streamId"], item["senderId"])] += sign * item["coins"]
            self._touch("coinsReceived of stream", item["streamId"])
            self._touch("topGifters entry", (item["streamId"], item["senderId"]))
        else:
            self.video_transfers[item["videoId"]] += sign * item["coins"]
            self._touch("coinsReceived of video", item["videoId"])

    def _streams(self, item: Item, sign: int) -> None:
        if "#" in item["id"] and "coins" in item:
            self.stream_coins[item["id"].split("#")[0]] += sign * item["coins"]
            self._touch("coinsReceived of stream", item["id"].split("#")[0])

    def _videos(self, item: Item, sign: int) -> None:
        if "#" in item["id"]:
            self.video_coins[item["id"].split("#")[0]] += sign * item.get("coins", 0)
            self._touch("coinsReceived of video", item["id"].split("#")[0])

    def _rankings(self, item: Item, sign: int) -> None:
        stream, sender = item["id"].split("#", 1)
        self.ranking[(stream, sender)] += sign * item["coins"]
        self._touch("topGifters entry", (stream, sender))

    def _events(self, item: Item, sign: int) -> None:
        if "accountId" in item:  # a membership "<eventId>#<accountId>"
            if sign > 0 and item.get("coins"):
                self.entries[item["id"]] = (
                    item["accountId"],
                    self.entry_ulids.get(item["id"], _ulid_at(item["joinedAt"])),
                    item["coins"],
                    item.get("reversedCoins", 0),
                )
            self._reversal_counter(item["id"], item, sign)
            event = item["id"].split("#")[0]
            self.members[event] += sign
            self._touch("event participants", event)
            self.sums["memberships"] += sign
            self.sums["entries"] += sign * self.entry_coins[event]
        else:
            self.participants[item["id"]] += sign * item.get("participants", 0)
            self._touch("event participants", item["id"])
            self.entry_coins[item["id"]] = item["entryCoins"]

    def _withdrawals(self, item: Item, sign: int) -> None:
        if item["id"].startswith("daily#"):
            self.daily[item["id"]] += sign * item.get("cents", 0)
            self._touch("daily withdrawal total", item["id"])
            if sign > 0:
                self._check(item["id"], item.get("cents", 0))
            return
        self.sums["withdrawals"] += sign
        if sign > 0 and item["status"] == "PENDING":
            owed = self.accounts.get(item["accountId"], {}).get("owedDiamonds", 0)
            if owed > 0 and item["id"] not in self.withdrawals_seen:
                self.negative.append(f"withdrawal {item['id']} while {owed} diamonds are owed")
            self.withdrawals_seen.add(item["id"])
        if item["status"] in ("PENDING", "PAID"):
            self.sums["withdrawn_diamonds"] += sign * item["diamonds"]
            day_key = f"daily#{item['accountId']}#{item['day']}"
            self.daily_withdrawn[day_key] += sign * item["amount"]
            self._touch("daily withdrawal total", day_key)

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
        found += self._money_back()
        found += self._derived()
        s = self.sums
        entries = s["entries"]
        coins_out = s["gift_coins"] + entries
        taken = s["taken_from_wallets"]
        if s["wallet_coins"] != s["purchased_coins"] - taken - coins_out:
            found.append(
                f"coin conservation: wallets {s['wallet_coins']} != bought "
                f"{s['purchased_coins']} - taken back from wallets {taken} - spent {coins_out}"
            )
        earned = (
            s["gift_diamonds"]
            + entries
            + s["ledger:GIFT_REVERSED:diamonds"]
            + s["ledger:CLAWBACK:diamonds"]
        )
        if s["wallet_diamonds"] + s["withdrawn_diamonds"] != earned:
            found.append(
                f"diamond conservation: wallets {s['wallet_diamonds']} + withdrawn "
                f"{s['withdrawn_diamonds']} != earned {earned} (reversals and clawbacks included)"
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

    def _derived(self) -> list[str]:
        """Derived totals against their sources, for what the last operation touched: stream
        and video totals, rankings, participants, daily withdrawal totals."""
        found: list[str] = []
        for label, derived, source in (
            ("coinsReceived of stream", self.stream_coins, self.stream_transfers),
            ("coinsReceived of video", self.video_coins, self.video_transfers),
            ("topGifters entry", self.ranking, self.ranking_transfers),
            ("event participants", self.participants, self.members),
            ("daily withdrawal total", self.daily, self.daily_withdrawn),
        ):
            for key in self.touched_derived.pop(label, ()):
                if derived[key] != source[key]:
                    found.append(f"{label} {key}: {derived[key]} != {source[key]}")
        return found

    def _touch(self, label: str, key: Any) -> None:
        self.touched_derived.setdefault(label, set()).add(key)

    def _money_back(self) -> list[str]:
        """The bounds of money after the payment, for what the last operation touched."""
        found: list[str] = []
        for purchase_id in self.touched_purchases:
            purchase = self.purchases.get(purchase_id)
            if purchase is None:
                continue
            if self.record_coins[purchase_id] != purchase.get("covered", 0):
                found.append(
                    f"purchase {purchase_id} covers {purchase.get('covered', 0)} spent coins, its "
                    f"records {self.record_coins[purchase_id]}"
                )
            buyer = self.accounts.get(purchase["accountId"], {})
            restricted = purchase_id in (buyer.get("restrictedBy") or ())
            cleared = self.cleared_at.get(purchase["accountId"], -1)
            if purchase.get("spent", 0) > 0 and not restricted:
                if cleared < self.spent_at.get(purchase_id, 0):
                    found.append(
                        f"{purchase['accountId']} spent coins of {purchase_id} that were taken "
                        "back, and is not restricted"
                    )
            if restricted and purchase.get("spent", 0) <= 0:
                found.append(f"{purchase['accountId']} restricted by {purchase_id}, nothing spent")
        self.touched_purchases.clear()
        for ref in self.touched_refs:
            if self.ref_reversed[ref] != self.ref_records[ref]:
                found.append(
                    f"{ref}: {self.ref_reversed[ref]} coins reversed, records say "
                    f"{self.ref_records[ref]}"
                )
        self.touched_refs.clear()
        for creator in self.touched_creators:
            owed = self.accounts.get(creator, {}).get("owedDiamonds", 0)
            if owed != self.owed_records[creator] + self.clawback[creator]:
                found.append(
                    f"{creator} owes {owed} diamonds; records {self.owed_records[creator]}, "
                    f"CLAWBACK entries {self.clawback[creator]}"
                )
        self.touched_creators.clear()
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
            found += self.settled()
        return found

    def _unreversed(self, purchase: Item) -> list[str]:
        """The buyer's gifts and event entries made after the purchase and before its coins
        were found spent, not wholly reversed: what those coins could still have paid for."""
        buyer, since = purchase["accountId"], purchase.get("entryId", "tx_").split("_", 1)[1]
        until = purchase.get("walkFrom", "tx_").split("_", 1)[1]
        left = [
            gift
            for gift, (sender, ulid, coins, reversed_) in self.gifts.items()
            if sender == buyer and since < ulid < until and reversed_ < coins
        ]
        left += [
            entry
            for entry, (joiner, ulid, coins, reversed_) in self.entries.items()
            if joiner == buyer and since < ulid < until and reversed_ < coins
        ]
        return left

    def settled(self) -> list[str]:
        """Once every delivery was applied and every request answered: each purchase took back
        exactly what its charge's state implies, and each charge is credited or refunded."""
        found: list[str] = []
        provider = self.provider
        for charge, paid in provider.charges.items():
            purchase = self.by_charge.get(charge) if self.charge_ids[charge] else None
            back = provider.money_back(charge)
            if purchase is None:
                if back < paid.amount:
                    found.append(f"charge {charge} taken but never credited nor refunded")
                continue
            expected = -(-purchase["coins"] * back // paid.amount)
            problems = []
            if purchase.get("takenBack", 0) != expected:
                problems.append(f"took back {purchase.get('takenBack', 0)} coins, not {expected}")
            if purchase.get("refunded", 0) != back:
                problems.append(f"refunded {purchase.get('refunded', 0)}, processor {back}")
            status = "REFUNDED" if back >= paid.amount else "COMPLETED"
            if purchase["status"] != status or purchase.get("held", 0):
                problems.append(f"status {purchase['status']} held {purchase.get('held', 0)}")
            if purchase.get("covered", 0) != purchase.get("spent", 0) and not purchase.get(
                "walkDone"
            ):
                problems.append("spent coins not reversed, walk not done")
            elif purchase.get("covered", 0) < purchase.get("spent", 0):
                left = self._unreversed(purchase)
                if left:  # a loss is only what nothing was left to pay back
                    problems.append(f"spent coins counted as a loss while {left} are reversible")
            if problems:
                found.append(f"purchase {purchase['id']} of {charge}: {'; '.join(problems)}")
        return found


def _ulid_at(stamp: str) -> str:
    """The smallest ULID of a moment (an ISO time), to order it among ULIDs."""
    from datetime import datetime

    value = int(datetime.fromisoformat(stamp).timestamp() * 1000) << 80
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))
