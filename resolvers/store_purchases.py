"""Buying coins in the mobile apps' stores: a store's proof redeemed once, across all accounts,
and refunds that follow the store.

Redeeming (`redeem_store_purchase`), the same exactly-once shape as purchaseCoins
(resolvers/purchases.py) with the store's transaction as the thing that happens once:

1. **Verify.** App Store: the StoreKit 2 signed transaction, verified locally (Apple's
   certificate chain, bundle id, app Apple id, environment). Google Play: nothing local; the
   purchase token is read from Google in step 4.
2. **Claim the idempotency key** (one conditional PutItem). Its input is the purchase: Apple's
   transaction id (a signature Apple renews for the same transaction is the same input),
   Google's product id and token. A different input is IdempotencyConflict; a COMPLETED record
   replays its purchase, a FAILED one its user error; a PENDING one resumes.
3. **Match** the product id to a package (its STORE_PRODUCT item, infra/catalog.py) and check
   the proof is this caller's to redeem: Sandbox / test / promo purchases only for the
   deployment's test accounts, the app's account token (`stores.account_token`) when it set
   one, the product it claims.
4. **Bind** the store transaction to the caller ("store#<store>#<transactionId>", one
   conditional UpdateItem, infra/purchases.py): the first account to redeem it has it for
   good; another gets ReceiptAlreadyRedeemed, the same account with a new key its original
   CoinsPurchased. A Google purchase still pending is bound here and answers PaymentPending.
   A caller who may not buy (a minor, a restricted account) is answered so *after* the bind:
   the App Store purchase stays bound and redeemable by a new key later; a Google one is
   left unconsumed, so Google refunds it after 3 days.
5. **Ask the store as it is now** (Apple: Get Transaction Info, because a signed transaction
   from the device predates any refund; Google: the purchase read of step 1), then **credit**
   in one TransactWriteItems: the wallet, the PURCHASE entry, the purchase, the binding BOUND
   -> CREDITED (conditioned on the store notes it read: a refund noted since makes it read the
   store again) and the key's record PENDING -> COMPLETED.
6. Google: **consume** the purchase (it also acknowledges it), then take the binding off the
   unconsumed list. A consume that gets no answer is left to the scheduled catch-up, well
   inside Google's 3 days: the coins are credited either way.

Store calls that get no definite answer (`StoreUnavailable`) are asked again until the
request's deadline, then TRY_AGAIN; nothing is remembered and a retry with the key resumes.

Money after the purchase follows the store (`follow_store_transaction`), from App Store Server
Notifications V2, Google's real-time developer notifications and the scheduled `catch_up`
reads: each only says which transaction to look at; a credited one converges
(resolvers/money_back.py) to the store's state read now: Apple's transaction (revoked: all of
it, or the prorated share), Google's purchase (refunded quantity / quantity; cancelled: all).
One the caller has not redeemed yet is noted on its binding, which a redemption in flight
then sees. A Google purchase that was pending and completes is credited from its notification.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from infra import stores
from infra.accounts import is_restricted
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff, start_request
from infra.idempotency import COMPLETED, FAILED, PENDING, record_key, request_hash
from infra.ids import iso, new_id, now
from infra.purchases import BOUND, CREDITED, DAY_PARTITIONS, UNCONSUMED, day_key
from infra.services import Services
from infra.stores import (
    APP_STORE,
    PLAY_STORE,
    PRODUCTION,
    PURCHASED,
    StoreNotification,
    StoreTransaction,
    StoreUnavailable,
)
from resolvers import money_back, validation
from resolvers.context import Context
from resolvers.errors import (
    AccountRestricted,
    AgeRestricted,
    IdempotencyConflict,
    InvalidInput,
    PaymentPending,
    PaymentsNotConfigured,
    ReceiptAlreadyRedeemed,
    ReceiptInvalid,
    TryAgain,
    UserError,
)
from resolvers.idempotency import settled_record
from resolvers.identity import is_adult
from resolvers.purchases import PurchaseOutcome

if TYPE_CHECKING:
    from infra.app_store import AppStore
    from infra.play_store import PlayStore

logger = logging.getLogger("livecoins")
MUTATION = "redeemStorePurchase"
T = TypeVar("T")
MAX_RECEIPT = 32 * 1024  # a signed transaction with its chain is about 4 KB
PLAY_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,2048}")
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,149}")
# Apple's notification types after which a consumable's money may have moved.
APPLE_REFUNDS = ("REFUND", "REFUND_REVERSED", "REVOKE")
# Google's (infra/play_store.py): a void, and a pending purchase completed or cancelled.
PLAY_VOIDED, PLAY_PURCHASED, PLAY_CANCELED = "VOIDED", "ONE_TIME_PURCHASED", "ONE_TIME_CANCELED"
REFUSALS = {
    stores.FORGED: "The receipt does not verify as the store's.",
    stores.WRONG_APP: "The receipt is for another app.",
    stores.WRONG_ENVIRONMENT: "The receipt is from a store environment this deployment does "
    "not accept.",
    stores.WRONG_PRODUCT: "The receipt is for another product.",
    stores.MALFORMED: "The receipt is not one of the store's.",
    stores.UNKNOWN: "The store does not know this purchase.",
    stores.REVOKED: "The store has refunded, revoked or cancelled this purchase.",
}
NOT_FOR_SALE = "The purchase is of a product no coin package is sold as."
KEPT = {
    APP_STORE: "The purchase stays bound to this account: redeem it again, with a new "
    "idempotencyKey, once this account may buy.",
    PLAY_STORE: "The purchase is not credited and stays unconsumed: Google refunds it "
    "within 3 days.",
}


def store_key(store: str, environment: str) -> str:
    """Where a store transaction's id is unique: Apple numbers its Sandbox apart."""
    if store == APP_STORE and environment != PRODUCTION:
        return f"{APP_STORE}_{environment.upper()}"
    return store


