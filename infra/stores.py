"""In-app purchases in the mobile stores: what the rest of LiveCoins sees of a store purchase.

Two stores sell coins in the apps, each behind its own module, imported only where a deployment
configures it (their libraries take a measurable share of a cold start):
- the App Store (infra/app_store.py): StoreKit 2 signed transactions and App Store Server
  Notifications V2 verified with Apple's `app-store-server-library`, and the App Store Server
  API's refund, notification and transaction reads;
- Google Play (infra/play_store.py): purchase tokens checked and consumed with the Android
  Publisher API, voided purchases, and real-time developer notifications by Pub/Sub push.

Both answer with a `StoreTransaction`. A call fails two ways, like a payment provider's
(infra/payments.py):
- `ReceiptInvalid(reason)`: a definite answer; the proof is forged, of another app or
  environment, malformed, or unknown to the store. Asking again gives the same answer.
- `StoreUnavailable`: no definite answer (a timeout, a 5xx, a rate limit, a dropped connection,
  the store refusing our own credentials): the call may or may not have acted. Callers keep
  their state and ask again later; they never assume that nothing happened.

This module imports nothing beyond the standard library: it is on the GraphQL function's import
path.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.app_store import AppStore
    from infra.play_store import PlayStore

APP_STORE, PLAY_STORE = "APP_STORE", "PLAY_STORE"

# StoreTransaction.state
PURCHASED, PENDING, REFUNDED, CANCELLED = "purchased", "pending", "refunded", "cancelled"

# StoreTransaction.environment: real money only in PRODUCTION. Apple's Sandbox (testers, and App
# Review, which buys in the Sandbox against production servers); Google's license testers
# (TEST), promo codes (PROMO) and rewarded products (REWARDED) pay nothing.
PRODUCTION, SANDBOX, TEST, PROMO, REWARDED = "production", "sandbox", "test", "promo", "rewarded"

# ReceiptInvalid.reason
FORGED = "forged"  # the signature or certificate chain does not verify
WRONG_APP = "wrong_app"  # another bundle id / app Apple id / package name
WRONG_ENVIRONMENT = "wrong_environment"  # e.g. a Sandbox transaction on a Sandbox-less stack
WRONG_PRODUCT = "wrong_product"  # the store's record names another product than claimed
MALFORMED = "malformed"  # not a JWS, not JSON, fields missing or of the wrong type
UNKNOWN = "unknown"  # the store does not know this transaction or purchase token
REVOKED = "revoked"  # refunded, revoked or cancelled: nothing left to credit


class ReceiptInvalid(Exception):
    """The store's proof is definitely not one to credit; `reason` is one of the constants
    above, `detail` says more for logs (never shown to a buyer as is)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StoreUnavailable(Exception):
    """The store did not give a definite answer; ask again later (the same call is safe to
    repeat: reads change nothing, consume and acknowledge are idempotent)."""


@dataclass(frozen=True)
class StoreTransaction:
    """One store purchase as the store says it is now (or was when it signed it: an App Store
    transaction the device sent is Apple's statement at its `signedDate`)."""

    store: str  # APP_STORE | PLAY_STORE
    # The store's unique id of this purchase, the key it is redeemed once under. Apple: the
    # transactionId. Google: play_transaction_id(purchase token), because the token is the one
    # id every state has (a pending purchase has no orderId yet) and the one that the product
    # read, voided purchases and notifications all name.
    transaction_id: str
    product_id: str
    quantity: int
    environment: str  # PRODUCTION | SANDBOX | TEST | PROMO | REWARDED
    state: str  # PURCHASED | PENDING | REFUNDED | CANCELLED
    purchased_at: datetime | None
    # Apple's appAccountToken (a UUID, lower case) / Google's obfuscatedExternalAccountId, set
    # by the app at purchase time to name the buyer's account; None when the app set none.
    account_token: str | None = None
    # What the buyer paid for the whole quantity, in the currency's minor units, when the
    # store's data says (Apple's transactions since 2023 do; Google's purchase record never).
    price: int | None = None
    currency: str | None = None
    # Units taken back by the store: Apple's full refund is the whole quantity; Google's
    # quantity-based partial refunds are quantity - refundableQuantity.
    refunded_quantity: int = 0
    # Apple's REFUND_PRORATED: the share refunded, in thousandths of a percent (100000 = all);
    # None otherwise. The caller decides how a share of a quantity rounds.
    refunded_share_millipercent: int | None = None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    order_id: str | None = None  # Google's orderId ("GPA...."), absent while pending
    # Google: the token itself, kept to consume the purchase; never logged.
    purchase_token: str | None = field(default=None, repr=False)
    original_transaction_id: str | None = None  # Apple
    product_type: str | None = None  # Apple's type ("Consumable", ...)
    consumed: bool | None = None  # Google's consumptionState (None: Apple)
    acknowledged: bool | None = None  # Google's acknowledgementState (None: Apple)
    region: str | None = None  # Google's regionCode / Apple's storefront (ISO 3166 alpha-3)

    @property
    def is_production(self) -> bool:
        """Real money: neither a sandbox, test, promo nor rewarded purchase (those are redeemable
        only by the deployment's allow-listed accounts)."""
        return self.environment == PRODUCTION

    def ensure_not_revoked(self) -> None:
        """Raises ReceiptInvalid(REVOKED) when the store has taken the whole purchase back or
        cancelled it; a pending purchase is not refused here (the caller answers PaymentPending)."""
        if self.state in (REFUNDED, CANCELLED):
            raise ReceiptInvalid(REVOKED, f"the store says {self.state}")


