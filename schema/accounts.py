"""Accounts: the signed-in Account, public User, wallet and ledger (Transaction)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry

from infra.accounts import is_restricted
from infra.dynamo import Item
from resolvers import accounts, payouts
from resolvers.identity import is_adult
from schema.common import Info, PageInfo, ctx, timestamp
from schema.errors import (
    AccountRestricted,
    AgeRestricted,
    InvalidInput,
    NotFound,
    returns_user_errors,
)
from schema.payouts import (
    PayoutAccount,
    PayoutAccountStatus,
    PayoutOnboardingStarted,
    StartPayoutOnboardingInput,
)

if TYPE_CHECKING:
    from schema.gifts import GiftTransfer
    from schema.withdrawals import Earnings, WithdrawalConnection


@strawberry.type
class User:
    id: strawberry.ID
    display_name: str

    @classmethod
    def of(cls, item: Item) -> User:
        return cls(id=strawberry.ID(item["id"]), display_name=item["displayName"])

    @classmethod
    async def load(cls, info: Info, user_id: str) -> User:
        """Through the request's DataLoader: every user of a response in one BatchGetItem."""
        item = await ctx(info).users.load(user_id)
        return cls.of(item) if item else cls(id=strawberry.ID(user_id), display_name="")


@strawberry.type
class Wallet:
    coins: int = strawberry.field(description="Coins available to spend.")
    diamonds: int = strawberry.field(description="Diamonds earned and not yet withdrawn.")

    @classmethod
    def of(cls, balances: accounts.Balances) -> Wallet:
        return cls(coins=balances.coins, diamonds=balances.diamonds)


@strawberry.enum
class TransactionKind(Enum):
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    GIFT_SENT = "GIFT_SENT"
    GIFT_RECEIVED = "GIFT_RECEIVED"
    EVENT_ENTRY = "EVENT_ENTRY"
    EVENT_INCOME = "EVENT_INCOME"
    WITHDRAWAL = "WITHDRAWAL"
    WITHDRAWAL_RETURNED = "WITHDRAWAL_RETURNED"
    CHARGEBACK = strawberry.enum_value(
        "CHARGEBACK", description="Coins taken back after the buyer's payment was disputed."
    )
    GIFT_REVERSED = strawberry.enum_value(
        "GIFT_REVERSED",
        description="Pending diamonds taken back from a recipient because the gift was paid "
        "with coins whose payment was disputed.",
    )
    CLAWBACK = strawberry.enum_value(
        "CLAWBACK",
        description="Diamonds taken to repay what a reversal could not take back from pending "
        "diamonds (see Earnings.owedDiamonds).",
    )


@strawberry.type(description="One ledger entry of one account.")
class Transaction:
    id: strawberry.ID
    kind: TransactionKind
    coins: int = strawberry.field(description="Signed change to the account's coins.")
    diamonds: int = strawberry.field(description="Signed change to the account's diamonds.")
    reference_id: strawberry.ID = strawberry.field(
        description="The purchase, gift transfer, event or withdrawal this entry belongs to."
    )
    created_at: datetime

    @strawberry.field(
        description="The gift transfer this entry belongs to (GIFT_SENT, GIFT_RECEIVED, "
        "GIFT_REVERSED), else null; batched per request."
    )
    async def transfer(
        self, info: Info
    ) -> Annotated[GiftTransfer, strawberry.lazy("schema.gifts")] | None:
        from schema.gifts import GiftTransfer

        item = await accounts.transfer(ctx(info), self.kind.value, str(self.reference_id))
        return GiftTransfer.of(item) if item else None


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo


