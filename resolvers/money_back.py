"""Money after the payment: what a purchase's coins are taken back for follows what the payment
processor (or store) says happened to its money, whatever its notifications said, in whatever
order they came, however often.

The truth is the charge as it is now (`infra.payments.ChargeState`): its refunds (a pending one
counts until it fails) and its disputes (none for an inquiry or a dispute won; a lost one its
amount; an open one what was withdrawn for it), never past the charge's amount. That money
implies coins: `ceil(purchase coins x money back / amount)`. `converge` moves the purchase from
what it has taken back to what the truth implies, in either direction, in conditional,
resumable steps; each step is one transaction that also moves the purchase's step counter
(conditioned on the count read), so concurrent runners never land one step twice.

- **Taking** (`_take`): from the coins an admin's refund holds for this purchase first, then the
  wallet; what the wallet lacks was spent (`spent`), and the buyer is restricted
  (`restrictedBy` gets the purchase id): it cannot buy, gift, join or withdraw.
- **Giving back** (`_give`): from the spent coins first (their creators' diamonds are restored;
  the restriction goes when none are left), then to the wallet.
- **Reversing** (`_reverse`): for the spent coins not yet `covered`, the creators' diamonds that
  the buyer's gifts and event entries paid for, newest first, found by walking the buyer's own
  ledger partition (strongly consistent, from now back to the purchase's PURCHASE entry: its
  coins cannot have paid for anything older) and reading each gift or entry itself. A gift's
  coins are reversed at most once across every purchase (`reversedCoins` on the transfer or
  membership, conditioned on the value read); its diamonds in proportion, rounded down.
  Diamonds still pending (inside the earnings hold) are taken from their bucket (a
  GIFT_REVERSED entry); those already matured or withdrawn become owed
  (`accounts.owedDiamonds`, Earnings.owedDiamonds), repaid from available diamonds at once
  where there are some (`repay`: CLAWBACK entries) and otherwise before the creator's next
  withdrawal. What is never repaid is the platform's loss (`livecoins audit` reports it).
  Each reversal is pushed on the purchase's stack of records (`rev#<purchaseId>#<n>`).
- **Restoring** (`_restore`): when spent coins come back, the top records are popped and their
  diamonds returned: to the bucket they came from while it is pending, else to the available
  diamonds; owed diamonds are forgiven (or, where already repaid, returned: CLAWBACK +).

Runners: every delivery (and an admin's refund) first bumps the purchase's generation `gen`,
then reads the truth, then converges; every step is conditioned on its generation. A runner
that sees a newer generation stops: that runner read the processor later, so its truth covers
this one's; this one answers once that runner (or a later one) has `settled`, and otherwise
asks to be retried (TRY_AGAIN, HTTP 503 to a webhook). A crash leaves the purchase resumable by
the next delivery or retry: nothing is lost, nothing is applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from infra import runtime
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.earnings import BUCKET_PREFIX, ShardBalance, bucket_seconds, plan_debits
from infra.ids import iso, new_id, now
from infra.services import Services
from resolvers.errors import TryAgain

logger = logging.getLogger("livecoins")
PAGE = 25  # ledger entries read per page of the walk
SPENDING = ("GIFT_SENT", "EVENT_ENTRY")


@dataclass(frozen=True)
class Truth:
    """What the processor (or store) says happened to a purchase's money, now."""

    amount: int  # what was paid, in minor units
    refunded: int  # returned by refunds
    disputed: int  # lost to disputes (withdrawn, or lost)

    @property
    def money_back(self) -> int:
        return min(self.amount, self.refunded + self.disputed)

    def coins(self, purchase: Item) -> int:
        """The coins that money implies: in proportion, rounded up."""
        if self.amount <= 0:
            return 0
        return -(-purchase["coins"] * self.money_back // self.amount)


Observe = Callable[[Item], Awaitable[Truth]]


async def converge(services: Services, purchase_id: str, observe: Observe) -> Item:
    """Bring the purchase to what the processor says now; returns it as settled."""
    purchase = await services.purchases.bump(purchase_id)
    if purchase is None:
        raise LookupError(f"no purchase {purchase_id}")
    gen = purchase["gen"]
    truth = await observe(purchase)
    deadline, attempt, walk = services.dynamo.deadline(), 0, Walk()
    while True:
        if purchase.get("gen", 0) != gen:
            # a later runner read the processor after us: its truth covers ours
            if purchase.get("settled", 0) >= gen:
                return purchase
        else:
            try:
                moved = await _advance(services, purchase, truth, walk)
            except TransactionCancelled as cancelled:
                if not any(cancelled.failed(i) for i in range(len(cancelled.reasons))):
                    raise
                moved, walk = None, Walk()  # something moved under the step: read again
            else:
                if isinstance(moved, dict):  # the step landed: the purchase as it now is
                    attempt, purchase = 0, moved
                    continue
                if moved is False:  # nothing left to do
                    settled = await services.purchases.settle(
                        purchase, _status(purchase, truth), truth.money_back, iso(now())
                    )
                    if settled is not None:
                        _log(purchase, settled, truth)
                        if settled.get("freed"):  # this purchase gave gifts back: who else
                            await _rewalk(services, settled, observe)  # may take them now?
                        return settled
        try:
            await backoff(attempt, deadline, "money back")
        except Unavailable as error:
            raise TryAgain(
                "The purchase's refund or dispute is still being applied; retry."
            ) from error
        attempt += 1
        purchase = await _read(services, purchase_id)


async def _read(services: Services, purchase_id: str) -> Item:
    found = await services.purchases.get(purchase_id)
    if found is None:
        raise RuntimeError(f"purchase {purchase_id} vanished")
    return found


def _status(purchase: Item, truth: Truth) -> str:
    if truth.money_back >= truth.amount > 0:
        return "REFUNDED"
    if purchase["status"] == "REFUNDING" and purchase.get("held", 0) > 0:
        return "REFUNDING"  # an admin's refund is still asking the processor
    return "COMPLETED"


def _log(before: Item, after: Item, truth: Truth) -> None:
    if before.get("refunded", 0) != truth.money_back or before["status"] != after["status"]:
        logger.warning(
            "purchase converged to the processor's state",
            extra={
                "purchase": after["id"],
                "refunded": truth.money_back,
                "takenBack": after.get("takenBack", 0),
                "spent": after.get("spent", 0),
                "status": after["status"],
            },
        )


@dataclass
class Walk:
    """The page of the buyer's ledger a convergence is walking through, so that reversing a
    page of gifts reads it once (each step's conditions still check what it changes)."""

    after: str | None = None  # the walk position the page was read after
    entries: list[Item] = field(default_factory=list)
    paid: dict[str, Paid] = field(default_factory=dict)
    more: bool = True


Step = Item | bool | None


def _stepped(purchase: Item, changes: dict[str, Any]) -> Item:
    """The purchase after a step that landed with `changes`."""
    return {**purchase, **changes, "step": purchase.get("step", 0) + 1}


async def _advance(services: Services, purchase: Item, truth: Truth, walk: Walk) -> Step:
    """One step toward the truth: the purchase as it is after a step that landed, False when
    there is nothing left to do, None when it could not land now (read again and retry)."""
    target = truth.coins(purchase)
    taken = purchase.get("takenBack", 0)
    if taken < target:
        return await _take(services, purchase, truth, target - taken)
    if taken > target:
        return await _give(services, purchase, truth, taken - target)
    spent, covered = purchase.get("spent", 0), purchase.get("covered", 0)
    if covered > spent:
        return await _restore(services, purchase, covered - spent)
    if covered < spent and not purchase.get("walkDone"):
        return await _reverse(services, purchase, spent - covered, walk)
    return False


def _kind(purchase: Item, truth: Truth) -> str:
    """The ledger entry's kind: CHARGEBACK when a dispute moved the money, else REFUND."""
    return "CHARGEBACK" if truth.disputed != purchase.get("disputed", 0) else "REFUND"


async def _take(services: Services, purchase: Item, truth: Truth, coins: int) -> Step:
    buyer = purchase["accountId"]
    account = await services.accounts.get(buyer, consistent=True) or {}
    held = min(coins, purchase.get("held", 0))
    wallet = min(coins - held, max(0, account.get("coins", 0)))
    spent = coins - held - wallet
    changes: dict[str, Any] = {
        "takenBack": purchase.get("takenBack", 0) + coins,
        "fromWallet": purchase.get("fromWallet", 0) + held + wallet,
        "spent": purchase.get("spent", 0) + spent,
        "held": purchase.get("held", 0) - held,
        "disputed": truth.disputed,
    }
    if spent:
        # the coins were spent before now: walk again from this moment back (each gift counts
        # its own reversals, so one walked before is not reversed twice)
        now_id = new_id("tx")
        changes.update(walk=now_id, walkFrom=now_id, walkDone=False)
    actions = [
        services.purchases.step_action(purchase, changes),
        services.accounts.take_back_action(buyer, wallet, held, purchase["id"] if spent else None),
    ]
    if held + wallet:
        actions.append(_entry(services, buyer, _kind(purchase, truth), -(held + wallet), purchase))
    await services.dynamo.transact(actions)
    return _stepped(purchase, changes)


async def _give(services: Services, purchase: Item, truth: Truth, coins: int) -> Step:
    spent = purchase.get("spent", 0)
    unspent = min(coins, spent)  # spent coins first: their creators get their diamonds back
    wallet = coins - unspent
    lift = spent > 0 and spent - unspent == 0
    changes = {
        "takenBack": purchase.get("takenBack", 0) - coins,
        "fromWallet": purchase.get("fromWallet", 0) - wallet,
        "spent": spent - unspent,
        "disputed": truth.disputed,
    }
    buyer = purchase["accountId"]
    actions = [services.purchases.step_action(purchase, changes)]
    if wallet or lift:
        actions.append(
            services.accounts.give_back_action(buyer, wallet, purchase["id"] if lift else None)
        )
    if wallet:
        actions.append(_entry(services, buyer, _kind(purchase, truth), wallet, purchase))
    await services.dynamo.transact(actions)
    return _stepped(purchase, changes)


def _entry(services: Services, buyer: str, kind: str, coins: int, purchase: Item) -> Any:
    return services.ledger.put_action(
        entry_id=new_id("tx"),
        account_id=buyer,
        kind=kind,
        coins=coins,
        diamonds=0,
        reference_id=purchase["id"],
        created_at=iso(now()),
    )


# --- reversing what spent coins paid for ----------------------------------------------------


@dataclass(frozen=True)
class Paid:
    """A gift or event entry the buyer paid for, as read from its own item."""

    kind: str  # "gift" | "entry"
    ref: str  # the transfer id, or the membership id "<eventId>#<buyer>"
    creator: str
    coins: int
    diamonds: int
    shard: int
    bucket: str | None  # None: unknown (an entry from before memberships kept it)
    reversed: int  # its coins already reversed, by any purchase


def _pending(services: Services, bucket: str | None) -> bool:
    """Whether a bucket's diamonds are still inside the hold (never matured, never
    withdrawn), at this moment."""
    if not bucket or not bucket.startswith(BUCKET_PREFIX):
        return False
    hold = services.settings.earnings_hold_seconds
    start = int(bucket[len(BUCKET_PREFIX) :])
    return start + bucket_seconds(hold) + hold > runtime.current().time()


async def _reverse(services: Services, purchase: Item, wanted: int, walk: Walk) -> Step:
    """Cover up to `wanted` spent coins with the next gift or entry of the walk."""
    position = purchase.get("walk") or None
    if walk.after != position or not walk.entries:
        walk.entries, walk.more = await services.ledger.spending(
            purchase["accountId"], after=position, since=_boundary(purchase), limit=PAGE
        )
        walk.paid = await _paid_for(services, purchase["accountId"], walk.entries)
        walk.after = position
    cursor = purchase.get("walk", "")
    for index, entry in enumerate(walk.entries):
        found = walk.paid.get(entry["entryId"])
        if found is None or found.coins - found.reversed <= 0:
            cursor = entry["entryId"]  # nothing (left) to reverse here: move past it
            continue
        moved = await _reverse_one(services, purchase, found, wanted, cursor, entry["entryId"])
        if isinstance(moved, dict):
            coins = moved.get("covered", 0) - purchase.get("covered", 0)
            walk.paid[entry["entryId"]] = replace(found, reversed=found.reversed + coins)
            walk.after = moved.get("walk") or None
            done = found.coins - found.reversed - coins <= 0
            walk.entries = walk.entries[index + 1 :] if done else walk.entries[index:]
        return moved
    changes: dict[str, Any] = {"walk": cursor}
    actions = [services.purchases.step_action(purchase, changes)]
    if not walk.more:
        changes["walkDone"] = True
        actions = [
            services.purchases.step_action(purchase, changes),
            # remembered on the buyer: a gift given back by another of its purchases later
            # may pay for these coins after all (`_rewalk`)
            services.accounts.uncovered_action(purchase["accountId"], purchase["id"], True),
        ]
        logger.warning(
            "spent coins with nothing left to reverse: the platform's loss",
            extra={"purchase": purchase["id"], "uncovered": wanted},
        )
    await services.dynamo.transact(actions)
    walk.entries = []
    return _stepped(purchase, changes)


def _boundary(purchase: Item) -> str:
    """The purchase's own PURCHASE entry: its coins paid for nothing older."""
    return str(purchase.get("entryId") or "")


async def _paid_for(services: Services, buyer: str, entries: list[Item]) -> dict[str, Paid]:
    """What each GIFT_SENT / EVENT_ENTRY entry paid for, read from the gift or membership
    itself (strongly consistent: never decided from a lagging index)."""
    gifts = [e for e in entries if e["kind"] == "GIFT_SENT"]
    joins = [e for e in entries if e["kind"] == "EVENT_ENTRY"]
    found: dict[str, Paid] = {}
    if gifts:
        transfers = await services.transfers.get_many([e["referenceId"] for e in gifts])
        for entry in gifts:
            t = transfers.get(entry["referenceId"])
            if t is not None and t.get("coins", 0) > 0:
                found[entry["entryId"]] = Paid(
                    "gift",
                    t["id"],
                    t["recipientId"],
                    t["coins"],
                    t["diamonds"],
                    t.get("shard", 0),
                    t.get("bucket"),
                    t.get("reversedCoins", 0),
                )
    if joins:
        keys = [f"{e['referenceId']}#{buyer}" for e in joins]
        members = await services.events.members(keys)
        missing = {k.split("#")[0] for k in keys if "hostId" not in members.get(k, {"hostId": 1})}
        events = {e: await services.events.get(e, consistent=True) for e in missing}
        for entry, key in zip(joins, keys, strict=True):
            m = members.get(key)
            if m is None:
                continue
            event = events.get(entry["referenceId"]) or {}
            host = m.get("hostId") or event.get("hostId")
            coins = m.get("coins") or event.get("entryCoins") or 0
            if host and coins > 0:
                found[entry["entryId"]] = Paid(
                    "entry",
                    key,
                    host,
                    coins,
                    int(m.get("diamonds") or coins),
                    m.get("shard", 0),
                    m.get("bucket"),
                    m.get("reversedCoins", 0),
                )
    return found


async def _reverse_one(
    services: Services, purchase: Item, paid: Paid, wanted: int, walk_before: str, entry_id: str
) -> Step:
    left = paid.coins - paid.reversed
    coins = min(left, wanted)
    diamonds = paid.diamonds * coins // paid.coins
    n = purchase.get("records", 0)
    # past this gift only when all of it is reversed; else a later walk may take the rest
    walk = entry_id if coins == left else walk_before
    owed_path = not _pending(services, paid.bucket)
    changes = {"covered": purchase.get("covered", 0) + coins, "records": n + 1, "walk": walk}
    for owed in (owed_path, True):
        record = {
            "kind": paid.kind,
            "refId": paid.ref,
            "creatorId": paid.creator,
            "shard": paid.shard,
            "bucket": paid.bucket or "",
            "unitCoins": paid.coins,
            "unitDiamonds": paid.diamonds,
            "coins": coins,
            "diamonds": diamonds,
            "owed": diamonds if owed else 0,
            "at": iso(now()),
        }
        actions = [
            services.purchases.step_action(purchase, changes),
            services.purchases.push_record_action(purchase["id"], n, record),
            _reversed_action(services, paid, paid.reversed, paid.reversed + coins),
        ]
        if diamonds and owed:
            actions.append(services.accounts.owe_action(paid.creator, diamonds))
        elif diamonds:
            actions += [
                services.earnings.reverse_action(
                    paid.creator, paid.shard, paid.bucket or "diamonds", diamonds
                ),
                services.ledger.put_action(
                    entry_id=new_id("tx"),
                    account_id=paid.creator,
                    kind="GIFT_REVERSED",
                    coins=0,
                    diamonds=-diamonds,
                    reference_id=paid.ref.split("#")[0],
                    created_at=iso(now()),
                    shard=paid.shard,
                ),
            ]
        try:
            await services.dynamo.transact(actions)
        except TransactionCancelled as cancelled:
            if not owed and len(actions) > 3 and cancelled.failed(3):
                continue  # the bucket matured (folded, perhaps withdrawn): owed instead
            raise
        if diamonds and owed:
            await repay(services, paid.creator)
        return _stepped(purchase, changes)
    return None


def _reversed_action(services: Services, paid: Paid, before: int, after: int) -> Any:
    if paid.kind == "gift":
        return services.transfers.reversed_action(paid.ref, before, after)
    return services.events.reversed_action(paid.ref, before, after)


async def _restore(services: Services, purchase: Item, coins: int) -> Step:
    """Give back the top reversal record's diamonds for up to `coins` spent coins."""
    n = purchase.get("records", 0) - 1
    if n < 0:
        raise RuntimeError(f"purchase {purchase['id']} covers coins with no reversal record")
    # written by the step that counted it: visible to reads a moment later at most
    record = await services.dynamo.committed(
        lambda: services.purchases.record(purchase["id"], n), "a reversal record"
    )
    back = min(record["coins"], coins)
    keep = record["coins"] - back
    keep_diamonds = record["unitDiamonds"] * keep // record["unitCoins"]
    diamonds = record["diamonds"] - keep_diamonds
    forgiven = min(record.get("owed", 0), diamonds)
    returned = diamonds - forgiven
    kind, ref = record["kind"], record["refId"]
    item = await _ref_item(services, kind, ref)
    reversed_now = (item or {}).get("reversedCoins", 0)
    paid = Paid(
        kind,
        ref,
        record["creatorId"],
        record["unitCoins"],
        record["unitDiamonds"],
        record["shard"],
        record["bucket"] or None,
        reversed_now,
    )
    # `freed`: this purchase gave a gift back; whichever runner settles it next looks for the
    # buyer's purchases that may take it now (`_rewalk`)
    changes: dict[str, Any] = {"covered": purchase.get("covered", 0) - back, "freed": True}
    if keep == 0:
        changes["records"] = n
    left = (
        None
        if keep == 0
        else {"coins": keep, "diamonds": keep_diamonds, "owed": record.get("owed", 0) - forgiven}
    )
    actions = [
        services.purchases.step_action(purchase, changes),
        services.purchases.pop_record_action(purchase["id"], n, record, left),
        _reversed_action(services, paid, reversed_now, reversed_now - back),
    ]
    creator, shard = record["creatorId"], record["shard"]
    if returned:
        bucket = record["bucket"] if _pending(services, record["bucket"]) else "diamonds"
        actions += [
            services.earnings.restore_action(creator, shard, bucket, returned),
            services.ledger.put_action(
                entry_id=new_id("tx"),
                account_id=creator,
                kind="GIFT_REVERSED",
                coins=0,
                diamonds=returned,
                reference_id=ref.split("#")[0],
                created_at=iso(now()),
                shard=shard,
            ),
        ]
    if forgiven:
        account = await services.accounts.get(creator, consistent=True) or {}
        owed = account.get("owedDiamonds", 0)
        repaid = max(0, forgiven - owed)  # already repaid: those diamonds come back
        actions.append(
            services.accounts.owed_action(creator, owed, owed - (forgiven - repaid), repaid)
        )
        if repaid:
            actions.append(
                services.ledger.put_action(
                    entry_id=new_id("tx"),
                    account_id=creator,
                    kind="CLAWBACK",
                    coins=0,
                    diamonds=repaid,
                    reference_id=ref.split("#")[0],
                    created_at=iso(now()),
                )
            )
    await services.dynamo.transact(actions)
    return _stepped(purchase, changes)


async def _rewalk(services: Services, purchase: Item, observe: Observe) -> None:
    """Gifts this purchase gave back may pay for another purchase's spent coins that were
    counted as a loss (the buyer's `uncovered`): those walk again, and converge."""
    account = await services.accounts.get(purchase["accountId"], consistent=True) or {}
    for other in sorted(set(account.get("uncovered") or ()) - {purchase["id"]}):
        found = await services.purchases.get(other)
        if found is not None and found.get("covered", 0) < found.get("spent", 0):
            await services.purchases.rewalk(found)
            found = await converge(services, other, observe)
        if found is None or found.get("covered", 0) >= found.get("spent", 0):
            await services.dynamo.transact(
                [services.accounts.uncovered_action(purchase["accountId"], other, False)]
            )
    await services.purchases.unflag(purchase["id"], "freed")


async def _ref_item(services: Services, kind: str, ref: str) -> Item | None:
    if kind == "gift":
        return await services.transfers.get(ref)
    return (await services.events.members([ref])).get(ref)


# --- owed diamonds ----------------------------------------------------------------------------


async def repay(services: Services, creator: str, attempts: int = 3) -> int:
    """Repay what the creator owes from its available diamonds, as far as they go (CLAWBACK);
    returns what is still owed. Best effort here (a withdrawal repays first anyway)."""
    owed = 0
    for attempt in range(attempts):
        account = await services.accounts.get(creator, consistent=True) or {"id": creator}
        shards = await _balances(services, account)
        actions = repay_actions(services, account, shards)
        owed = account.get("owedDiamonds", 0)
        if not actions:
            return owed
        try:
            await services.dynamo.transact(actions)
            return await _owed(services, creator)
        except TransactionCancelled:
            if attempt + 1 == attempts:
                break
        except Unavailable:
            break
    return owed


async def _owed(services: Services, creator: str) -> int:
    account = await services.accounts.get(creator, consistent=True) or {}
    return int(account.get("owedDiamonds", 0))


async def _balances(services: Services, account: Item) -> list[ShardBalance]:
    shards = account.get("shards") or 0
    if not shards:
        return []
    return await services.earnings.balances(
        account["id"],
        shards,
        services.settings.earnings_hold_seconds,
        runtime.current().time(),
        consistent=True,
    )


def repay_actions(services: Services, account: Item, shards: list[ShardBalance]) -> list[Any]:
    """The transaction repaying owed diamonds from available ones (as read), or [] when
    nothing is owed or nothing is available. Each debit is conditioned on what was read."""
    owed = account.get("owedDiamonds", 0)
    available = account.get("diamonds", 0) + sum(s.available for s in shards)
    amount = min(owed, available)
    if amount <= 0:
        return []
    creator = account["id"]
    plan = plan_debits(account.get("diamonds", 0), shards, amount, runtime.current())
    repaid = sum(take for _, take in plan)
    own = sum(take for source, take in plan if source is None)
    actions: list[Any] = [services.accounts.owed_action(creator, owed, owed - repaid, debit=own)]
    actions += [
        services.earnings.debit_action(creator, source, take, shards[source].matured)
        for source, take in plan
        if source is not None
    ]
    actions.append(
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=creator,
            kind="CLAWBACK",
            coins=0,
            diamonds=-repaid,
            reference_id=creator,
            created_at=iso(now()),
        )
    )
    return actions
