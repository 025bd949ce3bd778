"""Domain errors, raised deep down and turned into GraphQL at one place (schema/errors.py).

`UserError` subclasses are failures a caller can act on: they become members of a mutation's
result union. `Unauthenticated`, `Forbidden` and `BadUserInput` become GraphQL errors with
extensions.code, for fields whose type has no union to carry them; `TryAgain` (and the
infrastructure's own `Unavailable` errors) become extensions.code TRY_AGAIN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass
class UserError(Exception):
    message: str
    registry: ClassVar[dict[str, type[UserError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        UserError.registry[cls.__name__] = cls

    def to_record(self) -> dict[str, Any]:
        """A JSON-able form, kept in an idempotency record to replay the same answer."""
        return {"type": type(self).__name__, **asdict(self)}

    @staticmethod
    def from_record(record: dict[str, Any]) -> UserError:
        fields = dict(record)
        cls = UserError.registry[fields.pop("type")]
        return cls(**fields)


@dataclass
class NotFound(UserError):
    pass


@dataclass
class InvalidInput(UserError):
    field: str = ""


@dataclass
class NotAllowed(UserError):
    pass


@dataclass
class AgeRestricted(UserError):
    pass


@dataclass
class IdempotencyConflict(UserError):
    pass


@dataclass
class InsufficientCoins(UserError):
    required: int = 0
    available: int = 0


@dataclass
class PaymentDeclined(UserError):
    pass


@dataclass
class InvalidState(UserError):
    pass


@dataclass
class StreamNotLive(UserError):
    pass


@dataclass
class AlreadyJoined(UserError):
    pass


@dataclass
class AccountRestricted(UserError):
    pass


def restricted() -> AccountRestricted:
    return AccountRestricted(
        "A payment of this account was refunded or disputed after its coins were spent: it "
        "cannot buy, send gifts, join events or withdraw until the dispute is won or support "
        "clears it."
    )


@dataclass
class PaymentActionRequired(UserError):
    """Not an error: the card needs the buyer's authentication (3-D Secure) first."""

    client_secret: str = ""
    purchase_id: str = ""


@dataclass
class ReceiptInvalid(UserError):
    """A store's proof that is not one to credit (forged, of another app, environment or
    account, refunded, or of a product no package is sold as)."""


@dataclass
class ReceiptAlreadyRedeemed(UserError):
    pass


@dataclass
class PaymentPending(UserError):
    """Not an error: the store has not taken the payment yet; never remembered under a key."""


@dataclass
class InsufficientDiamonds(UserError):
    required: int = 0
    available: int = 0


@dataclass
class BelowMinimum(UserError):
    minimum: int = 0
    currency: str = "USD"


@dataclass
class DailyLimitExceeded(UserError):
    remaining: int = 0
    currency: str = "USD"


@dataclass
class PayoutAccountRequired(UserError):
    """Withdrawals need a payout account whose payouts are enabled; `status` is its own."""

    status: str = "NOT_CONNECTED"


@dataclass
class PayoutRefused(UserError):
    """The payouts processor refused the transfer for good; the withdrawal stays PENDING."""


class Unauthenticated(Exception):
    code = "UNAUTHENTICATED"


class Forbidden(Exception):
    code = "FORBIDDEN"


class PaymentsNotConfigured(Exception):
    """This deployment has no payment provider (LIVECOINS_PAYMENT_PROVIDER=none): purchases
    and refunds are refused before anything is written. Not retryable."""

    code = "PAYMENTS_NOT_CONFIGURED"


class PayoutsNotConfigured(Exception):
    """This deployment has no payouts processor (LIVECOINS_PAYOUTS_PROVIDER=none): there is
    no payout account to onboard; withdrawals are paid by hand. Not retryable."""

    code = "PAYOUTS_NOT_CONFIGURED"


class TryAgain(Exception):
    """A transient failure this request could not absorb in time (DynamoDB or the payment
    provider busy, slow or unreachable). It is never remembered under an idempotency key:
    a retry with the same key finishes what this request started."""

    code = "TRY_AGAIN"


class BadUserInput(Exception):
    """Bad arguments to a field that has no result union (queries, admin upserts)."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownId(Exception):
    """An id that names nothing, for fields whose type has no union to carry NotFound (the
    giftFeed subscription)."""

    code = "NOT_FOUND"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class FeedFull(Exception):
    """The stream has its cap of giftFeed subscribers (never refused: its creator); its
    streamDigest is the way to follow it."""

    code = "FEED_FULL"
