"""The one place where domain errors become GraphQL: result-union members or errors."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from infra.dynamo import Unavailable
from infra.payments import ProviderUnavailable
from infra.stores import StoreUnavailable
from resolvers import errors
from schema.common import Money
from schema.payouts import PayoutAccountStatus

logger = logging.getLogger("livecoins")


@strawberry.interface(description="A failure the caller can act on.")
class UserError:
    message: str


@strawberry.type
class NotFound(UserError):
    pass


@strawberry.type
class InvalidInput(UserError):
    field: str = strawberry.field(description='The input field at fault, e.g. "quantity".')


@strawberry.type
class NotAllowed(UserError):
    pass


@strawberry.type
class AgeRestricted(UserError):
    pass


@strawberry.type
class IdempotencyConflict(UserError):
    pass


@strawberry.type
class InsufficientCoins(UserError):
    required: int
    available: int


@strawberry.type
class PaymentDeclined(UserError):
    pass


@strawberry.type
class InvalidState(UserError):
    pass


@strawberry.type
class InsufficientDiamonds(UserError):
    required: int
    available: int


@strawberry.type
class BelowMinimum(UserError):
    minimum: Money


@strawberry.type
class DailyLimitExceeded(UserError):
    remaining: Money


@strawberry.type
class StreamNotLive(UserError):
    pass


@strawberry.type
class AlreadyJoined(UserError):
    pass


@strawberry.type(
    description="A payment of this account was disputed while its coins were already spent: "
    "it cannot buy coins, send gifts, join events or withdraw until an admin clears it."
)
class AccountRestricted(UserError):
    pass


@strawberry.type(
    description="The card needs the buyer to authenticate (3-D Secure). Finish it in the "
    "browser with the payment provider's library (Stripe.js: handleNextAction with "
    "clientSecret); the coins are credited when the payment succeeds, and asking again with "
    "the same idempotencyKey then answers CoinsPurchased."
)
class PaymentActionRequired(UserError):
    client_secret: str
    purchase_id: strawberry.ID


@strawberry.type(
    description="The store's proof failed verification, belongs to another app or environment, "
    "is refunded or revoked, or names a product no coin package is sold as."
)
class ReceiptInvalid(UserError):
    pass


@strawberry.type(description="This store purchase was already redeemed by another account.")
class ReceiptAlreadyRedeemed(UserError):
    pass


@strawberry.type(
    description="The store has not finished taking the payment (e.g. a pending payment "
    "method); the coins are credited when it completes, and asking again with the same key "
    "then answers CoinsPurchased."
)
class PaymentPending(UserError):
    pass


@strawberry.type(description="Withdrawals need a payout account whose payouts are enabled.")
class PayoutAccountRequired(UserError):
    status: PayoutAccountStatus


@strawberry.type(
    description="The processor refused the transfer for good (e.g. the creator's payouts were "
    "disabled); the withdrawal stays PENDING until it is paid after the creator fixes it, or "
    "REJECTED."
)
class PayoutRefused(UserError):
    pass


_MEMBERS: dict[type[errors.UserError], Callable[[Any], Any]] = {
    errors.NotFound: lambda e: NotFound(message=e.message),
    errors.InvalidInput: lambda e: InvalidInput(message=e.message, field=e.field),
    errors.NotAllowed: lambda e: NotAllowed(message=e.message),
    errors.AgeRestricted: lambda e: AgeRestricted(message=e.message),
    errors.IdempotencyConflict: lambda e: IdempotencyConflict(message=e.message),
    errors.InsufficientCoins: lambda e: InsufficientCoins(
        message=e.message, required=e.required, available=e.available
    ),
    errors.PaymentDeclined: lambda e: PaymentDeclined(message=e.message),
    errors.InvalidState: lambda e: InvalidState(message=e.message),
    errors.StreamNotLive: lambda e: StreamNotLive(message=e.message),
    errors.InsufficientDiamonds: lambda e: InsufficientDiamonds(
        message=e.message, required=e.required, available=e.available
    ),
    errors.BelowMinimum: lambda e: BelowMinimum(
        message=e.message, minimum=Money.of(e.minimum, e.currency)
    ),
    errors.DailyLimitExceeded: lambda e: DailyLimitExceeded(
        message=e.message, remaining=Money.of(e.remaining, e.currency)
    ),
    errors.AlreadyJoined: lambda e: AlreadyJoined(message=e.message),
    errors.AccountRestricted: lambda e: AccountRestricted(message=e.message),
    errors.PaymentActionRequired: lambda e: PaymentActionRequired(
        message=e.message, client_secret=e.client_secret, purchase_id=strawberry.ID(e.purchase_id)
    ),
    errors.ReceiptInvalid: lambda e: ReceiptInvalid(message=e.message),
    errors.ReceiptAlreadyRedeemed: lambda e: ReceiptAlreadyRedeemed(message=e.message),
    errors.PaymentPending: lambda e: PaymentPending(message=e.message),
    errors.PayoutAccountRequired: lambda e: PayoutAccountRequired(
        message=e.message, status=PayoutAccountStatus(e.status)
    ),
    errors.PayoutRefused: lambda e: PayoutRefused(message=e.message),
}

P = ParamSpec("P")
R = TypeVar("R")


def returns_user_errors(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn a UserError raised below a mutation into the matching member of its result union."""

    @functools.wraps(resolver)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await resolver(*args, **kwargs)
        except errors.UserError as error:
            member: R = _MEMBERS[type(error)](error)
            return member

    return wrapper


_CODES: dict[type[Exception], str] = {
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.Forbidden: "FORBIDDEN",
    errors.BadUserInput: "BAD_USER_INPUT",
    errors.UnknownId: "NOT_FOUND",
    errors.PaymentsNotConfigured: "PAYMENTS_NOT_CONFIGURED",
    errors.PayoutsNotConfigured: "PAYOUTS_NOT_CONFIGURED",
    errors.FeedFull: "FEED_FULL",
}
# Transient failures the request could not absorb before its deadline (DynamoDB, the payment
# provider, a mobile store): the caller retries with the same idempotency key. Logged as
# warnings (they are expected), never masked.
_TRANSIENT = (errors.TryAgain, Unavailable, ProviderUnavailable, StoreUnavailable)
TRY_AGAIN_MESSAGE = "The service is busy; nothing was lost. Retry with the same idempotencyKey."


def _should_mask(error: GraphQLError) -> bool:
    """True hides the message; expected errors keep it and get their extensions.code."""
    original = error.original_error
    if original is None:  # syntax and validation errors: the caller's to fix
        return False
    if isinstance(original, GraphQLError) and error.path is None:
        # graphql-core's own words about the caller's variables ("Int cannot represent ..."),
        # raised before execution. With a path it would be ours: a value we failed to serialize.
        return False
    if isinstance(original, _TRANSIENT):
        logger.warning("TRY_AGAIN at %s: %r", error.path, original)
        error.message = TRY_AGAIN_MESSAGE
        error.extensions = {"code": "TRY_AGAIN"}
        return False
    for kind, code in _CODES.items():
        if isinstance(original, kind):
            error.extensions = {"code": code}
            if isinstance(original, errors.BadUserInput | errors.UnknownId):
                error.extensions["field"] = original.field
            return False
    logger.error("unexpected error in %s", error.path, exc_info=original)
    return True


class ErrorPolicy(MaskErrors):
    """Internal errors reach clients as "Internal error." with no message or trace."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_should_mask, error_message="Internal error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked
