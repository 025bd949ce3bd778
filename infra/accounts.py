"""Accounts table: one item per account, holding the profile and the wallet balances.

A gift recipient's account also has `shards`: its gift diamonds live in the earnings table
and are added to `diamonds` here when the wallet is read.

Key: id (the identity provider's `sub`). Balances change only inside transactions built by
the money operations (see `credit_action` / `debit_action`), never by read-then-write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from infra.dynamo import Dynamo, Item, counted
from infra.ids import iso, now
from infra.lru import Lru

TABLE = "accounts"


OWES_NOTHING = "(attribute_not_exists(owedDiamonds) OR owedDiamonds <= :zero)"


def is_restricted(account: Item | None) -> bool:
    return bool((account or {}).get("restrictedBy"))


NEW_ACCOUNT_DAYS = 7  # a review signal: gifts from accounts younger than this

# The payout account (resolvers/payouts.py) lives on the account item, so every read that
# already loads an account (me, the review queue's batched creators, a withdrawal request)
# has it for free: payoutAccountId (the processor's connected account), payoutStatus and
# payoutDue (its state and what the creator still owes it, as last read from the processor),
# payoutCheckedAt (when that read started, ms: a later read's state wins), payoutEnabledAt
# (first seen enabled: an account that was enabled and is no longer is RESTRICTED).
NOT_CONNECTED, ONBOARDING = "NOT_CONNECTED", "ONBOARDING"


def payout_status(account: Item | None) -> str:
    """The payout account's status as last read from the processor."""
    found = account or {}
    if not found.get("payoutAccountId"):
        return NOT_CONNECTED
    return str(found.get("payoutStatus") or ONBOARDING)


class AccountsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._since: Lru[str, str] = Lru(dynamo.settings.target_cache_size)

    async def is_new(self, account_id: str) -> bool:
        """Whether the account is younger than NEW_ACCOUNT_DAYS (its creation time, which
        never changes, is cached per process: one GetItem the first time an account is seen)."""
        since = self._since.get(account_id)
        if since is None:
            item = await self.get(account_id)
            since = (item or {}).get("createdAt") or iso(now())
            self._since.put(account_id, since)
        age = now() - datetime.fromisoformat(since)
        return age < timedelta(days=NEW_ACCOUNT_DAYS)

    async def get(self, account_id: str, consistent: bool = False) -> Item | None:
        return await self.dynamo.get(TABLE, {"id": account_id}, consistent=consistent)

    async def get_many(self, account_ids: Sequence[str]) -> dict[str, Item]:
        items = await self.dynamo.batch_get(TABLE, [{"id": i} for i in account_ids])
        return {item["id"]: item for item in items}

    async def create(self, account_id: str, display_name: str, birthdate: str | None) -> Item:
        """Create the account on first sight; return whichever item won a race."""
        item: dict[str, Any] = {
            "id": account_id,
            "displayName": display_name,
            "coins": 0,
            "diamonds": 0,
            "birthdate": birthdate,
            "createdAt": iso(now()),
        }
        existing = await self.dynamo.put_if_absent(TABLE, item, "id")
        return existing if existing else {k: v for k, v in item.items() if v is not None}

    async def set_birthdate(self, account_id: str, birthdate: str | None) -> None:
        if birthdate is None:
            await self.dynamo.update(TABLE, {"id": account_id}, "REMOVE birthdate")
        else:
            await self.dynamo.update(
                TABLE, {"id": account_id}, "SET birthdate = :b", values={":b": birthdate}
            )

    async def set_display_name(
        self, account_id: str, display_name: str, birthdate: str | None
    ) -> Item:
        """Rename the account in one UpdateItem, creating it if this is its first sight."""
        expression = (
            "SET displayName = :n, coins = if_not_exists(coins, :zero), "
            "diamonds = if_not_exists(diamonds, :zero), createdAt = if_not_exists(createdAt, :t)"
        )
        values: dict[str, Any] = {":n": display_name, ":zero": 0, ":t": iso(now())}
        if birthdate is not None:
            expression += ", birthdate = :b"
            values[":b"] = birthdate
        updated = await self.dynamo.update(TABLE, {"id": account_id}, expression, values=values)
        assert updated is not None  # unconditional
        return updated

    def credit_action(
        self,
        account_id: str,
        coins: int,
        diamonds: int,
        display_name: str,
        birthdate: str | None,
        shards: int | None = None,
    ) -> dict[str, Any]:
        """Add to the balances, creating the account if this is its first sight.

        `shards` marks the account as a gift recipient whose diamonds and ledger are spread
        over that many shards (infra/earnings.py, infra/ledger.py); it is set once.
        """
        expression = (
            "SET coins = if_not_exists(coins, :zero) + :c, "
            "diamonds = if_not_exists(diamonds, :zero) + :d, "
            "displayName = if_not_exists(displayName, :n), "
            "createdAt = if_not_exists(createdAt, :t)"
        )
        values: dict[str, Any] = {
            ":zero": 0,
            ":c": coins,
            ":d": diamonds,
            ":n": display_name,
            ":t": iso(now()),
        }
        if birthdate is not None:
            expression += ", birthdate = :b"
            values[":b"] = birthdate
        if shards is not None:
            expression += ", shards = if_not_exists(shards, :k)"
            values[":k"] = shards
        return self.dynamo.update_action(TABLE, {"id": account_id}, expression, values=values)

    def debit_action(
        self, account_id: str, coins: int, diamonds: int, owes_nothing: bool = False
    ) -> dict[str, Any]:
        """Take from the balances; the transaction is cancelled if either would go negative or
        the account is restricted (`restrictedBy`: the purchases holding it; see
        `is_restricted`), and with `owes_nothing` (a withdrawal) if it owes diamonds."""
        condition = "coins >= :c AND diamonds >= :d AND attribute_not_exists(restrictedBy)"
        values = {":c": coins, ":d": diamonds}
        if owes_nothing:
            condition += f" AND {OWES_NOTHING}"
            values[":zero"] = 0
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET coins = coins - :c, diamonds = diamonds - :d",
            condition=condition,
            values=values,
        )

    def take_back_action(
        self, account_id: str, coins: int, held: int = 0, restrict_for: str | None = None
    ) -> dict[str, Any]:
        """Coins taken back because the processor returned or lost a payment's money: `coins`
        from the wallet and `held` from those an admin's refund set aside, never below zero
        (a restriction does not stop it); with `restrict_for` (the purchase), the account is
        also restricted: coins it paid for had been spent."""
        sets, conditions = ["coins = coins - :c"], ["coins >= :c"]
        values: dict[str, Any] = {":c": coins}
        if held:
            sets.append("heldCoins = heldCoins - :h")
            conditions.append("heldCoins >= :h")
            values[":h"] = held
        expression = "SET " + ", ".join(sets)
        if restrict_for is not None:
            expression += " ADD restrictedBy :r"
            values[":r"] = {restrict_for}
        return self.dynamo.update_action(
            TABLE, {"id": account_id}, expression, " AND ".join(conditions), values=values
        )

    def give_back_action(self, account_id: str, coins: int, lift_for: str | None) -> dict[str, Any]:
        """Coins returned (a dispute won, a refund that failed); with `lift_for`, that
        purchase's restriction is lifted (others may still hold the account)."""
        expression, values = "SET coins = coins + :c", {":c": coins}
        if lift_for is not None:
            expression += " DELETE restrictedBy :r"
            values[":r"] = {lift_for}  # type: ignore[assignment]
        return self.dynamo.update_action(
            TABLE, {"id": account_id}, expression, "attribute_exists(id)", values=values
        )

    def uncovered_action(self, account_id: str, purchase_id: str, add: bool) -> dict[str, Any]:
        """The purchases whose spent coins had nothing left to reverse (a set)."""
        verb = "ADD" if add else "DELETE"
        return self.dynamo.update_action(
            TABLE, {"id": account_id}, f"{verb} uncovered :p", values={":p": {purchase_id}}
        )

    def owe_action(self, account_id: str, diamonds: int) -> dict[str, Any]:
        """Diamonds a reversal could not take back from pending ones (Earnings.owedDiamonds)."""
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET owedDiamonds = if_not_exists(owedDiamonds, :zero) + :d",
            values={":d": diamonds, ":zero": 0},
        )

    def owed_action(
        self, account_id: str, before: int, after: int, credit: int = 0, debit: int = 0
    ) -> dict[str, Any]:
        """Owed diamonds from `before` (as read) to `after`; `credit` diamonds returned to the
        balance (a repaid debt whose reversal was undone), `debit` diamonds taken from it (a
        repayment drawing on the account item)."""
        expression = "SET owedDiamonds = :after"
        values: dict[str, Any] = {":before": before, ":after": after}
        condition = counted("owedDiamonds", before, ":before")
        if credit or debit:
            expression += ", diamonds = diamonds + :delta"
            values[":delta"] = credit - debit
        if debit:
            condition += " AND diamonds >= :debit"
            values[":debit"] = debit
        return self.dynamo.update_action(
            TABLE, {"id": account_id}, expression, condition, values=values
        )

    def unrestricted_action(self, account_id: str, owes_nothing: bool = False) -> dict[str, Any]:
        """A condition check: the account is not restricted (and, for a withdrawal, owes no
        diamonds: what is owed is repaid before anything is withdrawn)."""
        condition = "attribute_not_exists(restrictedBy)" + (
            f" AND {OWES_NOTHING}" if owes_nothing else ""
        )
        values = {":zero": 0} if owes_nothing else None
        return self.dynamo.condition_action(TABLE, {"id": account_id}, condition, values=values)

    async def clear_restriction(self, account_id: str, admin: str, at: str) -> Item | None:
        """An admin lifts the restrictions the account has now (those read: a retry of the
        same request, or one that lands late, never lifts a restriction set after it); None
        when there is no such account."""
        account = await self.get(account_id, consistent=True)
        if account is None:
            return None
        holding = set(account.get("restrictedBy") or ())
        expression = "SET restrictionClearedBy = :a, restrictionClearedAt = :t"
        values: dict[str, Any] = {":a": admin, ":t": at}
        if holding:
            expression += " DELETE restrictedBy :r"
            values[":r"] = holding
        return await self.dynamo.update(
            TABLE, {"id": account_id}, expression, values=values, condition="attribute_exists(id)"
        )

    def add_diamonds_action(self, account_id: str, diamonds: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET diamonds = diamonds + :d",
            condition="attribute_exists(id)",
            values={":d": diamonds},
        )

    # A refund holds the purchase's coins while the payment provider refunds the charge:
    # held coins still count in the wallet (and the ledger) but cannot be spent.
    def hold_coins_action(self, account_id: str, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET coins = coins - :c, heldCoins = if_not_exists(heldCoins, :zero) + :c",
            condition="coins >= :c",
            values={":c": coins, ":zero": 0},
        )

    def release_held_action(self, account_id: str, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET coins = coins + :c, heldCoins = heldCoins - :c",
            condition="heldCoins >= :c",
            values={":c": coins},
        )

    def take_held_action(self, account_id: str, coins: int) -> dict[str, Any]:
        return self.dynamo.update_action(
            TABLE,
            {"id": account_id},
            "SET heldCoins = heldCoins - :c",
            condition="heldCoins >= :c",
            values={":c": coins},
        )

    # --- the payout account ------------------------------------------------------------
    async def link_payout_account(self, account_id: str, connected_id: str, at: str) -> Item | None:
        """Record the creator's connected account, once: the item after (whose
        payoutAccountId is the one recorded first), or None when there is no such account."""
        return await self.dynamo.update(
            TABLE,
            {"id": account_id},
            "SET payoutAccountId = if_not_exists(payoutAccountId, :c), "
            "payoutStatus = if_not_exists(payoutStatus, :onboarding), "
            "payoutLinkedAt = if_not_exists(payoutLinkedAt, :t)",
            condition="attribute_exists(id)",
            values={":c": connected_id, ":onboarding": ONBOARDING, ":t": at},
        )

    async def set_payout_state(
        self,
        account_id: str,
        connected_id: str,
        status: str,
        due: list[str],
        checked_at: int,
        was_enabled: bool,
    ) -> Item | None:
        """The processor's view of the connected account as read from `checked_at` (ms); None
        when a read that started later was stored first (it wins), when the account has another
        connected account, or when it was enabled since `was_enabled` was decided."""
        expression = "SET payoutStatus = :s, payoutDue = :d, payoutCheckedAt = :t"
        values: dict[str, Any] = {":s": status, ":d": due, ":t": checked_at, ":c": connected_id}
        condition = (
            "payoutAccountId = :c AND (attribute_not_exists(payoutCheckedAt) "
            "OR payoutCheckedAt < :t)"
        )
        if status == "ENABLED":
            expression += ", payoutEnabledAt = if_not_exists(payoutEnabledAt, :t)"
        if not was_enabled:
            condition += " AND attribute_not_exists(payoutEnabledAt)"
        return await self.dynamo.update(
            TABLE, {"id": account_id}, expression, condition=condition, values=values
        )
