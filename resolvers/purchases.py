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

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from infra.catalog import PACKAGE
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.idempotency import COMPLETED, FAILED, record_key, request_hash
from infra.ids import iso, new_id, now
from infra.payments import PaymentProvider, ProviderUnavailable, RefundRefused
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import (
    IdempotencyConflict,
    InsufficientCoins,
    InvalidState,
    NotFound,
    PaymentDeclined,
    PaymentsNotConfigured,
    TryAgain,
    UserError,
)

logger = logging.getLogger("livecoins")
MUTATION = "purchaseCoins"
T = TypeVar("T")


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
    provider = _provider(ctx)

    services = ctx.services
    key = record_key(identity.sub, MUTATION, idempotency_key)
    digest = request_hash({"packageId": package_id, "paymentToken": payment_token})
    package = await services.catalog.get(PACKAGE, package_id)
    snapshot: dict[str, Any] | None = None
    if package and package["active"]:
        snapshot = {k: package[k] for k in ("id", "coins", "priceAmount", "currency")}
    record = await services.idempotency.claim(
        key,
        digest,
        {
            "purchaseId": new_id("pur"),
            "entryId": new_id("tx"),
            "package": snapshot,
            "createdAt": iso(now()),
        },
    )
    if record["requestHash"] != digest:
        raise IdempotencyConflict("This idempotency key was used with a different input.")
    if record["status"] == FAILED:
        raise UserError.from_record(record["error"])
    if record["status"] == COMPLETED:
        return await _replay(ctx, record)
    if record.get("package") is None:
        return await _fail(ctx, key, digest, NotFound(f"No coin package {package_id} is on sale."))

    # If the provider never answers, the charge may have happened: the record stays PENDING,
    # and a retry asks the provider again with the same key (never a second charge).
    charge = await _ask_provider(
        ctx,
        lambda: provider.charge(
            payment_token,
            record["package"]["priceAmount"],
            record["package"]["currency"],
            record["purchaseId"],
        ),
    )
    if not charge.approved:
        return await _fail(ctx, key, digest, PaymentDeclined("The payment was declined."))
    return await _credit(ctx, record, digest, charge.id)


def _provider(ctx: Context) -> PaymentProvider:
    """The deployment's payment provider; without one nothing is claimed or written."""
    if ctx.services.payments is None:
        raise PaymentsNotConfigured("This deployment takes no payments: no provider is configured.")
    return ctx.services.payments


async def _ask_provider(ctx: Context, call: Callable[[], Awaitable[T]]) -> T:
    """A provider call, asked again (same idempotency key) while it gives no answer, until
    the request's deadline: then TRY_AGAIN, and the caller's retry asks once more."""
    deadline, attempt = ctx.services.dynamo.deadline(), 0
    while True:
        try:
            return await call()
        except ProviderUnavailable as error:
            ctx.services.dynamo.faults["ProviderUnavailable"] += 1
            try:
                await backoff(attempt, deadline, "payment provider")
            except Unavailable:
                raise TryAgain(
                    "The payment provider did not answer; retry with the same key."
                ) from error
            attempt += 1


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
    try:
        await services.dynamo.transact(actions)
        services.metrics["CoinsPurchased"] += package["coins"]
        return PurchaseOutcome(purchase, identity.sub)
    except TransactionCancelled:
        pass
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


async def _fail(ctx: Context, key: str, digest: str, error: UserError) -> PurchaseOutcome:
    """Remember a user error so a retry with the same key gets the same answer, and raise it;
    if a concurrent attempt with the key got further first, answer as it did."""
    moved = await ctx.services.idempotency.fail(key, digest, error.to_record())
    if moved is None:
        latest = await ctx.services.idempotency.get(key)
        if latest and latest["status"] == COMPLETED:
            return await _replay(ctx, latest)
        if latest and latest["status"] == FAILED:
            raise UserError.from_record(latest["error"])
    raise error


REFUNDING, REFUNDED = "REFUNDING", "REFUNDED"


async def refund_purchase(ctx: Context, purchase_id: str) -> Item:
    """Admin: refund the charge and take the purchase's coins back, atomically with the status.

    1. Hold: one transaction moves the coins from spendable to held (the wallet still counts
       them) and the purchase COMPLETED -> REFUNDING. Coins already spent: InsufficientCoins,
       nothing changes.
    2. Refund the charge at the provider, with an idempotency key of the purchase.
    3. Success: one transaction drops the held coins, writes the REFUND entry and marks the
       purchase REFUNDED. A definite refusal by the provider: one transaction releases the
       hold and puts the purchase back to COMPLETED. No answer (a timeout, a 5xx): the refund
       may have happened, so the hold stays and the answer is TRY_AGAIN; asking again resumes
       at step 2 with the same provider key, which returns the first refund.
    """
    admin = ctx.require_admin()
    provider = _provider(ctx)
    services = ctx.services
    purchase = (
        await services.purchases.get(purchase_id)
        if validation.is_minted_id(purchase_id, "pur")
        else None
    )
    if purchase is None:
        raise NotFound(f"No purchase {purchase_id[:64]}.")
    buyer, coins = purchase["accountId"], purchase["coins"]
    if purchase["status"] == REFUNDED:
        return purchase
    if purchase["status"] == "COMPLETED":
        try:
            await services.dynamo.transact(
                [
                    services.accounts.hold_coins_action(buyer, coins),
                    services.purchases.status_action(purchase_id, "COMPLETED", REFUNDING),
                ]
            )
        except TransactionCancelled as cancelled:
            if cancelled.failed(0) and not cancelled.failed(1):
                held = cancelled.items[0] or {}
                raise InsufficientCoins(
                    "The buyer has already spent these coins.",
                    required=coins,
                    available=held.get("coins", 0),
                ) from None
            return await refund_purchase(ctx, purchase_id)  # moved on concurrently
    try:
        await _ask_provider(
            ctx, lambda: provider.refund(purchase["chargeId"], f"refund-{purchase_id}")
        )
    except RefundRefused as error:
        logger.warning("the provider refused to refund %s: %r", purchase_id, error)
        try:
            await services.dynamo.transact(
                [
                    services.accounts.release_held_action(buyer, coins),
                    services.purchases.status_action(purchase_id, REFUNDING, "COMPLETED"),
                ]
            )
        except TransactionCancelled:
            pass  # a concurrent attempt released it first
        raise InvalidState("The payment provider refused to refund this charge.") from error
    stamp = iso(now())
    try:
        await services.dynamo.transact(
            [
                services.accounts.take_held_action(buyer, coins),
                services.ledger.put_action(
                    entry_id=new_id("tx"),
                    account_id=buyer,
                    kind="REFUND",
                    coins=-coins,
                    diamonds=0,
                    reference_id=purchase_id,
                    created_at=stamp,
                ),
                services.purchases.status_action(
                    purchase_id, REFUNDING, REFUNDED, stamp, by=admin.sub
                ),
            ]
        )
    except TransactionCancelled:
        latest = await services.purchases.get(purchase_id)
        if latest is None or latest["status"] != REFUNDED:
            raise
        return latest
    logger.info(
        "admin refunded a purchase",
        extra={"admin": admin.sub, "purchaseId": purchase_id, "coins": coins, "at": stamp},
    )
    return {**purchase, "status": REFUNDED, "refundedAt": stamp, "refundedBy": admin.sub}
