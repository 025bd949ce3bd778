"""The mobile stores in the simulated world: the App Store and Google Play as the simulator's
processor plays them, and the clients each container calls them with.

`SimStores` is both stores' side, seeded and in memory, shaped as infra/app_store.py and
infra/play_store.py read them: consumables bought in either store (a quantity, an account token
or none, Apple's price in milliunits and currency, Production or Sandbox, Google's test and
promo purchases, purchases left pending), and what the stores do afterwards: Apple refunds
(all, or a prorated share) and reverses refunds, Google completes or cancels pending purchases,
voids some units or all of a purchase, and refunds what stays unconsumed (the 3-day lapse).
Every act returns the deliveries it causes (App Store Server Notifications V2 to
/webhooks/app-store, Pub/Sub pushes of real-time developer notifications to /webhooks/play),
sometimes twice; `forged` makes deliveries that must be refused. Proofs are signed with the
stores' own keys (an HMAC here: the certificate chains and OIDC tokens are the store tests'
business, tests/test_store_verification.py and tests/test_store_play.py), so a forged receipt,
notification or push token fails verification as it would.

`SimAppStore` / `SimPlayStore` are a container's clients, with the methods the code under test
calls (verify_transaction, transaction_info, notification_history, verify_notification;
purchase, consume, voided_page, verify_push). Every call to a store's server parks on the
world's scheduler and meets `STORE_FAULTS` (a timeout before or after it acted is
`StoreUnavailable`; a crash before or after kills the container, as the payment provider's
calls do); verifying a proof is local and meets none.

For the checker, `paid(charge_id)` is the money a credited store purchase moved (its `chargeId`
is "<store key>#<transaction id>") and `money_back(charge_id)` what the store has returned of
it now; `justify(...)` says whether a store user error was the right answer.

Plugging it in (this module changes no existing file; whoever integrates it does):

- tests/sim/world.py: in `World.__init__`, `self.stores = SimStores(random.Random(
  f"stores-{seed}"))`; at the end of `Container.__init__`, `world.stores.plug(self)` (its
  services get this container's two clients; `plug` needs `container.world.step`, `.pick`,
  `.crash` and `container.services`, which both have).
- tests/sim/run.py: settings with `store_test_accounts=SimStores.TESTERS`, and after the
  catalog is seeded `await SimStores.sell(services.catalog)` (packages sold as `PRODUCTS`).
  `_audit` needs nothing: without a bundle id or package name its services sell in no store.
- tests/sim/workload.py: `DOCS["redeemStorePurchase"] = REDEEM`; in `_new`, a few kinds that
  buy and redeem: `Attempt(user, "redeemStorePurchase", key, stores.buy(rng, user, others),
  kind)` (the input it returns is the mutation's, sometimes another account's purchase, a
  forged receipt, a test purchase, a pending one); in `_act`, `stores.act(rng)` now and then,
  its deliveries queued as the Stripe events are and sent by `deliver`, which must POST each
  to its own path with its headers (`(path, headers, body)`), expect 400/401 for
  `forged(rng)`'s and 200/503 for the rest; in `_justify`, `stores.justify(typename,
  attempt.input, attempt.user["sub"], self.item)` for ReceiptInvalid, ReceiptAlreadyRedeemed
  and PaymentPending; after the run, `stores.settle()` deliveries sent like `redeliver`'s.
- tests/sim/checker.py: where a purchase's `chargeId` is looked up in the provider's charges
  (the money that moved, and its money back), a `chargeId` with `SimStores.owns(...)` is the
  stores': `stores.paid(charge)` and `stores.money_back(charge)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra import runtime
from infra.catalog import CatalogRepo
from infra.stores import (
    APP_STORE,
    CANCELLED,
    FORGED,
    MALFORMED,
    PENDING,
    PLAY_STORE,
    PRODUCTION,
    PROMO,
    PURCHASED,
    REFUNDED,
    SANDBOX,
    TEST,
    UNKNOWN,
    ReceiptInvalid,
    StoreNotification,
    StoreTransaction,
    StoreUnavailable,
    account_token,
    play_transaction_id,
)
from tests.sim.scheduler import Crash

# product id -> (package id, coins, price in cents): both stores sell these ids
PRODUCTS = {
    "sim.coins70": ("coins-70", 70, 99),
    "sim.coins350": ("coins-350", 350, 499),
    "sim.coins1400": ("coins-1400", 1_400, 1_999),
}
STORE_FAULTS = {"timeout-before": 40, "timeout-after": 40, "crash-before": 10, "crash-after": 10}
REDEEM = """mutation S($i: RedeemStorePurchaseInput!) { r: redeemStorePurchase(input: $i) {
  __typename ... on CoinsPurchased { purchase { id coins status store } wallet { coins } }
  ... on UserError { message } } }"""
Delivery = tuple[str, dict[str, str], str]  # path, headers, body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now() -> float:
    return runtime.current().time()


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass
class ApplePurchase:
    transaction_id: str
    product_id: str
    quantity: int
    price: int  # milliunits, for the whole quantity
    currency: str
    environment: str  # PRODUCTION | SANDBOX
    account_token: str | None
    bought_at: float
    revoked_at: float | None = None
    prorated: int | None = None  # millipercent refunded, when prorated
    ever_revoked: bool = False


@dataclass
class PlayPurchase:
    token: str
    product_id: str
    quantity: int
    environment: str  # PRODUCTION | TEST | PROMO
    account_id: str | None
    bought_at: float
    state: str = PURCHASED  # PURCHASED | PENDING | CANCELLED
    refunded: int = 0  # units voided
    consumed: bool = False
    ever_pending: bool = False
    ever_refunded: bool = False

    @property
    def transaction_id(self) -> str:
        return play_transaction_id(self.token)


@dataclass
class Sent:
    """A notification a store sent: for Apple's history, and to deliver."""

    at: float
    kind: str
    environment: str | None
    transaction_id: str | None