@dataclass(frozen=True)
class StoreNotification:
    """A verified notification from a store (App Store Server Notifications V2, or a Google Play
    real-time developer notification delivered by Pub/Sub push)."""

    store: str
    # A unique id for deduplication: Apple's notificationUUID; Pub/Sub's messageId.
    notification_id: str
    # Apple: notificationType ("REFUND", "REFUND_REVERSED", "ONE_TIME_CHARGE", "TEST", ...),
    # kept as Apple sends it so types added later still arrive. Google: ONE_TIME_PURCHASED,
    # ONE_TIME_CANCELED, VOIDED, TEST or SUBSCRIPTION (see infra/play_store.py).
    kind: str
    subtype: str | None
    environment: str | None  # Apple: PRODUCTION | SANDBOX; Google: None (not said)
    sent_at: datetime | None
    # Apple: the verified transaction the notification carries, when it carries one.
    transaction: StoreTransaction | None = None
    # Google: the purchase the notification names (its transaction id and token), for a read
    # of the purchase's current state; the notification itself is only the trigger.
    transaction_id: str | None = None
    purchase_token: str | None = field(default=None, repr=False)
    product_id: str | None = None
    order_id: str | None = None
    partial: bool = False  # Google VOIDED: a quantity-based partial refund


# The namespace of the account tokens apps set on purchases (published for app developers: an
# app computes the same UUIDv5 of the signed-in account's id). Never change it: tokens already
# in the stores' records would stop matching their accounts.
ACCOUNT_TOKEN_NAMESPACE = uuid.UUID("0650ac50-8c75-4250-bff2-bbe2b35d86e1")


def account_token(account_id: str) -> str:
    """The token an app sets on a purchase to name the buyer's LiveCoins account: Apple's
    appAccountToken (a UUID) and Google's obfuscatedExternalAccountId (at most 64 characters,
    not the account id itself) alike. Compare it with StoreTransaction.account_token."""
    return str(uuid.uuid5(ACCOUNT_TOKEN_NAMESPACE, account_id))


def play_transaction_id(purchase_token: str) -> str:
    """A Google purchase's transaction id: the SHA-256 of its purchase token (64 hex digits),
    a key of fixed size that does not carry the token itself."""
    return hashlib.sha256(purchase_token.encode()).hexdigest()


def from_millis(value: Any) -> datetime | None:
    """A store's milliseconds since the epoch (a number, or Google's decimal string)."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError) as error:
        raise ReceiptInvalid(MALFORMED, f"not a time in milliseconds: {value!r}") from error


# ISO 4217 minor-unit digits of the currencies whose digits are not 2.
_DIGITS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


def minor_units(milliunits: int, currency: str) -> int:
    """Apple's price (thousandths of the currency's unit) in the currency's minor units; a
    remainder below the minor unit (not seen in Apple's price points) rounds half up."""
    digits = _DIGITS.get(currency.upper(), 2)
    if digits >= 3:
        return milliunits * 10 ** (digits - 3)
    divisor = 10 ** (3 - digits)
    whole, rest = divmod(milliunits, divisor)
    return whole + (1 if 2 * rest >= divisor else 0)


def app_store_from(settings: Any) -> AppStore | None:
    """The App Store verifier and API client a deployment configured, or None when it sells no
    coins in the App Store (no LIVECOINS_APP_STORE_BUNDLE_ID)."""
    if not settings.app_store_bundle_id:
        return None
    from infra.app_store import AppStore  # the library and its crypto: imported on first use

    return AppStore.from_settings(settings)


def play_store_from(settings: Any) -> PlayStore | None:
    """The Google Play client a deployment configured, or None when it sells no coins on Google
    Play (no LIVECOINS_PLAY_PACKAGE_NAME)."""
    if not settings.play_package_name:
        return None
    from infra.play_store import PlayStore  # google-auth and requests: imported on first use

    return PlayStore.from_settings(settings)
