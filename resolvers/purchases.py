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
    REFUND_COUNTS,
    SUCCEEDED,
    ChargeState,
    PaymentProvider,
    ProviderUnavailable,
    RefundRefused,
)
from infra.purchases import day_key
from infra.services import Services
from resolvers import money_back, validation
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
from resolvers.idempotency import settled_record

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
    return await ask_provider(ctx.services, call)


async def ask_provider(
    services: Services,
    call: Callable[[], Awaitable[T]],
    name: str = "payment provider",
    message: str = "The payment provider did not answer; retry with the same key.",
) -> T:
    """A processor call (payments or payouts: `name`), asked again (same idempotency key)
    while it gives no answer, until the request's deadline: then TRY_AGAIN (`message`), and
    the caller's retry asks once more."""
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        try:
            return await call()
        except ProviderUnavailable as error:
            services.dynamo.faults["ProviderUnavailable"] += 1
            try:
                await backoff(attempt, deadline, name)
            except Unavailable:
                raise TryAgain(message) from error
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
        "entryId": record["entryId"],  # where the chargeback walk stops
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
    # Another attempt with the same key completed (or failed) first: answer as it did. Its
    # transaction may be committed and not yet visible to reads (read-committed): read again.
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        latest = await services.idempotency.get(record["key"])
        if latest and latest["status"] == COMPLETED:
            return await _credited(services, str(latest["purchaseId"]))
        if latest and latest["status"] == FAILED:
            raise UserError.from_record(latest["error"])
        try:
            await backoff(attempt, deadline, "purchase credit")
        except Unavailable as error:
            raise TryAgain("The purchase is being credited; retry with the same key.") from error
        attempt += 1


async def _credited(services: Services, purchase_id: str) -> Item:
    return await services.dynamo.committed(
        lambda: services.purchases.get(purchase_id), "the purchase"
    )


async def _replay(ctx: Context, record: Item) -> PurchaseOutcome:
    services = ctx.services
    purchase = await services.dynamo.committed(
        lambda: services.purchases.get(record["purchaseId"]), "the purchase"
    )
    return PurchaseOutcome(purchase, purchase["accountId"])


async def _fail(ctx: Context, key: str, digest: str, error: UserError) -> PurchaseOutcome:
    """Remember a user error so a retry with the same key gets the same answer, and raise it;
    if a concurrent attempt with the key got further first, answer as it did."""
    moved = await ctx.services.idempotency.fail(key, digest, error.to_record())
    if moved is None:  # no longer PENDING: the other attempt's answer is the key's answer
        latest = await settled_record(ctx.services, key)
        if latest["status"] == COMPLETED:
            return await _replay(ctx, latest)
        raise UserError.from_record(latest["error"])
    raise error


REFUNDING, REFUNDED = "REFUNDING", "REFUNDED"


def observe_charge(services: Services) -> money_back.Observe:
    """The truth money after the payment follows: the purchase's charge, as it is now."""
    provider = _configured(services)

    async def observe(purchase: Item) -> money_back.Truth:
        state = await ask_provider(services, lambda: provider.charge(purchase["chargeId"]))
        if state.currency != purchase["currency"] or state.amount != purchase["priceAmount"]:
            logger.error(
                "a charge differs from its purchase",
                extra={"purchase": purchase["id"], "charge": state.id, "amount": state.amount},
            )
        return money_back.Truth(state.amount, state.refunded, state.disputed)

    return observe


def _configured(services: Services) -> PaymentProvider:
    if services.payments is None:
        raise PaymentsNotConfigured("This deployment takes no payments: no provider is configured.")
    return services.payments


async def follow_charge(services: Services, charge_id: str) -> Item | None:
    """Something happened to a charge after the payment (a refund, a dispute, either's
    outcome): converge its purchase to the charge as it is now. A charge whose purchase is
    not credited yet is settled first (credited, or refunded if nothing awaits it)."""
    purchase = await services.purchases.by_charge(charge_id)
    if purchase is None:
        provider = _configured(services)
        state = await ask_provider(services, lambda: provider.charge(charge_id))
        if state.payment_id:
            await settle_payment(services, state.payment_id)
        purchase = await services.purchases.by_charge(charge_id)
        if purchase is None:
            logger.warning("a charge with no purchase", extra={"charge": charge_id})
            return None
    return await money_back.converge(services, purchase["id"], observe_charge(services))


