"""Buying coins: charge the payment token, then credit the coins exactly once.

1. Claim the idempotency key (one conditional PutItem; a retry gets the existing record).
   The record fixes the purchase id, ledger entry id and package snapshot for every retry.
2. Charge the provider with the purchase id as its idempotency key: a retry after a crash
   re-asks for the same charge and is never charged twice.
3. One TransactWriteItems credits the wallet, writes the ledger entry and the purchase,
   and moves the idempotency record PENDING -> COMPLETED. If another attempt completed
   first, the transaction is cancelled and this attempt replays the stored result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from infra.catalog import PACKAGE
from infra.dynamo import Item, TransactionCancelled
from infra.idempotency import COMPLETED, FAILED, record_key, request_hash
from infra.ids import iso, new_id, now
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import IdempotencyConflict, NotFound, PaymentDeclined, UserError

MUTATION = "purchaseCoins"
CONFLICT_RETRIES = 5


@dataclass
class PurchaseOutcome:
    purchase: Item
    account_id: str


async def purchase_coins(
    ctx: Context, package_id: str, payment_token: str, idempotency_key: str
) -> PurchaseOutcome:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    validation.identifier(package_id, "packageId")
    validation.text(payment_token, "paymentToken", 255)
    ctx.require_adult("buy coins")

    services = ctx.services
    key = record_key(identity.sub, MUTATION, idempotency_key)
    digest = request_hash({"packageId": package_id, "paymentToken": payment_token})
    package = await services.catalog.get(PACKAGE, package_id)
    snapshot: dict[str, Any] | None = None
    if package and package["active"]:
        snapshot = {k: package[k] for k in ("id", "coins", "priceAmount", "currency")}
    claim = await services.idempotency.claim(
        key,
        digest,
        {
            "purchaseId": new_id("pur"),
            "entryId": new_id("tx"),
            "package": snapshot,
            "createdAt": iso(now()),
        },
    )
    record = claim.record
    if record["requestHash"] != digest:
        raise IdempotencyConflict("This idempotency key was used with a different input.")
    if record["status"] == FAILED:
        raise UserError.from_record(record["error"])
    if record["status"] == COMPLETED:
        return await _replay(ctx, record)
    if record.get("package") is None:
        await _fail(ctx, key, digest, NotFound(f"No coin package {package_id} is on sale."))

    charge = await asyncio.to_thread(
        services.payments.charge,
        payment_token,
        record["package"]["priceAmount"],
        record["package"]["currency"],
        record["purchaseId"],
    )
    if not charge.approved:
        await _fail(ctx, key, digest, PaymentDeclined("The payment was declined."))
    return await _credit(ctx, record, digest, charge.id)


async def _credit(ctx: Context, record: Item, digest: str, charge_id: str) -> PurchaseOutcome:
    services = ctx.services
    identity = ctx.require_identity()
    package = record["package"]
    purchase = {
        "id": record["purchaseId"],
        "accountId": identity.sub,
        "packageId": package["id"],
        "coins": package["coins"],
        "priceAmount": package["priceAmount"],
        "currency": package["currency"],
        "status": "COMPLETED",
        "chargeId": charge_id,
        "createdAt": record["createdAt"],
    }
    actions = [
        services.accounts.credit_action(
            identity.sub, package["coins"], 0, identity.initial_display_name, identity.birthdate
        ),
        services.ledger.put_action(
            entry_id=record["entryId"],
            account_id=identity.sub,
            kind="PURCHASE",
            coins=package["coins"],
            diamonds=0,
            reference_id=purchase["id"],
            created_at=record["createdAt"],
        ),
        services.purchases.put_action(purchase),
        services.idempotency.complete_action(record["key"], digest),
    ]
    for attempt in range(CONFLICT_RETRIES):
        try:
            await services.dynamo.transact(actions)
            return PurchaseOutcome(purchase, identity.sub)
        except TransactionCancelled as cancelled:
            if not cancelled.conflict:
                break
            await asyncio.sleep(0.02 * 2**attempt)
    # Another attempt with the same key completed (or failed) first: answer as it did.
    latest = await services.idempotency.get(record["key"])
    if latest and latest["status"] == COMPLETED:
        return await _replay(ctx, latest)
    if latest and latest["status"] == FAILED:
        raise UserError.from_record(latest["error"])
    raise RuntimeError("purchase credit was cancelled for an unknown reason")


async def _replay(ctx: Context, record: Item) -> PurchaseOutcome:
    purchase = await ctx.services.purchases.get(record["purchaseId"])
    if purchase is None:
        raise RuntimeError("completed idempotency record without its purchase")
    return PurchaseOutcome(purchase, purchase["accountId"])


async def _fail(ctx: Context, key: str, digest: str, error: UserError) -> None:
    """Remember a user error so a retry with the same key gets the same answer; raise it."""
    moved = await ctx.services.idempotency.fail(key, digest, error.to_record())
    if moved is None:
        latest = await ctx.services.idempotency.get(key)
        if latest and latest["status"] == COMPLETED:
            raise RuntimeError("purchase completed while failing")  # cannot happen: see docs
        if latest and latest["status"] == FAILED:
            raise UserError.from_record(latest["error"])
    raise error
