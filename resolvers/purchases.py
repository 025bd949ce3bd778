"""Buying coins: pay with the provider, then credit the coins exactly once.

1. Claim the idempotency key (one conditional PutItem; a retry gets the existing record).
   The record fixes the purchase id, ledger entry id, package snapshot and buyer for every
   retry (and for the processor's webhook, which may credit instead).
2. Create the payment at the provider (idempotent by the purchase id) and store its id on the
   record before confirming: a retry, even days later, resumes that payment.
3. Confirm it with the buyer's payment method (idempotent by key; asked again after an
   ambiguous failure, never charged twice). A card that needs authentication answers
   PaymentActionRequired; the webhook credits once the buyer has finished it.
4. One TransactWriteItems credits the wallet, writes the ledger entry and the purchase, and
   moves the idempotency record PENDING -> COMPLETED. If another attempt (or the webhook)
   completed first, the transaction is cancelled and this attempt replays the stored result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from infra.accounts import is_restricted
from infra.catalog import PACKAGE
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.idempotency import COMPLETED, FAILED, record_key, request_hash
from infra.ids import iso, new_id, now
from infra.payments import (
    ACTION,
    DECLINED,
    SUCCEEDED,
    PaymentProvider,
    ProviderUnavailable,
    RefundRefused,
)
from infra.purchases import day_key
from infra.services import Services
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import (
    IdempotencyConflict,
    InsufficientCoins,
    InvalidState,
    NotFound,
    PaymentActionRequired,
    PaymentDeclined,
    PaymentsNotConfigured,
    TryAgain,
    UserError,
    restricted,
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
            "buyer": {
                "id": identity.sub,
                "displayName": identity.initial_display_name,
                "birthdate": identity.birthdate,
            },
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

    payment_id = record.get("paymentId")
    if payment_id is None:  # nothing asked of the provider yet
        if is_restricted(await services.accounts.get(identity.sub, consistent=True)):
            return await _fail(ctx, key, digest, restricted())
        purchase_id = record["purchaseId"]
        created = await _ask_provider(
            ctx,
            lambda: provider.create(
                amount=record["package"]["priceAmount"],
                currency=record["package"]["currency"],
                key=purchase_id,
                metadata={"purchaseId": purchase_id, "accountId": identity.sub, "recordKey": key},
            ),
        )
        latest = await services.idempotency.set_payment(key, digest, created)
        if latest.get("status") == COMPLETED:  # the webhook or a concurrent attempt credited
            return await _replay(ctx, latest)
        if latest.get("status") == FAILED:
            raise UserError.from_record(latest["error"])
        payment_id = latest.get("paymentId", created)
    # If the provider never answers, the payment may have happened: the record stays PENDING,
    # and a retry confirms again with the same key (answered with the payment's state).
    payment = await _ask_provider(
        ctx, lambda: provider.confirm(payment_id, payment_token, record["purchaseId"])
    )
    if payment.status == SUCCEEDED:
        outcome = await credit(services, record, payment.id, payment.charge_id or payment.id)
        return PurchaseOutcome(outcome, outcome["accountId"])
    if payment.status == DECLINED:
        reason = f" ({payment.decline_code})" if payment.decline_code else ""
        return await _fail(ctx, key, digest, PaymentDeclined(f"The payment was declined{reason}."))
    if payment.status == ACTION:  # not remembered: asking again answers the payment's state
        raise PaymentActionRequired(
            "The card needs the buyer to authenticate: finish it with the client secret.",
            client_secret=payment.client_secret or "",
            purchase_id=record["purchaseId"],
        )
    raise TryAgain("The payment is still processing; retry with the same key.")


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


async def credit(services: Services, record: Item, payment_id: str, charge_id: str) -> Item:
    """Credit a paid purchase exactly once (from the request, or from the processor's
    webhook): the wallet, the ledger entry, the purchase and the record, in one transaction.
    Returns the purchase; if another attempt credited first, the one it wrote."""
    package, buyer = record["package"], record["buyer"]
    purchase = {
        "id": record["purchaseId"],
        "accountId": buyer["id"],
        "packageId": package["id"],
        "coins": package["coins"],
        "priceAmount": package["priceAmount"],
        "currency": package["currency"],
        "status": "COMPLETED",
        "paymentId": payment_id,
        "chargeId": charge_id,
        "createdAt": record["createdAt"],
        "day": day_key(record["purchaseId"], record["createdAt"]),
    }
    actions = [
        services.accounts.credit_action(
            buyer["id"], package["coins"], 0, buyer["displayName"], buyer.get("birthdate")
        ),
        services.ledger.put_action(
            entry_id=record["entryId"],
            account_id=buyer["id"],
            kind="PURCHASE",
            coins=package["coins"],
            diamonds=0,
            reference_id=purchase["id"],
            created_at=record["createdAt"],
        ),
        services.purchases.put_action(purchase),
        services.purchases.alias_action(charge_id, purchase["id"]),
        services.idempotency.complete_action(record["key"], record["requestHash"]),
    ]
    try:
        await services.dynamo.transact(actions)
        services.metrics["CoinsPurchased"] += package["coins"]
        return purchase
    except TransactionCancelled:
        pass
    # Another attempt with the same key completed (or failed) first: answer as it did.
    latest = await services.idempotency.get(record["key"])
    if latest and latest["status"] == COMPLETED:
        found = await services.purchases.get(latest["purchaseId"])
        if found is not None:
            return found
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
    # coins a refund or chargeback at the processor took back already are not refunded again
    buyer, coins = purchase["accountId"], purchase["coins"] - purchase.get("takenBack", 0)
    if purchase["status"] == REFUNDED:
        return purchase
    if coins <= 0:
        raise InvalidState("The processor has taken this purchase's coins back already.")
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
            ctx,
            lambda: provider.refund(
                purchase.get("paymentId") or purchase["chargeId"], f"refund-{purchase_id}"
            ),
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
    finished = await finish_refund(services, purchase, admin.sub)
    stamp = finished.get("refundedAt")
    logger.info(
        "admin refunded a purchase",
        extra={"admin": admin.sub, "purchaseId": purchase_id, "coins": coins, "at": stamp},
    )
    return finished


async def finish_refund(services: Services, purchase: Item, by: str) -> Item:
    """The provider refunded: drop the held coins, write the REFUND entry and mark the
    purchase REFUNDED, in one transaction; answers the purchase as it then is. From the admin's
    refundPurchase, or from the processor's charge.refunded webhook if that came first."""
    stamp, buyer = iso(now()), purchase["accountId"]
    coins = purchase["coins"] - purchase.get("takenBack", 0)  # what the hold took
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
                    reference_id=purchase["id"],
                    created_at=stamp,
                ),
                services.purchases.status_action(purchase["id"], REFUNDING, REFUNDED, stamp, by=by),
            ]
        )
    except TransactionCancelled:
        latest = await services.purchases.get(purchase["id"])
        if latest is None or latest["status"] != REFUNDED:
            raise
        return latest
    return {**purchase, "status": REFUNDED, "refundedAt": stamp, "refundedBy": by}