async def settle_payment(services: Services, payment_id: str) -> None:
    """A payment succeeded at the processor (after 3-D Secure, or racing the buyer's own
    confirmation): read it as it is now and credit the purchase that awaits it, exactly once.
    A payment that matches no waiting purchase (its purchase was answered as failed, or it
    differs from what was asked) is refunded in full: nobody is ever charged for nothing."""
    provider = _configured(services)
    payment = await ask_provider(services, lambda: provider.retrieve(payment_id))
    if payment.status != SUCCEEDED:
        return
    if payment.charge_id:  # credited already (the record may be gone: keys live for a day)
        credited = await services.purchases.by_charge(payment.charge_id)
        if credited is not None and credited.get("paymentId") == payment.id:
            return
    key = payment.meta("recordKey")
    record = await services.idempotency.get(key) if key else None
    package = (record or {}).get("package") or {}
    matches = (
        record is not None
        and record.get("paymentId") == payment.id
        and package.get("priceAmount") == payment.amount
        and package.get("currency") == payment.currency
    )
    if matches and record is not None and record["status"] not in (COMPLETED, FAILED):
        try:
            await credit(services, record, payment.id, payment.charge_id or payment.id)
            return
        except UserError:  # answered as failed meanwhile (the buyer's own attempt): refunded
            record = await services.idempotency.get(key or "")
    if matches and record is not None and record["status"] == COMPLETED:
        purchase_id = str(record["purchaseId"])
        purchase = await services.dynamo.committed(
            lambda: services.purchases.get(purchase_id), "the purchase"
        )
        if purchase.get("paymentId") == payment.id:
            return  # credited already
    state = await ask_provider(services, lambda: provider.charge(payment.charge_id or ""))
    left = state.amount - state.money_back
    if left > 0:
        # a refund that failed is asked again, under a new key
        key = f"unmatched-{payment.id}-{_failed(state)}"
        try:
            await ask_provider(services, lambda: provider.refund(payment.id, key, left))
        except RefundRefused:
            # disputed: the bank decides; when the dispute closes its event brings the charge
            # back here, and a dispute won is refunded then
            logger.warning("cannot refund a disputed payment yet", extra={"payment": payment.id})
            return
        logger.warning(
            "refunded a payment that no purchase awaits",
            extra={"payment": payment.id, "record": key, "status": (record or {}).get("status")},
        )


def _failed(state: ChargeState) -> int:
    return sum(1 for r in state.refunds if r.status not in REFUND_COUNTS)


async def refund_purchase(ctx: Context, purchase_id: str) -> Item:
    """Admin: refund the charge and take the purchase's coins back.

    1. Hold: one transaction sets the coins not yet taken back aside (they still count in
       the wallet, and cannot be spent) and moves the purchase COMPLETED -> REFUNDING,
       conditioned on what it has taken back as read, so a refund or dispute at the processor
       meanwhile cannot take the same coins twice. Coins already spent: InsufficientCoins,
       nothing changes.
    2. Ask the processor to refund the money not yet returned (read from the charge as it is
       now; the idempotency key names the amount, so a retry asks for the same refund).
    3. The purchase then converges like any other (resolvers/money_back.py): the held coins
       are taken, the purchase is REFUNDED. A definite refusal releases the hold
       (InvalidState). No answer: the hold stays and the answer is TRY_AGAIN; asking again
       resumes at step 2.
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
    if purchase.get("store"):  # the store holds the money: only the store refunds it
        raise InvalidState(
            "A store purchase is refunded by its store (the buyer asks Apple or Google); its "
            "coins then follow the store's refund."
        )
    buyer = purchase["accountId"]
    deadline, attempt = services.dynamo.deadline(), 0
    while purchase["status"] == "COMPLETED":
        coins = purchase["coins"] - purchase.get("takenBack", 0)
        try:
            await services.dynamo.transact(
                [
                    services.purchases.hold_action(purchase, coins, admin.sub),
                    services.accounts.hold_coins_action(buyer, coins),
                ]
            )
        except TransactionCancelled as cancelled:
            if cancelled.failed(1) and not cancelled.failed(0):
                held = cancelled.items[1] or {}
                raise InsufficientCoins(
                    "The buyer has already spent these coins.",
                    required=coins,
                    available=held.get("coins", 0),
                ) from None
            try:  # the purchase moved on concurrently: read it again
                await backoff(attempt, deadline, "refund hold")
            except Unavailable as error:
                raise TryAgain("The purchase kept changing; retry.") from error
            attempt += 1
        purchase = await services.purchases.get(purchase_id) or purchase
    if purchase["status"] == REFUNDED:
        return purchase
    state = await _ask_provider(ctx, lambda: provider.charge(purchase["chargeId"]))
    left = state.amount - state.money_back
    if left > 0:
        payment = purchase.get("paymentId") or purchase["chargeId"]
        key = f"refund-{purchase_id}-{left}-{_failed(state)}"  # a failed refund: asked anew
        try:
            await _ask_provider(ctx, lambda: provider.refund(payment, key, left))
        except RefundRefused as error:
            again = await _ask_provider(ctx, lambda: provider.charge(purchase["chargeId"]))
            if again.money_back < again.amount:
                logger.warning("the provider refused to refund %s: %r", purchase_id, error)
                await _release(services, purchase_id)
                raise InvalidState("The payment provider refused to refund this charge.") from error
    finished = await money_back.converge(services, purchase_id, observe_charge(services))
    if finished["status"] == REFUNDING:  # the money did not come back: the refund failed
        logger.warning("the provider's refund of %s failed", purchase_id)
        await _release(services, purchase_id)
        raise InvalidState("The payment provider's refund failed; the coins stay with the buyer.")
    logger.info(
        "admin refunded a purchase",
        extra={"admin": admin.sub, "purchaseId": purchase_id, "status": finished["status"]},
    )
    return finished


async def _release(services: Services, purchase_id: str) -> None:
    """The processor refused: the held coins go back to the wallet, the purchase COMPLETED."""
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        purchase = await services.purchases.get(purchase_id)
        if purchase is None or purchase["status"] != REFUNDING:
            return
        held = purchase.get("held", 0)
        actions = [services.purchases.release_action(purchase)]
        if held:
            actions.append(services.accounts.release_held_action(purchase["accountId"], held))
        try:
            await services.dynamo.transact(actions)
            return
        except TransactionCancelled:
            try:
                await backoff(attempt, deadline, "refund release")
            except Unavailable as error:
                raise TryAgain("The purchase kept changing; retry.") from error
            attempt += 1
