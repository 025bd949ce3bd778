"""Payouts: the creator's PayoutAccount and the onboarding that connects it (the field and the
mutation live on Account, schema/accounts.py). Imports nothing of the schema's own, so that
schema/errors.py can name PayoutAccountStatus."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry


@strawberry.enum
class PayoutAccountStatus(Enum):
    NOT_CONNECTED = strawberry.enum_value(
        "NOT_CONNECTED", description="No payout account yet: startPayoutOnboarding creates one."
    )
    ONBOARDING = strawberry.enum_value(
        "ONBOARDING", description="Onboarding started; the processor still needs requirementsDue."
    )
    ENABLED = strawberry.enum_value(
        "ENABLED", description="Payouts enabled: withdrawals can be requested and paid."
    )
    RESTRICTED = strawberry.enum_value(
        "RESTRICTED",
        description="The processor disabled payouts (e.g. verification failed or information "
        "is overdue).",
    )


@strawberry.type
class PayoutAccount:
    status: PayoutAccountStatus
    requirements_due: list[str] = strawberry.field(
        description="What the processor still needs from the creator, in its own terms (e.g. "
        "individual.verification.document)."
    )


@strawberry.input
class StartPayoutOnboardingInput:
    return_url: str = strawberry.field(
        description="Where the processor sends the creator back when onboarding ends; an https "
        "URL (or a local one on the local server) on an origin the deployment allows."
    )
    refresh_url: str = strawberry.field(
        description="Where the processor sends the creator when the link expired or was "
        "already used."
    )


@strawberry.type
class PayoutOnboardingStarted:
    url: str
    expires_at: datetime
    payout_account: PayoutAccount
