"""Money out: Earnings, Withdrawal, requestWithdrawal and the admin's settleWithdrawal."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry

from infra.accounts import NEW_ACCOUNT_DAYS, is_restricted, payout_status
from infra.dynamo import Item
from resolvers import accounts, withdrawals
from schema.accounts import User, Wallet
from schema.common import Info, Money, PageInfo, ctx, timestamp
from schema.errors import (
    AccountRestricted,
    AgeRestricted,
    BelowMinimum,
    DailyLimitExceeded,
    IdempotencyConflict,
    InsufficientDiamonds,
    InvalidInput,
    InvalidState,
    NotFound,
    PayoutAccountRequired,
    PayoutRefused,
    returns_user_errors,
)
from schema.payouts import PayoutAccountStatus


@strawberry.type
class Earnings:
    diamonds: int = strawberry.field(
        description="All diamonds not yet withdrawn: availableDiamonds + pendingDiamonds."
    )
    available_diamonds: int = strawberry.field(description="Diamonds that may be withdrawn now.")
    pending_diamonds: int = strawberry.field(
        description="Diamonds from recent gifts and event entries, still inside the hold period; "
        "a chargeback of the coins that paid for them can still reverse them."
    )
    owed_diamonds: int = strawberry.field(
        description="Diamonds that a reversal could not take back from pending diamonds "
        "because they had already matured or been withdrawn; they are repaid (CLAWBACK) from "
        "available diamonds first, then from new earnings as they mature, so availableDiamonds "
        "never counts diamonds that are owed."
    )
    next_available_at: datetime | None = strawberry.field(
        description="When the next pending diamonds become available; null when none are pending."
    )
    cash_value: Money = strawberry.field(description="What the diamonds are worth now.")
    minimum_withdrawal: Money
    remaining_today: Money = strawberry.field(
        description="Cash that may still be requested today (UTC) under the daily limit."
    )

    @classmethod
    def of(cls, view: withdrawals.EarningsView) -> Earnings:
        return cls(
            diamonds=view.diamonds,
            available_diamonds=view.available,
            pending_diamonds=view.pending,
            owed_diamonds=view.owed,
            next_available_at=(
                datetime.fromtimestamp(view.next_available, UTC)
                if view.next_available is not None
                else None
            ),
            cash_value=Money.of(view.cash, view.currency),
            minimum_withdrawal=Money.of(view.minimum, view.currency),
            remaining_today=Money.of(view.remaining_today, view.currency),
        )


@strawberry.enum
class WithdrawalStatus(Enum):
    PENDING = "PENDING"
    PAID = "PAID"
    REJECTED = "REJECTED"


@strawberry.enum
class WithdrawalOutcome(Enum):
    PAID = "PAID"
    REJECTED = "REJECTED"


@strawberry.type(
    description="What a reviewer weighs before paying a withdrawal: the creator's diamonds "
    "earned (all time), and how many came from accounts that were new when they gave or whose "
    "payments were later disputed; counted as gifts land and as disputes reverse them, and "
    "read as of the request. Admins only."
)
class WithdrawalReview:
    account_created_at: datetime | None
    earned_diamonds: int
    from_new_accounts_diamonds: int = strawberry.field(
        description=f"From accounts younger than {NEW_ACCOUNT_DAYS} days when they gave."
    )
    from_restricted_accounts_diamonds: int = strawberry.field(
        description="Reversed because the sender's payment was disputed."
    )
    new_accounts_percent: int
    restricted_accounts_percent: int


@strawberry.type
class Withdrawal:
    id: strawberry.ID
    diamonds: int
    amount: Money
    status: WithdrawalStatus
    created_at: datetime
    settled_at: datetime | None
    payout_reference: str | None = strawberry.field(
        description="The payment processor's transfer to the creator's payout account once PAID "
        "(null when paid outside the processor)."
    )
    returned_diamonds: int = strawberry.field(
        description="Diamonds given back to the creator because the processor reversed the "
        "transfer since (WITHDRAWAL_RETURNED entries); 0 otherwise."
    )
    item: strawberry.Private[Item]

    @strawberry.field(description="The creator (one batched read for a whole page).")
    async def account(self, info: Info) -> User:
        return await User.load(info, self.item["accountId"])

    @strawberry.field(description="Whether the creator is restricted now (admins only).")
    async def account_restricted(self, info: Info) -> bool | None:
        identity = ctx(info).identity
        if identity is None or not identity.is_admin:
            return None
        return is_restricted(await ctx(info).users.load(self.item["accountId"]))

    @strawberry.field(
        description="Whether the creator's payouts are enabled at the processor now, as last "
        "read from it (admins only; null for others)."
    )
    async def payout_account_status(self, info: Info) -> PayoutAccountStatus | None:
        identity = ctx(info).identity
        if identity is None or not identity.is_admin:
            return None
        return PayoutAccountStatus(
            payout_status(await ctx(info).users.load(self.item["accountId"]))
        )

    @strawberry.field(description="Review signals (admins only; null for others).")
    def review(self, info: Info) -> WithdrawalReview | None:
        found = self.item.get("review")
        identity = ctx(info).identity
        if not found or identity is None or not identity.is_admin:
            return None
        earned = found.get("earned", 0)
        return WithdrawalReview(
            account_created_at=timestamp(found["accountCreatedAt"])
            if found.get("accountCreatedAt")
            else None,
            earned_diamonds=earned,
            from_new_accounts_diamonds=found.get("fromNew", 0),
            from_restricted_accounts_diamonds=found.get("fromRestricted", 0),
            new_accounts_percent=100 * found.get("fromNew", 0) // earned if earned else 0,
            restricted_accounts_percent=100 * found.get("fromRestricted", 0) // earned
            if earned
            else 0,
        )

    @classmethod
    def of(cls, item: Item) -> Withdrawal:
        return cls(
            id=strawberry.ID(item["id"]),
            diamonds=item["diamonds"],
            amount=Money.of(item["amount"], item["currency"]),
            status=WithdrawalStatus(item["status"]),
            created_at=timestamp(item["createdAt"]),
            settled_at=timestamp(item["settledAt"]) if item.get("settledAt") else None,
            payout_reference=item.get("payoutReference"),
            returned_diamonds=item.get("returnedDiamonds", 0),
            item=item,
        )


@strawberry.type
class WithdrawalEdge:
    cursor: str
    node: Withdrawal


@strawberry.type
class WithdrawalConnection:
    edges: list[WithdrawalEdge]
    page_info: PageInfo

    @classmethod
    def of(
        cls, info: Info, items: list[Item], more: bool, pending: bool = False
    ) -> WithdrawalConnection:
        repo = ctx(info).services.withdrawals
        cursor = repo.pending_cursor if pending else repo.cursor
        edges = [WithdrawalEdge(cursor=cursor(i), node=Withdrawal.of(i)) for i in items]
        return cls(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], more),
        )


@strawberry.input
class RequestWithdrawalInput:
    diamonds: int
    idempotency_key: str


@strawberry.type
class WithdrawalRequested:
    withdrawal: Withdrawal
    account_id: strawberry.Private[str]

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet:
        return Wallet.of(await accounts.wallet(ctx(info), self.account_id))


@strawberry.input
class SettleWithdrawalInput:
    withdrawal_id: strawberry.ID
    outcome: WithdrawalOutcome


@strawberry.type
class WithdrawalSettled:
    withdrawal: Withdrawal


RequestWithdrawalResult = Annotated[
    WithdrawalRequested
    | InsufficientDiamonds
    | BelowMinimum
    | DailyLimitExceeded
    | AgeRestricted
    | IdempotencyConflict
    | InvalidInput
    | AccountRestricted
    | PayoutAccountRequired,
    strawberry.union("RequestWithdrawalResult"),
]
SettleWithdrawalResult = Annotated[
    WithdrawalSettled | NotFound | InvalidState | PayoutRefused,
    strawberry.union(
        "SettleWithdrawalResult",
        description="Settling again with the same outcome returns WithdrawalSettled and changes "
        "nothing; a different outcome is InvalidState.",
    ),
]


@strawberry.type
class WithdrawalMutations:
    @strawberry.mutation(
        description="Turn diamonds into a cash withdrawal, pending review. Adults only."
    )
    @returns_user_errors
    async def request_withdrawal(
        self, info: Info, input: RequestWithdrawalInput
    ) -> RequestWithdrawalResult:
        item = await withdrawals.request_withdrawal(
            ctx(info), input.diamonds, input.idempotency_key
        )
        return WithdrawalRequested(withdrawal=Withdrawal.of(item), account_id=item["accountId"])

    @strawberry.mutation(
        description="Admin only. PAID closes it; REJECTED returns its diamonds to the creator."
    )
    @returns_user_errors
    async def settle_withdrawal(
        self, info: Info, input: SettleWithdrawalInput
    ) -> SettleWithdrawalResult:
        item = await withdrawals.settle_withdrawal(
            ctx(info), str(input.withdrawal_id), input.outcome.value
        )
        return WithdrawalSettled(withdrawal=Withdrawal.of(item))


@strawberry.type
class WithdrawalQueries:
    @strawberry.field(
        description="Admin only: withdrawals waiting for review (PENDING), oldest first."
    )
    async def pending_withdrawals(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> WithdrawalConnection:
        items, more = await withdrawals.pending_withdrawals(ctx(info), first, after)
        return WithdrawalConnection.of(info, items, more, pending=True)