def charge_id(store: str, environment: str, transaction_id: str) -> str:
    """A store purchase's stand-in for a card charge id (`chargeId` on the purchase), unique
    across stores and environments: "<store key>#<transaction id>"."""
    return f"{store_key(store, environment)}#{transaction_id}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- redeeming ---------------------------------------------------------------------------------


async def redeem_store_purchase(
    ctx: Context, store: str, receipt: str, product_id: str | None, idempotency_key: str
) -> PurchaseOutcome:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    _check_input(store, receipt, product_id)
    services = ctx.services
    key = record_key(identity.sub, MUTATION, idempotency_key)
    signed: StoreTransaction | None = None
    if store == APP_STORE:
        app = _app_store(services)
        try:
            signed = await ask_store(services, lambda: app.verify_transaction(receipt))
        except stores.ReceiptInvalid as error:
            unverified = {"store": store, "receipt": _digest(receipt), "productId": product_id}
            return await _refuse_unclaimed(ctx, key, request_hash(unverified), _refusal(error))
        purchase = {
            "store": store,
            "environment": signed.environment,
            "transactionId": signed.transaction_id,
            "productId": product_id,
        }
    else:
        _play_store(services)
        purchase = {"store": store, "productId": product_id, "receipt": _digest(receipt)}
    digest = request_hash(purchase)
    record = await services.idempotency.claim(
        key,
        digest,
        {
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
        return await _replay(services, record)
    try:
        if signed is not None:
            credited = await _redeem_app_store(ctx, record, signed, product_id)
        else:
            credited = await _redeem_play(ctx, record, receipt, str(product_id))
    except PaymentPending:
        raise  # not an answer to remember: asking again answers what the store says then
    except UserError as error:
        return await _fail(services, record, error)
    return PurchaseOutcome(credited, credited["accountId"])


def _check_input(store: str, receipt: str, product_id: str | None) -> None:
    if not receipt.strip() or len(receipt) > MAX_RECEIPT:
        raise InvalidInput("receipt must be the store's proof (at most 32 KB)", field="receipt")
    if product_id is not None and not PRODUCT_ID.fullmatch(product_id):
        raise InvalidInput("productId is not a store product id", field="productId")
    if store == PLAY_STORE:
        if product_id is None:
            raise InvalidInput("productId is required for Google Play", field="productId")
        if not PLAY_TOKEN.fullmatch(receipt):
            raise InvalidInput("receipt must be a Google Play purchase token", field="receipt")


def _app_store(services: Services) -> AppStore:
    app = services.app_store
    if app is None:
        raise PaymentsNotConfigured("This deployment sells no coins in the App Store.")
    return app


def _play_store(services: Services) -> PlayStore:
    play = services.play_store
    if play is None:
        raise PaymentsNotConfigured("This deployment sells no coins on Google Play.")
    return play


async def ask_store(services: Services, call: Callable[[], Awaitable[T]]) -> T:
    """A store call, asked again while it gives no definite answer, until the request's
    deadline: then TRY_AGAIN (every store call is a read, or idempotent)."""
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        try:
            return await call()
        except StoreUnavailable as error:
            services.dynamo.faults["StoreUnavailable"] += 1
            try:
                await backoff(attempt, deadline, "store")
            except Unavailable:
                raise TryAgain("The store did not answer; retry with the same key.") from error
            attempt += 1


def _refusal(error: stores.ReceiptInvalid) -> ReceiptInvalid:
    return ReceiptInvalid(REFUSALS.get(error.reason, REFUSALS[stores.MALFORMED]))


async def _redeem_app_store(
    ctx: Context, record: Item, signed: StoreTransaction, claimed: str | None
) -> Item:
    services = ctx.services
    package = await _package(services, APP_STORE, signed.product_id)
    _accept(ctx, signed, claimed)
    binding = await _bind(services, signed, record, package)
    if binding["status"] == CREDITED:
        return await _credited(services, binding, record)
    await _may_buy(ctx, APP_STORE)
    return await _credit(services, binding, record, None)


async def _redeem_play(ctx: Context, record: Item, token: str, product_id: str) -> Item:
    services = ctx.services
    play = _play_store(services)
    package = await _package(services, PLAY_STORE, product_id)
    try:
        found = await ask_store(services, lambda: play.purchase(product_id, token))
    except stores.ReceiptInvalid as error:
        raise _refusal(error) from error
    _accept(ctx, found, product_id)
    binding = await _bind(services, found, record, package)
    if binding["status"] == CREDITED:
        return await _credited(services, binding, record)
    if binding.get("notes"):
        # The store said something of this purchase, perhaps a void after `found` was read:
        # the credit is conditioned on the notes as bound, so read the store after them.
        try:
            found = await store_now(services, binding)
        except stores.ReceiptInvalid as error:
            raise _refusal(error) from error
    if found.state == stores.PENDING:
        raise PaymentPending(
            "Google Play has not taken the payment yet. The purchase is bound to this account "
            "and its coins are credited when it completes: ask again with the same "
            "idempotencyKey."
        )
    await _may_buy(ctx, PLAY_STORE)
    purchase = await _credit(services, binding, record, found)
    await _after_play_credit(services, binding, purchase)
    return purchase


async def _package(services: Services, store: str, product_id: str) -> Item:
    package = await services.catalog.package_for_product(store, product_id)
    if package is None:
        raise ReceiptInvalid(NOT_FOR_SALE)
    return package


def _accept(ctx: Context, found: StoreTransaction, claimed: str | None) -> None:
    """Whether this caller may redeem this purchase at all (before anything is written)."""
    identity = ctx.require_identity()
    if claimed is not None and claimed != found.product_id:
        raise ReceiptInvalid(REFUSALS[stores.WRONG_PRODUCT])
    if not found.is_production and identity.sub not in ctx.services.settings.store_test_accounts:
        raise ReceiptInvalid(
            "A sandbox, test or promotional purchase: only this deployment's test accounts "
            "may redeem it."
        )
    if found.account_token is not None and found.account_token != stores.account_token(
        identity.sub
    ):
        raise ReceiptInvalid("The purchase was made for another account.")
    if found.state in (stores.REFUNDED, stores.CANCELLED):
        raise ReceiptInvalid(REFUSALS[stores.REVOKED])


async def _bind(services: Services, found: StoreTransaction, record: Item, package: Item) -> Item:
    """Bind the store transaction to the caller (the record's buyer), or ReceiptAlreadyRedeemed
    when another account has it."""
    buyer = record["buyer"]
    if found.price is not None and found.price > 0 and found.currency:
        price, currency, source = found.price, found.currency, "store"
    else:  # the store's data says no price (Google's never does): the package's list price
        price, currency, source = (
            package["priceAmount"] * found.quantity,
            package["currency"],
            "list",
        )
    fields: dict[str, Any] = {
        "store": found.store,
        "storeKey": store_key(found.store, found.environment),
        "storeTransactionId": found.transaction_id,
        "productId": found.product_id,
        "quantity": found.quantity,
        "environment": found.environment,
        "packageId": package["id"],
        "coins": package["coins"] * found.quantity,
        "priceAmount": price,
        "currency": currency,
        "priceSource": source,
        "buyer": buyer,
        "recordKey": record["key"],
        "requestHash": record["requestHash"],
        "boundAt": iso(now()),
    }
    if found.purchase_token:
        fields["purchaseToken"] = found.purchase_token
    binding_id = services.purchases.binding_id(fields["storeKey"], found.transaction_id)
    binding = await services.purchases.bind(binding_id, buyer["id"], fields)
    if binding["accountId"] != buyer["id"]:
        raise ReceiptAlreadyRedeemed("This store purchase was already redeemed by another account.")
    return binding


async def _may_buy(ctx: Context, store: str) -> None:
    identity = ctx.require_identity()
    if not identity.is_adult(ctx.today):
        raise AgeRestricted(f"You must be 18 or older to buy coins. {KEPT[store]}")
    account = await ctx.services.accounts.get(identity.sub, consistent=True)
    if is_restricted(account):
        raise AccountRestricted(
            "A payment of this account was refunded or disputed after its coins were spent: "
            f"it cannot buy coins until that is settled or support clears it. {KEPT[store]}"
        )


async def store_now(services: Services, item: Item) -> StoreTransaction:
    """The store's purchase as the store says it is now (a binding or a purchase item)."""
    if item["store"] == APP_STORE:
        app = _app_store(services)
        return await ask_store(
            services,
            lambda: app.transaction_info(item["storeTransactionId"], item["environment"]),
        )
    play = _play_store(services)
    return await ask_store(
        services, lambda: play.purchase(item["productId"], item["purchaseToken"])
    )


async def _credit(
    services: Services, binding: Item, record: Item | None, found: StoreTransaction | None
) -> Item:
    """Credit a bound purchase once the store says now that it is paid (`found`: read just
    now; else read here). Whoever credits first (another key of the buyer, Google's
    notification), the purchase it credited; a note from the store since the binding was read
    makes this read the store again."""
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        if found is None:
            try:
                found = await store_now(services, binding)
            except stores.ReceiptInvalid as error:
                raise _refusal(error) from error
        if found.state in (stores.REFUNDED, stores.CANCELLED):
            raise ReceiptInvalid(REFUSALS[stores.REVOKED])
        if found.state == stores.PENDING:
            raise PaymentPending("The store has not taken the payment yet; ask again later.")
        try:
            return await _credit_once(services, binding, record, found)
        except TransactionCancelled:
            pass
        latest = await services.purchases.binding(binding["id"])
        if latest is None:
            raise RuntimeError(f"binding {binding['id']} vanished")
        binding = latest
        if binding["status"] == CREDITED:
            return await _credited(services, binding, record)
        if record is not None:
            moved = await services.idempotency.get(record["key"])
            if moved and moved["status"] == COMPLETED:
                return await _replay_purchase(services, moved["purchaseId"])
            if moved and moved["status"] == FAILED:
                raise UserError.from_record(moved["error"])
        found = None  # the store noted something meanwhile: read it again
        try:
            await backoff(attempt, deadline, "store credit")
        except Unavailable as error:
            raise TryAgain("The purchase kept changing; retry with the same key.") from error
        attempt += 1


async def _credit_once(
    services: Services, binding: Item, record: Item | None, found: StoreTransaction
) -> Item:
    purchase_id, entry_id, at = new_id("pur"), new_id("tx"), iso(now())
    buyer = binding["buyer"]
    purchase: Item = {
        "id": purchase_id,
        "accountId": binding["accountId"],
        "packageId": binding["packageId"],
        "coins": binding["coins"],
        "priceAmount": binding["priceAmount"],
        "currency": binding["currency"],
        "priceSource": binding["priceSource"],
        "status": "COMPLETED",
        "store": binding["store"],
        "storeKey": binding["storeKey"],
        "storeTransactionId": binding["storeTransactionId"],
        "productId": binding["productId"],
        "quantity": binding["quantity"],
        "environment": binding["environment"],
        # the audit's (and the simulator's) key for what paid: unique across stores
        "chargeId": f"{binding['storeKey']}#{binding['storeTransactionId']}",
        "createdAt": at,
        "day": day_key(purchase_id, at),
        "entryId": entry_id,  # where the reversal walk stops
    }
    unconsumed = None
    if binding["store"] == PLAY_STORE:
        purchase["purchaseToken"] = binding["purchaseToken"]
        unconsumed = f"{UNCONSUMED}{int(_digest(binding['id']), 16) % DAY_PARTITIONS}"
    actions = [
        services.accounts.credit_action(
            buyer["id"], binding["coins"], 0, buyer["displayName"], buyer.get("birthdate")
        ),
        services.ledger.put_action(
            entry_id=entry_id,
            account_id=buyer["id"],
            kind="PURCHASE",
            coins=binding["coins"],
            diamonds=0,
            reference_id=purchase_id,
            created_at=at,
        ),
        services.purchases.put_action(purchase),
        services.purchases.credit_binding_action(binding, purchase_id, at, unconsumed),
    ]
    if record is not None and record.get("status") == PENDING:
        actions.append(
            services.idempotency.complete_as_action(
                record["key"], record["requestHash"], purchase_id
            )
        )
    await services.dynamo.transact(actions)
    services.metrics["CoinsPurchased"] += binding["coins"]
    if found.refunded_quantity:  # partly refunded before it was credited: take that back now
        return await money_back.converge(services, purchase_id, observe_store(services))
    return purchase


async def _credited(services: Services, binding: Item, record: Item | None) -> Item:
    """The purchase the binding was credited as; the caller's record completes as it."""
    purchase = await _replay_purchase(services, binding["purchaseId"])
    if record is not None and record.get("status") == PENDING:
        await services.idempotency.complete_as(record["key"], record["requestHash"], purchase["id"])
    return purchase


async def _replay(services: Services, record: Item) -> PurchaseOutcome:
    purchase = await _replay_purchase(services, record["purchaseId"])
    return PurchaseOutcome(purchase, purchase["accountId"])


async def _replay_purchase(services: Services, purchase_id: str) -> Item:
    """The purchase a binding or record names (written by one transaction with it, and
    visible to reads a moment later at most: read again until then)."""
    return await services.dynamo.committed(
        lambda: services.purchases.get(purchase_id), "the purchase"
    )


async def _fail(services: Services, record: Item, error: UserError) -> PurchaseOutcome:
    """Remember a user error under the key and raise it; if another attempt with the key got
    further first, answer as it did."""
    moved = await services.idempotency.fail(record["key"], record["requestHash"], error.to_record())
    if moved is None:  # no longer PENDING: the other attempt's answer is the key's answer
        latest = await settled_record(services, record["key"])
        if latest["status"] == COMPLETED:
            return await _replay(services, latest)
        raise UserError.from_record(latest["error"])
    raise error


async def _refuse_unclaimed(
    ctx: Context, key: str, digest: str, error: UserError
) -> PurchaseOutcome:
    """A receipt refused before anything was claimed (it did not verify): remembered like any
    user error, unless the key was used before."""
    existing = await ctx.services.idempotency.put_failed(key, digest, error.to_record())
    if existing is None:
        raise error
    if existing.get("requestHash") != digest:
        raise IdempotencyConflict("This idempotency key was used with a different input.")
    if existing.get("status") == COMPLETED:
        return await _replay(ctx.services, existing)
    if existing.get("status") == FAILED:
        raise UserError.from_record(existing["error"])
    raise error


async def _after_play_credit(services: Services, binding: Item, purchase: Item) -> None:
    """Consume a credited Google purchase (consuming also acknowledges it); what gets no
    answer now is left on the unconsumed list for the catch-up."""
    try:
        await consume(services, {**binding, "status": CREDITED})
    except (TryAgain, Unavailable) as error:
        logger.warning(
            "a credited Google purchase is left to consume later: %r",
            error,
            extra={"purchase": purchase["id"]},
        )


async def consume(services: Services, binding: Item) -> bool:
    """Consume the binding's Google purchase and take it off the unconsumed list; True when
    done (consumed now or before, or refunded: nothing left to consume)."""
    play = _play_store(services)
    try:
        await ask_store(
            services, lambda: play.consume(binding["productId"], binding["purchaseToken"])
        )
    except stores.ReceiptInvalid as error:
        # voided meanwhile: nothing to consume; the void itself is followed as a refund
        logger.warning("a credited Google purchase cannot be consumed: %s", error.reason)
    await services.purchases.consumed(binding["id"], iso(now()))
    return True


# --- money after the purchase ----------------------------------------------------------------


def truth(purchase: Item, found: StoreTransaction) -> money_back.Truth:
    """The money back a store's purchase implies: Apple's prorated share, else the refunded
    quantity's share of what was paid (all of it when revoked or cancelled), rounded up."""
    amount = purchase["priceAmount"]
    if found.refunded_share_millipercent is not None:
        refunded = -(-amount * found.refunded_share_millipercent // 100_000)
    elif found.state in (stores.REFUNDED, stores.CANCELLED):
        refunded = amount
    else:
        refunded = -(-amount * found.refunded_quantity // max(found.quantity, 1))
    return money_back.Truth(amount, min(amount, refunded), 0)


def observe_store(services: Services) -> money_back.Observe:
    """The truth money after the payment follows for a store purchase: the store, now."""

    async def observe(purchase: Item) -> money_back.Truth:
        found = await store_now(services, purchase)
        if found.product_id != purchase["productId"] or found.quantity != purchase["quantity"]:
            logger.error(
                "a store purchase differs from the store's record",
                extra={"purchase": purchase["id"], "product": found.product_id},
            )
        return truth(purchase, found)

    return observe


async def follow_store_transaction(
    services: Services, key: str, transaction_id: str, *, credit_pending: bool = False
) -> Item | None:
    """A store said something happened to one of its transactions (`key`: its store key):
    note it on the binding; a credited purchase converges to the store's state now. With
    `credit_pending`, a Google purchase bound while pending is credited if it is paid now.
    Returns the purchase, if there is one."""
    binding = await services.purchases.note(
        services.purchases.binding_id(key, transaction_id), iso(now())
    )
    if binding.get("status") == CREDITED:
        return await money_back.converge(services, binding["purchaseId"], observe_store(services))
    if credit_pending and binding.get("status") == BOUND and binding.get("store") == PLAY_STORE:
        return await _credit_completed(services, binding)
    return None


async def _credit_completed(services: Services, binding: Item) -> Item | None:
    """A Google purchase that answered PaymentPending has completed: credit it for the account
    it is bound to (if that account may buy now) and consume it."""
    found = await store_now(services, binding)
    if found.state != PURCHASED:
        return None
    buyer = binding["buyer"]
    account = await services.accounts.get(buyer["id"], consistent=True)
    if not is_adult(buyer.get("birthdate"), now().date()) or is_restricted(account):
        logger.warning(
            "a completed Google purchase is not credited: its account may not buy",
            extra={"binding": binding["id"]},
        )
        return None
    record = await services.idempotency.get(binding["recordKey"])
    if record is not None and record.get("requestHash") != binding.get("requestHash"):
        record = None
    try:
        purchase = await _credit(services, binding, record, found)
    except UserError as error:  # refunded meanwhile, or answered as failed to its key
        logger.warning("a completed Google purchase is not credited: %s", error.message)
        return None
    await _after_play_credit(services, binding, purchase)
    return purchase


async def apply_notification(services: Services, note: StoreNotification) -> Item | None:
    """A verified store notification: which transaction to look at again, if any."""
    if note.store == APP_STORE:
        found = note.transaction
        if note.kind not in APPLE_REFUNDS or found is None:
            logger.info("ignored an App Store notification", extra={"type": note.kind})
            return None
        key = store_key(APP_STORE, found.environment)
        return await follow_store_transaction(services, key, found.transaction_id)
    if note.kind not in (PLAY_VOIDED, PLAY_PURCHASED, PLAY_CANCELED) or not note.transaction_id:
        logger.info("ignored a Google Play notification", extra={"type": note.kind})
        return None
    return await follow_store_transaction(
        services, PLAY_STORE, note.transaction_id, credit_pending=note.kind == PLAY_PURCHASED
    )


# --- the scheduled catch-up --------------------------------------------------------------------

# Apple keeps 180 days of notification history, Google 30 days of voided purchases; each run
# reads again a little before where the last complete one ended (stores index late).
APPLE_DAYS, PLAY_DAYS = 180, 30
# A window longer than this is read a piece at a time, each piece checkpointed once done: a run
# that dies (or keeps failing) late in a long window keeps what it finished, so the window
# cannot grow until runs never finish and Google's 30 days pass over lost notifications.
STEP = timedelta(days=1)
OVERLAP = timedelta(hours=1)
FIRST = timedelta(days=30)


@dataclass
class CatchUp:
    """What one catch-up run did."""

    windows: dict[str, tuple[str, str]] = field(default_factory=dict)
    followed: Counter[str] = field(default_factory=Counter)  # transactions, by store
    consumed: int = 0
    failed: list[str] = field(default_factory=list)  # left for the next run

    def summary(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "followed": dict(self.followed),
            "consumed": self.consumed,
            "failed": len(self.failed),
        }


async def catch_up(
    services: Services,
    since: datetime | None = None,
    until: datetime | None = None,
    budget: float | None = None,
) -> CatchUp:
    """Read what each configured store refunded (or reversed) in a window, follow every
    transaction named (as its notification would have), and consume Google purchases credited
    and left unconsumed. The window runs from where the last complete run ended (less an
    overlap), or `since`, to now or `until`; a run with failures leaves its mark, so the next
    one reads its window again (following twice changes nothing)."""
    report = CatchUp()
    budget = budget or services.settings.retry_budget_seconds
    end = until or now()
    if services.app_store is not None:
        try:
            await _catch_up_app_store(services, report, since, end, budget)
        except (TryAgain, Unavailable) as error:  # its mark stays: the next run reads again
            report.failed.append(f"{APP_STORE}: {error!r}")
    if services.play_store is not None:
        try:
            await _catch_up_play(services, report, since, end, budget)
        except (TryAgain, Unavailable) as error:
            report.failed.append(f"{PLAY_STORE}: {error!r}")
        start_request(budget)
        try:
            unconsumed = await services.purchases.unconsumed()
        except (TryAgain, Unavailable) as error:  # the next run reads them again
            report.failed.append(f"unconsumed purchases: {error!r}")
            unconsumed = []
        for binding in unconsumed:
            start_request(budget)
            try:
                await consume(services, binding)
                report.consumed += 1
            except (TryAgain, Unavailable) as error:
                report.failed.append(f"consume {binding['id']}: {error!r}")
    return report


async def _window(
    services: Services, name: str, since: datetime | None, end: datetime, days: int
) -> datetime:
    start = since
    if start is None:
        mark = await services.purchases.mark(name)
        start = datetime.fromisoformat(mark["until"]) - OVERLAP if mark else end - FIRST
    return max(start, now() - timedelta(days=days) + timedelta(minutes=5))  # the store's limit


async def _follow(
    services: Services, report: CatchUp, key: str, transaction_id: str, budget: float
) -> None:
    start_request(budget)
    try:
        await follow_store_transaction(services, key, transaction_id)
        report.followed[key] += 1
    except (TryAgain, Unavailable, StoreUnavailable) as error:
        report.failed.append(f"{key} {transaction_id}: {error!r}")
    except Exception as error:  # one transaction's failure must not stop the others
        logger.exception("catch-up could not follow %s %s", key, transaction_id)
        report.failed.append(f"{key} {transaction_id}: {error!r}")


def _days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The window cut into consecutive pieces of at most `STEP`, oldest first."""
    pieces, at = [], start
    while at < end:
        pieces.append((at, min(at + STEP, end)))
        at = pieces[-1][1]
    return pieces or [(start, end)]


async def _catch_up_app_store(
    services: Services, report: CatchUp, since: datetime | None, end: datetime, budget: float
) -> None:
    app = _app_store(services)
    name = f"catchup#{APP_STORE}"
    start = await _window(services, name, since, end, APPLE_DAYS)
    report.windows[APP_STORE] = (iso(start), iso(end))
    for first, last in _days(start, end):  # a day at a time, each done one checkpointed
        failed = len(report.failed)
        for environment in app.environments:
            for kind in ("REFUND", "REFUND_REVERSED"):
                token: str | None = None
                while True:
                    start_request(budget)
                    try:
                        page = await ask_store(
                            services,
                            lambda: app.notification_history(
                                first,  # noqa: B023 - called at once
                                last,  # noqa: B023
                                environment=environment,  # noqa: B023
                                notification_type=kind,  # noqa: B023
                                pagination_token=token,  # noqa: B023
                            ),
                        )
                    except TryAgain as error:
                        report.failed.append(f"{APP_STORE} {environment} {kind}: {error!r}")
                        break
                    for note in page.notifications:
                        if note.transaction is not None:
                            found = note.transaction
                            key = store_key(APP_STORE, found.environment)
                            await _follow(services, report, key, found.transaction_id, budget)
                    if not page.has_more or not page.pagination_token:
                        break
                    token = page.pagination_token
        if len(report.failed) > failed:
            return  # the next run starts again from the last day done
        await services.purchases.set_mark(name, {"until": iso(last)})


async def _catch_up_play(
    services: Services, report: CatchUp, since: datetime | None, end: datetime, budget: float
) -> None:
    play = _play_store(services)
    name = f"catchup#{PLAY_STORE}"
    start = await _window(services, name, since, end, PLAY_DAYS)
    report.windows[PLAY_STORE] = (iso(start), iso(end))
    for first, last in _days(start, end):  # a day at a time, each done one checkpointed
        failed = len(report.failed)
        token: str | None = None
        while True:
            start_request(budget)
            try:
                page = await ask_store(
                    services,
                    lambda: play.voided_page(first, last, token),  # noqa: B023 - called at once
                )
            except TryAgain as error:
                report.failed.append(f"{PLAY_STORE} voided purchases: {error!r}")
                break
            for voided in page.voided:
                await _follow(services, report, PLAY_STORE, voided.transaction_id, budget)
            if not page.next_page_token:
                break
            token = page.next_page_token
        if len(report.failed) > failed:
            return  # the next run starts again from the last day done
        await services.purchases.set_mark(name, {"until": iso(last)})