@dataclass
class SimStores:
    rng: random.Random
    secret: bytes = b"sim-store-keys"
    apple: dict[str, ApplePurchase] = field(default_factory=dict)
    play: dict[str, PlayPurchase] = field(default_factory=dict)  # by token
    apple_sent: list[Sent] = field(default_factory=list)
    voided: list[tuple[float, str, int | None]] = field(default_factory=list)  # at, token, units
    delivered: list[Delivery] = field(default_factory=list)
    _n: int = 0

    TESTERS = frozenset({"u01"})
    PREFIXES = ("APP_STORE#", "APP_STORE_SANDBOX#", "PLAY_STORE#")

    # --- set-up -----------------------------------------------------------------------
    @staticmethod
    async def sell(catalog: CatalogRepo) -> None:
        """The packages of `PRODUCTS` sold as those product ids in both stores."""
        for product_id, (package_id, _, _) in PRODUCTS.items():
            package = await catalog.package(package_id)
            assert package is not None, package_id
            await catalog.put_package(
                {**package, "appStoreProductId": product_id, "playStoreProductId": product_id},
                package,
            )

    def plug(self, container: Any) -> None:
        """Give the container's services this world's two stores, called as its own."""
        container.services.app_store = SimAppStore(self, container)
        container.services.play_store = SimPlayStore(self, container)

    # --- signing, as the stores sign -----------------------------------------------------
    def _sign(self, payload: dict[str, Any], key: bytes | None = None) -> str:
        body = _b64(json.dumps(payload, sort_keys=True).encode())
        mac = hmac.new(key or self.secret, body.encode(), hashlib.sha256).digest()
        return f"{_b64(b'{}')}.{body}.{_b64(mac)}"  # a compact JWS's three parts

    def _verified(self, signed: str) -> dict[str, Any]:
        parts = signed.split(".") if isinstance(signed, str) else []
        if len(parts) != 3:
            raise ReceiptInvalid(MALFORMED, "not a compact JWS")
        expected = hmac.new(self.secret, parts[1].encode(), hashlib.sha256).digest()
        try:
            given = _unb64(parts[2])
            payload = json.loads(_unb64(parts[1]))
        except ValueError as error:
            raise ReceiptInvalid(MALFORMED, str(error)) from error
        if not hmac.compare_digest(expected, given):
            raise ReceiptInvalid(FORGED, "the signature does not verify")
        if not isinstance(payload, dict):
            raise ReceiptInvalid(MALFORMED, "not an object")
        return payload

    # --- buying -------------------------------------------------------------------------
    def _next(self) -> int:
        self._n += 1
        return self._n

    def buy(
        self, rng: random.Random, user: dict[str, Any], others: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A purchase made in one of the stores and the redeemStorePurchase input the app sends
        for it (its idempotencyKey added by the caller). Mostly the user's own purchase; now
        and then another account's (its token set), a receipt two accounts share (none set),
        a forged receipt, a sandbox / test purchase, a Google purchase left pending, one of
        a product no package is sold as, or one the user bought before (a new key)."""
        roll, sub = rng.random(), user["sub"]
        owner = rng.choice(others)["sub"] if others and roll < 0.06 else sub
        token = None if 0.06 <= roll < 0.16 else account_token(owner)
        product = rng.choice(list(PRODUCTS)) if roll >= 0.02 else "sim.unsold"
        if 0.16 <= roll < 0.22 and (self.apple or self.play):  # one bought before: a new key
            return self._again(rng)
        if rng.random() < 0.5:
            environment = SANDBOX if rng.random() < 0.08 else PRODUCTION
            tid = self._buy_apple(product, rng.choice([1, 1, 1, 2]), environment, token, rng)
            receipt = self.signed_transaction(tid)
            if 0.22 <= roll < 0.25:
                receipt = self._sign(self.apple[tid].__dict__ | {"id": tid}, b"attacker")
            return {"store": APP_STORE, "receipt": receipt}
        environment = rng.choice([TEST, PROMO]) if rng.random() < 0.08 else PRODUCTION
        pending = rng.random() < 0.1
        quantity = rng.choice([1, 1, 1, 3])
        token_ = self._buy_play(product, quantity, environment, token, pending)
        claimed = product if roll >= 0.25 or roll < 0.22 else rng.choice(list(PRODUCTS))
        return {"store": PLAY_STORE, "receipt": token_, "productId": claimed}

    def _again(self, rng: random.Random) -> dict[str, Any]:
        """A purchase made before: mostly one whose app named no account (a receipt anyone may
        send, so another account may have it already)."""
        shared = rng.random() < 0.7
        apple = [t for t, p in self.apple.items() if p.account_token is None or not shared]
        play = [t for t, p in self.play.items() if p.account_id is None or not shared]
        if not apple and not play:
            apple, play = list(self.apple), list(self.play)
        if apple and (not play or rng.random() < 0.5):
            tid = rng.choice(apple[-20:])
            return {"store": APP_STORE, "receipt": self.signed_transaction(tid)}
        token = rng.choice(play[-20:])
        return {"store": PLAY_STORE, "receipt": token, "productId": self.play[token].product_id}

    def _buy_apple(
        self,
        product: str,
        quantity: int,
        environment: str,
        token: str | None,
        rng: random.Random,
    ) -> str:
        tid = str(2_000_000_000 + self._next())
        unit, currency = rng.choice([(4990, "USD"), (449000, "INR"), (160000, "JPY")])
        self.apple[tid] = ApplePurchase(
            tid, product, quantity, unit * quantity, currency, environment, token, _now()
        )
        return tid

    def _buy_play(
        self, product: str, quantity: int, environment: str, token: str | None, pending: bool
    ) -> str:
        purchase_token = f"simtok{self._next():08d}.AO-J1Oz"
        self.play[purchase_token] = PlayPurchase(
            purchase_token,
            product,
            quantity,
            environment,
            token,
            _now(),
            state=PENDING if pending else PURCHASED,
            ever_pending=pending,
        )
        return purchase_token

    def signed_transaction(self, tid: str) -> str:
        """What StoreKit 2 hands the app: the transaction as Apple signs it now."""
        return self._sign({"id": tid, **self._apple_fields(self.apple[tid])})

    @staticmethod
    def _apple_fields(p: ApplePurchase) -> dict[str, Any]:
        return {k: v for k, v in p.__dict__.items() if k != "ever_revoked"}

    # --- the stores' own acts --------------------------------------------------------------
    def act(self, rng: random.Random) -> list[Delivery]:
        """One thing a store does to a purchase, and the deliveries it causes (none when lost,
        some twice)."""
        roll = rng.random()
        deliveries: list[Delivery] = []
        apple = list(self.apple.values())[-40:]
        play = list(self.play.values())[-40:]
        if roll < 0.35 and apple:
            purchase = rng.choice(apple)
            if purchase.revoked_at is None:
                prorated = rng.choice([None, None, 50_000, 33_333])
                deliveries.append(self.refund_apple(purchase.transaction_id, prorated))
            else:
                deliveries.append(self.reverse_apple(purchase.transaction_id))
        elif roll < 0.7 and play:
            bought = rng.choice(play)
            left = bought.quantity - bought.refunded
            if bought.state == PENDING:
                completed = rng.random() < 0.7
                deliveries.append(self.settle_pending(bought.token, completed))
            elif bought.state == PURCHASED and left > 0:
                units = rng.randint(1, left) if rng.random() < 0.5 else None
                if not bought.consumed and rng.random() < 0.2:
                    units = None  # not acknowledged for 3 days: Google refunds it whole
                deliveries.append(self.void_play(bought.token, units))
        elif roll < 0.8:
            deliveries += self.forged(rng)
        elif self.delivered:
            deliveries.append(rng.choice(self.delivered[-30:]))  # a duplicate, later
        lost = [d for d in deliveries if rng.random() < 0.1]  # never arrives: the catch-up's
        sent = [d for d in deliveries if d not in lost]
        return sent + [d for d in sent if rng.random() < 0.2]  # some twice

    def refund_apple(self, tid: str, prorated: int | None = None) -> Delivery:
        purchase = self.apple[tid]
        purchase.revoked_at, purchase.prorated, purchase.ever_revoked = _now(), prorated, True
        return self._notify_apple("REFUND", purchase)

    def reverse_apple(self, tid: str) -> Delivery:
        purchase = self.apple[tid]
        purchase.revoked_at, purchase.prorated = None, None
        return self._notify_apple("REFUND_REVERSED", purchase)

    def settle_pending(self, token: str, completed: bool) -> Delivery:
        purchase = self.play[token]
        purchase.state = PURCHASED if completed else CANCELLED
        return self._push(token, {"oneTimeProductNotification": {
            "notificationType": 1 if completed else 2,
            "purchaseToken": token,
            "sku": purchase.product_id,
        }})  # fmt: skip

    def void_play(self, token: str, units: int | None) -> Delivery:
        """Google refunds `units` of the purchase (None: all that are left)."""
        purchase = self.play[token]
        left = purchase.quantity - purchase.refunded
        units = left if units is None else min(units, left)
        purchase.refunded += units
        purchase.ever_refunded = True
        if purchase.refunded >= purchase.quantity:
            purchase.state = CANCELLED
        partial = purchase.refunded < purchase.quantity
        self.voided.append((_now(), token, units if partial else None))
        return self._push(token, {"voidedPurchaseNotification": {
            "purchaseToken": token,
            "productType": 2,
            "refundType": 2 if partial else 1,
        }})  # fmt: skip

    def forged(self, rng: random.Random) -> list[Delivery]:
        """Deliveries that must be refused (400 or 401) and change nothing."""
        tid = rng.choice(list(self.apple)) if self.apple else "1"
        note = {"kind": "REFUND", "uuid": f"forged-{self._next()}", "transaction": tid}
        apple: Delivery = (
            "/webhooks/app-store",
            {},
            json.dumps({"signedPayload": self._sign(note, b"x")}),
        )
        _, _, body = self._push(next(iter(self.play), "simtok0"), {"testNotification": {}}, False)
        play = ("/webhooks/play", {"Authorization": "Bearer sim.forged"}, body)
        return [apple, play]

    def is_forged(self, delivery: Delivery) -> bool:
        """Whether a delivery must be refused (it does not verify as the store's)."""
        path, headers, body = delivery
        if path == "/webhooks/play":
            expected = hmac.new(self.secret, b"push", hashlib.sha256).hexdigest()
            return headers.get("Authorization") != f"Bearer sim.{expected}"
        try:
            self._verified(json.loads(body)["signedPayload"])
        except ReceiptInvalid:
            return True
        return False

    def settle(self) -> list[Delivery]:
        """After the run: every pending purchase completes (its notification sent)."""
        return [
            self.settle_pending(p.token, completed=True)
            for p in self.play.values()
            if p.state == PENDING
        ]

    def _notify_apple(self, kind: str, purchase: ApplePurchase) -> Delivery:
        self.apple_sent.append(Sent(_now(), kind, purchase.environment, purchase.transaction_id))
        note = {
            "kind": kind,
            "uuid": f"apple-{self._next()}",
            "environment": purchase.environment,
            "transaction": self.signed_transaction(purchase.transaction_id),
            "at": _now(),
        }
        signed = json.dumps({"signedPayload": self._sign(note)})
        delivery: Delivery = ("/webhooks/app-store", {}, signed)
        self.delivered.append(delivery)
        return delivery

    def _push(self, token: str, notification: dict[str, Any], record: bool = True) -> Delivery:
        data = {"packageName": "sim.app", "eventTimeMillis": str(int(_now() * 1000))}
        data |= notification
        message = {
            "messageId": f"push-{self._next()}",
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
        }
        bearer = hmac.new(self.secret, b"push", hashlib.sha256).hexdigest()
        delivery = (
            "/webhooks/play",
            {"Authorization": f"Bearer sim.{bearer}"},
            json.dumps({"message": message}),
        )
        if record:
            self.delivered.append(delivery)
        return delivery

    # --- the stores' records, as their APIs answer ------------------------------------------
    def apple_transaction(self, tid: str, environment: str) -> StoreTransaction:
        purchase = self.apple.get(tid)
        if purchase is None or purchase.environment != environment:
            raise ReceiptInvalid(UNKNOWN, f"no transaction {tid} in {environment}")
        return self._apple_state(self._apple_fields(purchase) | {"id": tid})

    @staticmethod
    def _apple_state(fields: dict[str, Any]) -> StoreTransaction:
        revoked = fields.get("revoked_at") is not None
        prorated = fields.get("prorated")
        digits = {"JPY": 0}.get(fields["currency"], 2)
        return StoreTransaction(
            store=APP_STORE,
            transaction_id=fields["id"],
            product_id=fields["product_id"],
            quantity=fields["quantity"],
            environment=fields["environment"],
            state=REFUNDED if revoked else PURCHASED,
            purchased_at=_at(fields["bought_at"]),
            account_token=fields.get("account_token"),
            price=-(-fields["price"] // 10 ** (3 - digits)),
            currency=fields["currency"],
            refunded_quantity=fields["quantity"] if revoked and prorated is None else 0,
            refunded_share_millipercent=prorated if revoked else None,
            revoked_at=_at(fields.get("revoked_at")),
            product_type="Consumable",
        )

    def play_purchase(self, product_id: str, token: str) -> StoreTransaction:
        purchase = self.play.get(token)
        if purchase is None:
            raise ReceiptInvalid(UNKNOWN, "HTTP 400 The purchase token is invalid.")
        if purchase.product_id != product_id:
            raise ReceiptInvalid(UNKNOWN, "HTTP 400 not this product's token")
        state = purchase.state
        refunded = purchase.quantity if state == CANCELLED else purchase.refunded
        if state == PURCHASED and refunded >= purchase.quantity:
            state = REFUNDED
        return StoreTransaction(
            store=PLAY_STORE,
            transaction_id=purchase.transaction_id,
            product_id=purchase.product_id,
            quantity=purchase.quantity,
            environment=purchase.environment,
            state=state,
            purchased_at=_at(purchase.bought_at),
            account_token=purchase.account_id,
            refunded_quantity=refunded,
            purchase_token=token,
            consumed=purchase.consumed,
            acknowledged=purchase.consumed,
        )

    def consume(self, product_id: str, token: str) -> None:
        """Google's consume, idempotent from our side (infra/play_store.py's semantics)."""
        found = self.play_purchase(product_id, token)
        if found.consumed:
            return
        found.ensure_not_revoked()
        if found.state == PENDING:
            raise StoreUnavailable("play: consume refused while the purchase is pending")
        self.play[token].consumed = True

    # --- the checker's view ---------------------------------------------------------------
    @classmethod
    def owns(cls, charge_id: str) -> bool:
        return charge_id.startswith(cls.PREFIXES)

    def _by_charge(self, charge_id: str) -> ApplePurchase | PlayPurchase:
        key, _, tid = charge_id.partition("#")
        if key == PLAY_STORE:
            return next(p for p in self.play.values() if p.transaction_id == tid)
        return self.apple[tid]

    def paid(self, charge_id: str) -> tuple[int, str]:
        """The money a store purchase moved, as it is recorded: Apple's price, or Google's
        list price of the package for the quantity."""
        purchase = self._by_charge(charge_id)
        if isinstance(purchase, ApplePurchase):
            found = self.apple_transaction(purchase.transaction_id, purchase.environment)
            return found.price or 0, found.currency or ""
        _, _, cents = PRODUCTS[purchase.product_id]
        return cents * purchase.quantity, "USD"

    def money_back(self, charge_id: str) -> int:
        """What the store has returned of it now: all of a revoked purchase or Apple's prorated
        share, Google's refunded units' share; rounded up."""
        amount, _ = self.paid(charge_id)
        purchase = self._by_charge(charge_id)
        if isinstance(purchase, ApplePurchase):
            if purchase.revoked_at is None:
                return 0
            if purchase.prorated is None:
                return amount
            return min(amount, -(-amount * purchase.prorated // 100_000))
        refunded = purchase.quantity if purchase.state == CANCELLED else purchase.refunded
        return min(amount, -(-amount * refunded // purchase.quantity))

    def justify(
        self,
        typename: str,
        value: dict[str, Any],
        sub: str,
        item: Callable[[str, dict[str, Any]], dict[str, Any] | None],
    ) -> str | None:
        """Why a store user error would be wrong (None: the stores and tables justify it).
        `item(table, key)` reads the tables (outside the world: no faults)."""
        found = self._purchase_of(value)
        if typename == "ReceiptInvalid":
            return None if self._invalid(found, value, sub) else "the receipt is valid"
        if typename == "ReceiptAlreadyRedeemed":
            if found is None:
                return "an unknown purchase"
            key = self._key(found)
            binding = item("purchases", {"id": f"store#{key}#{found.transaction_id}"}) or {}
            owner = binding.get("accountId")
            return None if owner not in (None, sub) else f"bound to {owner}, asked by {sub}"
        if typename == "PaymentPending":
            pending = isinstance(found, PlayPurchase) and found.ever_pending
            return None if pending else "the purchase was never pending"
        return f"not a store answer: {typename}"

    def _purchase_of(self, value: dict[str, Any]) -> ApplePurchase | PlayPurchase | None:
        if value["store"] == PLAY_STORE:
            return self.play.get(value["receipt"])
        try:
            return self.apple.get(self._verified(value["receipt"])["id"])
        except ReceiptInvalid:
            return None

    @staticmethod
    def _key(found: ApplePurchase | PlayPurchase) -> str:
        if isinstance(found, PlayPurchase):
            return PLAY_STORE
        return APP_STORE if found.environment == PRODUCTION else f"{APP_STORE}_SANDBOX"

    def _invalid(
        self, found: ApplePurchase | PlayPurchase | None, value: dict[str, Any], sub: str
    ) -> bool:
        if found is None or found.product_id not in PRODUCTS:
            return True  # forged, unknown, or no package is sold as it
        if value.get("productId") not in (None, found.product_id):
            return True
        if found.environment != PRODUCTION and sub not in self.TESTERS:
            return True
        token = found.account_token if isinstance(found, ApplePurchase) else found.account_id
        if token is not None and token != account_token(sub):
            return True
        if isinstance(found, ApplePurchase):
            return found.ever_revoked
        return found.ever_refunded or found.state == CANCELLED


class _Client:
    """A container's connection to a store: each call parks, and may meet a fault."""

    def __init__(self, stores: SimStores, container: Any) -> None:
        self.stores = stores
        self.container = container

    async def _step(self, label: str, act: Callable[[], Any]) -> Any:
        world = self.container.world

        def run(parked: Any) -> Any:
            fault = world.pick(STORE_FAULTS, lambda kind: True)
            if fault is None:
                return act()
            if fault.endswith("-after"):
                try:
                    act()
                except (ReceiptInvalid, StoreUnavailable):
                    pass  # the caller never hears the answer either way
            if fault.startswith("crash"):
                world.crash(self.container)
                raise Crash(label)
            raise StoreUnavailable(f"{label}: {fault}")

        return await world.step(label, self.container, run)


class SimAppStore(_Client):
    environments = (PRODUCTION, SANDBOX)

    async def verify_transaction(self, signed: str) -> StoreTransaction:
        fields = self.stores._verified(signed)
        if "product_id" not in fields:
            raise ReceiptInvalid(MALFORMED, "not a transaction")
        return SimStores._apple_state(fields)

    async def transaction_info(self, tid: str, environment: str = PRODUCTION) -> StoreTransaction:
        return await self._step(
            "app_store.transaction_info",
            lambda: self.stores.apple_transaction(tid, environment),
        )

    async def verify_notification(self, signed: str) -> StoreNotification:
        note = self.stores._verified(signed)
        if "kind" not in note or "uuid" not in note:
            raise ReceiptInvalid(MALFORMED, "not a notification")
        found = (
            await self.verify_transaction(note["transaction"]) if "transaction" in note else None
        )
        return StoreNotification(
            store=APP_STORE,
            notification_id=note["uuid"],
            kind=note["kind"],
            subtype=None,
            environment=note.get("environment"),
            sent_at=_at(note.get("at")),
            transaction=found,
            transaction_id=found.transaction_id if found else None,
        )

    async def notification_history(
        self,
        start: datetime,
        end: datetime,
        *,
        environment: str = PRODUCTION,
        notification_type: str | None = None,
        transaction_id: str | None = None,
        only_failures: bool = False,
        pagination_token: str | None = None,
    ) -> Any:
        from infra.app_store import NotificationPage

        def read() -> NotificationPage:
            page_size, offset = 20, int(pagination_token or 0)
            found = [
                sent
                for sent in self.stores.apple_sent
                if sent.environment == environment
                and start.timestamp() <= sent.at <= end.timestamp()
                and notification_type in (None, sent.kind)
            ]
            page = found[offset : offset + page_size]
            notes = [
                StoreNotification(
                    store=APP_STORE,
                    notification_id=f"history-{sent.at}",
                    kind=sent.kind,
                    subtype=None,
                    environment=sent.environment,
                    sent_at=_at(sent.at),
                    transaction=self.stores.apple_transaction(
                        sent.transaction_id or "", sent.environment or PRODUCTION
                    ),
                    transaction_id=sent.transaction_id,
                )
                for sent in page
            ]
            more = offset + len(page) < len(found)
            return NotificationPage(notes, str(offset + len(page)) if more else None, more)

        return await self._step("app_store.notification_history", read)


class SimPlayStore(_Client):
    async def purchase(self, product_id: str, token: str) -> StoreTransaction:
        return await self._step(
            "play.purchase", lambda: self.stores.play_purchase(product_id, token)
        )

    async def consume(self, product_id: str, token: str) -> None:
        await self._step("play.consume", lambda: self.stores.consume(product_id, token))

    async def voided_page(
        self,
        start: datetime,
        end: datetime | None = None,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Any:
        from infra.play_store import VoidedPage, VoidedPurchase

        def read() -> VoidedPage:
            until = (end.timestamp() if end else _now()) + 0.0
            found = [
                VoidedPurchase(
                    play_transaction_id(token),
                    token,
                    None,
                    _at(self.stores.play[token].bought_at),
                    _at(at),
                    units,
                    "user",
                    "remorse",
                )
                for at, token, units in self.stores.voided
                if start.timestamp() <= at <= until
            ]
            offset = int(page_token or 0)
            page = found[offset : offset + max_results]
            more = offset + len(page) < len(found)
            return VoidedPage(page, str(offset + len(page)) if more else None)

        return await self._step("play.voided", read)

    async def verify_push(self, authorization: str | None, body: bytes) -> StoreNotification:
        expected = hmac.new(self.stores.secret, b"push", hashlib.sha256).hexdigest()
        if authorization != f"Bearer sim.{expected}":
            raise ReceiptInvalid(FORGED, "the push token does not verify")
        try:
            message = json.loads(body)["message"]
            data = json.loads(base64.b64decode(message["data"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ReceiptInvalid(MALFORMED, str(error)) from error
        common: dict[str, Any] = {
            "store": PLAY_STORE,
            "notification_id": message["messageId"],
            "environment": None,
            "sent_at": None,
            "subtype": None,
        }
        if "oneTimeProductNotification" in data:
            one = data["oneTimeProductNotification"]
            kind = "ONE_TIME_PURCHASED" if one["notificationType"] == 1 else "ONE_TIME_CANCELED"
            token = one["purchaseToken"]
        elif "voidedPurchaseNotification" in data:
            kind, token = "VOIDED", data["voidedPurchaseNotification"]["purchaseToken"]
        else:
            return StoreNotification(**common, kind="TEST")
        return StoreNotification(
            **common,
            kind=kind,
            transaction_id=play_transaction_id(token),
            purchase_token=token,
        )


__all__ = ["PRODUCTS", "REDEEM", "STORE_FAULTS", "SimAppStore", "SimPlayStore", "SimStores"]