@strawberry.type
class Account:
    id: strawberry.ID
    display_name: str
    item: strawberry.Private[Item]

    @strawberry.field(
        description="True when the token's birthdate claim shows 18 or older; "
        "a missing birthdate counts as not adult."
    )
    def is_adult(self, info: Info) -> bool:
        identity = ctx(info).identity
        return identity is not None and is_adult(identity.birthdate, ctx(info).today)

    @strawberry.field(
        description="True after a payment of this account was refunded or disputed while its "
        "coins were already spent: it cannot buy coins, send gifts, join events or withdraw "
        "until every such dispute is won or an admin clears it."
    )
    def restricted(self) -> bool:
        return is_restricted(self.item)

    @strawberry.field(
        description="Where this account's withdrawals are paid: its connected account at the "
        "payment processor."
    )
    async def payout_account(self, info: Info) -> PayoutAccount:
        return _payout_account(await payouts.payout_account(ctx(info), self.item))

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet:
        return Wallet.of(await accounts.balances(ctx(info), self.item))

    @strawberry.field(description="Newest first.")
    async def transactions(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> TransactionConnection:
        items, more = await accounts.transactions(ctx(info), self.item, first, after)
        ledger = ctx(info).services.ledger
        edges = [
            TransactionEdge(
                cursor=ledger.cursor(i),
                node=Transaction(
                    id=strawberry.ID(i["entryId"]),
                    kind=TransactionKind(i["kind"]),
                    coins=i["coins"],
                    diamonds=i["diamonds"],
                    reference_id=strawberry.ID(i["referenceId"]),
                    created_at=timestamp(i["createdAt"]),
                ),
            )
            for i in items
        ]
        return TransactionConnection(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], more),
        )

    @strawberry.field
    async def earnings(
        self, info: Info
    ) -> Annotated[Earnings, strawberry.lazy("schema.withdrawals")]:
        from resolvers.withdrawals import earnings
        from schema.withdrawals import Earnings

        return Earnings.of(await earnings(ctx(info), self.item))

    @strawberry.field(description="Newest first.")
    async def withdrawals(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Annotated[WithdrawalConnection, strawberry.lazy("schema.withdrawals")]:
        from resolvers.withdrawals import withdrawals
        from schema.withdrawals import WithdrawalConnection

        items, more = await withdrawals(ctx(info), self.item["id"], first, after)
        return WithdrawalConnection.of(info, items, more)

    @classmethod
    def of(cls, item: Item) -> Account:
        return cls(id=strawberry.ID(item["id"]), display_name=item["displayName"], item=item)


@strawberry.input
class UpdateProfileInput:
    display_name: str = strawberry.field(description="1 to 50 characters after trimming.")


@strawberry.type
class ProfileUpdated:
    user: User


UpdateProfileResult = Annotated[
    ProfileUpdated | InvalidInput, strawberry.union("UpdateProfileResult")
]
StartPayoutOnboardingResult = Annotated[
    PayoutOnboardingStarted | AgeRestricted | AccountRestricted | InvalidInput,
    strawberry.union("StartPayoutOnboardingResult"),
]


def _payout_account(found: payouts.PayoutView) -> PayoutAccount:
    return PayoutAccount(
        status=PayoutAccountStatus(found.status), requirements_due=list(found.requirements_due)
    )


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The signed-in account.")
    async def me(self, info: Info) -> Account:
        return Account.of(await accounts.me(ctx(info)))

    @strawberry.field
    async def user(self, info: Info, id: strawberry.ID) -> User | None:
        item = await accounts.user(ctx(info), str(id))
        return User.of(item) if item else None


@strawberry.type
class AccountMutations:
    @strawberry.mutation
    @returns_user_errors
    async def update_profile(self, info: Info, input: UpdateProfileInput) -> UpdateProfileResult:
        item = await accounts.update_profile(ctx(info), input.display_name)
        return ProfileUpdated(user=User.of(item))

    @strawberry.mutation(
        description="Start or resume the payment processor's hosted onboarding for receiving "
        "payouts (identity, bank account, tax details); answers the URL to send the creator "
        "to. Adults only."
    )
    @returns_user_errors
    async def start_payout_onboarding(
        self, info: Info, input: StartPayoutOnboardingInput
    ) -> StartPayoutOnboardingResult:
        link, found = await payouts.start_onboarding(ctx(info), input.return_url, input.refresh_url)
        return PayoutOnboardingStarted(
            url=link.url,
            expires_at=datetime.fromtimestamp(link.expires_at, UTC),
            payout_account=_payout_account(found),
        )


@strawberry.input
class ClearRestrictionInput:
    account_id: strawberry.ID


@strawberry.type
class RestrictionCleared:
    user: User


ClearRestrictionResult = Annotated[
    RestrictionCleared | NotFound, strawberry.union("ClearRestrictionResult")
]


@strawberry.type
class RestrictionMutations:
    @strawberry.mutation(
        description="Admin only. Lift an account's restriction after a dispute (every dispute "
        "holding it); the account may buy, gift, join and withdraw again."
    )
    @returns_user_errors
    async def clear_restriction(
        self, info: Info, input: ClearRestrictionInput
    ) -> ClearRestrictionResult:
        item = await accounts.clear_restriction(ctx(info), str(input.account_id))
        return RestrictionCleared(user=User.of(item))
