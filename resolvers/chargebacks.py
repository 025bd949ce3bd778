"""What the payment processor does to a purchase after the fact: a refund made in its
dashboard, a chargeback (dispute) opened and closed. Applied from its webhooks
(handlers/webhooks.py), each exactly once whatever the deliveries' duplicates or order.

A *case* (infra/purchases.py: "case#<id>") is one such event against one purchase:
1. Open (one transaction): take the purchase's coins back from the buyer's wallet as far as
   they go (a REFUND or CHARGEBACK entry), count them on the purchase, and if some were
   already spent, restrict the buyer (`restrictedBy` gets the case id). A refund at the
   processor cannot be refused: the money is gone whatever the wallet holds.
2. Reverse, step by step (one transaction each, resumable: the case counts its steps and a
   step lands only on the count it read): for the spent coins, the pending diamonds that the
   buyer's gifts earned creators during the hold period, newest gift first, up to the value
   of the spent coins, never below zero and never from diamonds that have matured (and may
   have been withdrawn). Each step: the creator's bucket, a GIFT_REVERSED entry, the case's
   progress, and a record of the reversal (to restore it).
3. A dispute closed as won: the coins taken back return (a CHARGEBACK entry, positive), the
   restriction is lifted if nothing else holds it, and the reversed diamonds go back, step by
   step. Lost: nothing more; an admin may clear the restriction.

A case opened from a later delivery than its close (out of order) sees the closed case and
does nothing. Every step checks what it changes, so concurrent deliveries cannot double it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from infra import runtime
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.ids import iso, new_id, now
from infra.services import Services
from resolvers.errors import TryAgain

logger = logging.getLogger("livecoins")
OPEN, WON, LOST = "open", "won", "lost"
END = "end"  # the walk through the buyer's gifts is over
CHUNK = 100  # reversals recorded per case item
PAGE = 25  # a sender's gifts read per step of the walk


async def open_case(
    services: Services, case_id: str, purchase: Item, coins: int, kind: str
) -> Item | None:
    """Take `coins` of `purchase` back (kind REFUND or CHARGEBACK), restricting the buyer for
    what was spent; then reverse. Returns the case (None if the purchase has no coins left to
    take back); a case that exists already (a duplicate or a close seen first) is left as is."""
    existing = await services.purchases.case(case_id)
    if existing is not None:
        if existing["status"] == OPEN:
            await reverse(services, existing)
        return existing
    deadline, attempt = services.dynamo.deadline(), 0
    buyer = purchase["accountId"]
    while True:
        latest = await services.purchases.get(purchase["id"]) or purchase
        if latest["status"] == "REFUNDING":  # an admin's refund holds its coins: let it settle
            raise TryAgain("A refund of this purchase is in progress; the event is retried.")
        account = await services.accounts.get(buyer, consistent=True) or {}
        taken_before = latest.get("takenBack", 0)
        if latest["status"] == "REFUNDED":
            taken_before = purchase["coins"]  # all its coins are back already
        coins = min(coins, purchase["coins"] - taken_before)
        if coins <= 0:
            return None
        take = min(coins, account.get("coins", 0))
        spent = coins - take
        stamp = iso(now())
        case = {
            "caseId": case_id,
            "kind": kind,
            "purchaseId": purchase["id"],
            "buyerId": buyer,
            "coinsTaken": take,
            "spentCoins": spent,
            "left": spent,  # coins whose creators' diamonds are still to reverse
            "reversed": 0,  # diamonds reversed
            "reversals": 0,  # reversal steps done (records in "case#<id>#<nnn>")
            "walk": "",  # how far the walk through the buyer's gifts got (a cursor, or END)
            "status": OPEN,
            "step": 0,
            "chunks": 0,
            "since": int(runtime.current().time()) - services.settings.earnings_hold_seconds,
            "openedAt": stamp,
        }
        actions = [
            services.purchases.open_case_action(case),
            services.purchases.take_back_action(purchase["id"], taken_before, coins),
        ]
        actions.append(services.accounts.take_back_action(buyer, take, case_id if spent else None))
        if take:
            actions += [
                services.ledger.put_action(
                    entry_id=new_id("tx"),
                    account_id=buyer,
                    kind=kind,
                    coins=-take,
                    diamonds=0,
                    reference_id=purchase["id"],
                    created_at=stamp,
                ),
            ]
        try:
            await services.dynamo.transact(actions)
            break
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):  # opened (or closed) concurrently
                found = await services.purchases.case(case_id)
                if found is not None and found["status"] == OPEN:
                    await reverse(services, found)
                return found
        # the wallet or the purchase moved under us (a gift, another case): read again
        try:
            await backoff(attempt, deadline, "chargeback")
        except Unavailable as error:
            raise TryAgain(
                "The buyer's balance kept changing; the event will be retried."
            ) from error
        attempt += 1
    logger.warning(
        "coins taken back",
        extra={
            "case": case_id,
            "kind": kind,
            "purchase": purchase["id"],
            "taken": take,
            "spent": spent,
            "restricted": bool(spent),
        },
    )
    stored = {**case, "id": f"case#{case_id}"}
    await reverse(services, stored)
    return stored


async def reverse(services: Services, case: Item) -> Item:
    """Reverse, step by step, creators' pending diamonds for the case's spent coins."""
    while case["status"] == OPEN and case["left"] > 0 and case.get("walk") != END:
        after = case.get("walk") or None
        page, more = await services.transfers.by_sender(case["buyerId"], PAGE, after)
        if not page:
            case = await _step(services, case, {"walk": END}, [])
            break
        for transfer in page:
            case = await _reverse_one(services, case, transfer)
            if case["status"] != OPEN or case["left"] <= 0 or case.get("walk") == END:
                break
        if not more and case.get("walk") != END and case["status"] == OPEN:
            case = await _step(services, case, {"walk": END}, [])
    return case


async def _reverse_one(services: Services, case: Item, transfer: Item) -> Item:
    """One step: reverse what this gift earned its creator (while it is pending), or just move
    past it. Returns the case as it is after the step."""
    if _epoch(transfer.get("createdAt", "")) < case["since"]:
        return await _step(services, case, {"walk": END}, [])  # older than the hold: done
    walk = services.transfers.cursor(transfer)
    use = min(transfer["coins"], case["left"])
    diamonds = transfer["diamonds"] * use // transfer["coins"]
    bucket = transfer.get("bucket", "diamonds")
    if diamonds <= 0 or bucket == "diamonds":  # nothing pending (no hold when it was sent)
        return await _step(services, case, {"walk": walk}, [])
    chunk = case["reversals"] // CHUNK
    entry = {
        "transferId": transfer["id"],
        "creatorId": transfer["recipientId"],
        "shard": transfer["shard"],
        "bucket": bucket,
        "diamonds": diamonds,
    }
    changes = {
        "walk": walk,
        "left": case["left"] - use,
        "reversed": case["reversed"] + diamonds,
        "reversals": case["reversals"] + 1,
        "chunks": max(case["chunks"], chunk + 1),
    }
    actions = [
        services.earnings.reverse_action(
            transfer["recipientId"], transfer["shard"], bucket, diamonds
        ),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=transfer["recipientId"],
            kind="GIFT_REVERSED",
            coins=0,
            diamonds=-diamonds,
            reference_id=transfer["id"],
            created_at=iso(now()),
            shard=transfer["shard"],
        ),
        services.purchases.reversal_action(case["caseId"], chunk, entry),
    ]
    try:
        return await _step(services, case, changes, actions)
    except TransactionCancelled as cancelled:
        if not cancelled.failed(1):
            raise
        # the bucket matured (folded, perhaps withdrawn) or was reversed meanwhile: never
        # from those; move past this gift
        return await _step(services, case, {"walk": walk}, [])


async def _step(
    services: Services, case: Item, changes: dict[str, Any], actions: list[dict[str, Any]]
) -> Item:
    """Land one step of the case with its actions; if another runner moved the case first,
    answer the case as it is now (the caller continues from there)."""
    step = services.purchases.case_step_action(case["caseId"], case, changes, case["status"])
    try:
        await services.dynamo.transact([step, *actions])
    except TransactionCancelled as cancelled:
        if cancelled.failed(0):
            return await services.purchases.case(case["caseId"]) or case
        raise
    return {**case, **changes, "step": case["step"] + 1}


async def close_dispute(services: Services, dispute_id: str, purchase: Item, won: bool) -> None:
    """The processor's verdict. Won: the coins come back, the restriction goes (if nothing
    else holds it), the reversed diamonds return. Lost: it stays as it is. Seen before the
    dispute was opened (out of order): recorded closed, so the late open does nothing."""
    case = await services.purchases.case(dispute_id)
    status = WON if won else LOST
    if case is None:
        closed = {
            "caseId": dispute_id,
            "kind": "CHARGEBACK",
            "purchaseId": purchase["id"],
            "buyerId": purchase["accountId"],
            "coinsTaken": 0,
            "spentCoins": 0,
            "left": 0,
            "reversed": 0,
            "reversals": 0,
            "walk": END,
            "status": status,
            "step": 0,
            "chunks": 0,
            "since": 0,
            "openedAt": iso(now()),
        }
        try:
            await services.dynamo.transact([services.purchases.open_case_action(closed)])
            return
        except TransactionCancelled:
            case = await services.purchases.case(dispute_id)
            if case is None:
                raise RuntimeError("a dispute case vanished") from None
    if case["status"] == OPEN:
        buyer, stamp = case["buyerId"], iso(now())
        actions = [
            services.purchases.case_step_action(
                dispute_id, case, {"closedAt": stamp, "status": status}
            )
        ]
        if won:
            actions.append(
                services.accounts.give_back_action(buyer, case["coinsTaken"], dispute_id)
            )
            if case["coinsTaken"]:
                actions += [
                    services.ledger.put_action(
                        entry_id=new_id("tx"),
                        account_id=buyer,
                        kind="CHARGEBACK",
                        coins=case["coinsTaken"],
                        diamonds=0,
                        reference_id=case["purchaseId"],
                        created_at=stamp,
                    ),
                    services.purchases.give_back_action(case["purchaseId"], case["coinsTaken"]),
                ]
        try:
            await services.dynamo.transact(actions)
        except TransactionCancelled:
            pass  # moved concurrently: the case as it is now decides below
        case = await services.purchases.case(dispute_id) or case
    if case["status"] == WON:
        await _restore(services, case)


async def _restore(services: Services, case: Item) -> None:
    """Give back every reversed diamond of a won dispute, one step each (resumable: the case
    counts the restored ones)."""
    entries = await services.purchases.reversals(case["caseId"], case["chunks"])
    while case.get("restored", 0) < len(entries):
        done = case.get("restored", 0)
        entry = entries[done]
        actions = [
            services.purchases.case_step_action(
                case["caseId"], case, {"restored": done + 1}, status=WON
            ),
            services.earnings.restore_action(
                entry["creatorId"], entry["shard"], entry["bucket"], entry["diamonds"]
            ),
            services.ledger.put_action(
                entry_id=new_id("tx"),
                account_id=entry["creatorId"],
                kind="GIFT_REVERSED",
                coins=0,
                diamonds=entry["diamonds"],
                reference_id=entry["transferId"],
                created_at=iso(now()),
                shard=entry["shard"],
            ),
        ]
        try:
            await services.dynamo.transact(actions)
            case = {**case, "restored": done + 1, "step": case["step"] + 1}
        except TransactionCancelled:
            case = await services.purchases.case(case["caseId"]) or case


def _epoch(stamp: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return math.inf
