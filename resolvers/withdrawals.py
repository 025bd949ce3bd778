"""Money out: earnings, withdrawal requests and their review.

requestWithdrawal reads the creator's balance (one GetItem, one BatchGetItem of the earnings
shards) to plan which items to take the diamonds from (at random among those that can, so
concurrent requests rarely plan on one item), then one TransactWriteItems:
  0..n-1  accounts[creator] / earnings[creator#kk]   diamonds -= take  (condition: >= take)
  n       withdrawals[id]                           the PENDING withdrawal
  n+1     withdrawals[daily#creator#day]            cents += amount   (condition: within limit)
  n+2     ledger[creator]                           WITHDRAWAL entry
  n+3     idempotency[key]                          born COMPLETED    (condition: key unused)
Every condition checks what it changes, so a plan made from a stale read cannot overdraw:
the transaction is cancelled, and the request re-reads and plans again until its deadline
(then TRY_AGAIN, with nothing remembered under the key).

Where a payouts processor is configured (resolvers/payouts.py), a request needs the creator's
payout account ENABLED (else PayoutAccountRequired; the same balance read has it: no extra
call) and records that account on the withdrawal; settleWithdrawal PAID is then the transfer
to it (`payouts.pay`), and REJECTED is refused once a transfer may exist. Without one, an admin
pays by hand and PAID only records it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from infra import runtime
from infra.accounts import is_restricted, payout_status
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.earnings import MAX_SOURCES, ShardBalance, plan_debits
from infra.ids import BadCursor, iso, new_id, now
from infra.payouts import ENABLED
from infra.withdrawals import PENDING
from resolvers import accounts, idempotency, money_back, payouts, validation
from resolvers.context import Context
from resolvers.errors import (
    BadUserInput,
    BelowMinimum,
    DailyLimitExceeded,
    InsufficientDiamonds,
    InvalidState,
    NotFound,
    PayoutAccountRequired,
    TryAgain,
    restricted,
)

logger = logging.getLogger("livecoins")
MUTATION = "requestWithdrawal"
MAX_DIAMONDS = 10**12
MAX_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems


def cash_value(ctx: Context, diamonds: int) -> int:
    """Cents a number of diamonds is worth, rounded down (never in the creator's favour)."""
    return diamonds * ctx.services.settings.diamond_cents_per_2 // 2


@dataclass(frozen=True)
class EarningsView:
    diamonds: int
    available: int
    pending: int
    owed: int
    next_available: float | None
    cash: int
    minimum: int
    remaining_today: int
    currency: str


async def earnings(ctx: Context, account: Item) -> EarningsView:
    settings = ctx.services.settings
    balances, requested = await asyncio.gather(
        accounts.balances(ctx, account),
        ctx.services.withdrawals.requested_on(account["id"], ctx.today.isoformat()),
    )
    # Owed diamonds are repaid from available ones first (money_back.repay: at once where
    # there are some, else before the next withdrawal), so they are shown as repaid already.
    owed = account.get("owedDiamonds", 0)
    available = max(0, balances.available - owed)
    diamonds = available + balances.pending
    return EarningsView(
        diamonds=diamonds,
        available=available,
        pending=balances.pending,
        owed=max(0, owed - balances.available),
        next_available=balances.next_available,
        cash=cash_value(ctx, diamonds),
        minimum=settings.minimum_withdrawal_cents,
        remaining_today=max(0, settings.daily_withdrawal_limit_cents - requested),
        currency=settings.payout_currency,
    )


async def withdrawals(
    ctx: Context, account_id: str, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    size = validation.page_size(first)
    try:
        return await ctx.services.withdrawals.page(account_id, size, after)
    except BadCursor as error:
        raise BadUserInput("after is not a cursor from this list", field="after") from error


async def pending_withdrawals(
    ctx: Context, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    """Admin: the withdrawals waiting for review, oldest first."""
    ctx.require_admin()
    size = validation.page_size(first)
    try:
        return await ctx.services.withdrawals.pending(size, after)
    except BadCursor as error:
        raise BadUserInput("after is not a cursor from this list", field="after") from error


def _gather_actions(
    ctx: Context, account_id: str, shards: list[ShardBalance]
) -> list[dict[str, Any]]:
    """Move the smallest shards' available diamonds onto the account item (the sum, and so
    the ledger promise, unchanged; each debit conditional), so that a withdrawal spread over
    more items than one transaction takes can be planned."""
    services = ctx.services
    smallest = sorted((s for s in shards if s.available > 0), key=lambda s: s.available)
    smallest = smallest[: MAX_ACTIONS - 1]
    return [
        services.accounts.add_diamonds_action(account_id, sum(s.available for s in smallest)),
        *(
            services.earnings.debit_action(account_id, s.shard, s.available, s.matured)
            for s in smallest
        ),
    ]


async def request_withdrawal(ctx: Context, diamonds: int, idempotency_key: str) -> Item:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    validation.int_range(diamonds, "diamonds", 1, MAX_DIAMONDS)
    ctx.require_adult("withdraw")
    attempt = idempotency.begin(ctx, MUTATION, idempotency_key, {"diamonds": diamonds})
    services, settings = ctx.services, ctx.services.settings
    amount, currency = cash_value(ctx, diamonds), settings.payout_currency
    if amount < settings.minimum_withdrawal_cents:
        return await _replay(
            ctx,
            await idempotency.fail(
                ctx,
                attempt,
                BelowMinimum(
                    "Withdrawals start at the minimum.",
                    minimum=settings.minimum_withdrawal_cents,
                    currency=currency,
                ),
            ),
        )
    day = ctx.today.isoformat()
    limit = settings.daily_withdrawal_limit_cents
    if amount > limit:  # over the limit on any day, whatever was requested before
        requested = await services.withdrawals.requested_on(identity.sub, day)
        return await _replay(ctx, await _over_limit(ctx, attempt, limit - requested))
    withdrawal: dict[str, Any] = {
        "id": new_id("wdr"),
        "accountId": identity.sub,
        "diamonds": diamonds,
        "amount": amount,
        "currency": currency,
        "status": PENDING,
        "createdAt": iso(now()),
        "day": day,
    }
    deadline, retry = services.dynamo.deadline(), 0
    while True:
        account = await services.accounts.get(identity.sub, consistent=True) or {"id": identity.sub}
        shard_count = account.get("shards") or 0
        shards = (
            await services.earnings.balances(
                identity.sub,
                shard_count,
                settings.earnings_hold_seconds,
                runtime.current().time(),
                consistent=True,
            )
            if shard_count
            else []
        )
        if is_restricted(account):
            return await _replay(ctx, await idempotency.fail(ctx, attempt, restricted()))
        if services.payouts is not None:
            if payout_status(account) != ENABLED:
                status = await payouts.gate(services, account)
                if status != ENABLED:
                    refusal = PayoutAccountRequired(
                        "Withdrawals are paid to your payout account: finish setting it up "
                        "first (startPayoutOnboarding).",
                        status=status,
                    )
                    return await _replay(ctx, await idempotency.fail(ctx, attempt, refusal))
            withdrawal["payoutAccount"] = account["payoutAccountId"]
        withdrawal["review"] = {  # what the reviewer weighs: signals as of the request
            "accountCreatedAt": account.get("createdAt"),
            "earned": sum(s.earned for s in shards),
            "fromNew": sum(s.from_new for s in shards),
            "fromRestricted": sum(s.from_restricted for s in shards),
        }
        repay = money_back.repay_actions(services, account, shards)
        if repay:  # owed diamonds are repaid from available ones before any is withdrawn
            try:
                await services.dynamo.transact(repay)
                continue
            except TransactionCancelled:
                pass  # a balance moved: read again below
        else:
            available = max(
                0,
                account.get("diamonds", 0)
                + sum(s.available for s in shards)
                - account.get("owedDiamonds", 0),
            )
            if available < diamonds:
                return await _replay(
                    ctx,
                    await idempotency.fail(
                        ctx,
                        attempt,
                        InsufficientDiamonds(
                            f"You have {available} diamonds.",
                            required=diamonds,
                            available=available,
                        ),
                    ),
                )
            plan = plan_debits(account.get("diamonds", 0), shards, diamonds, runtime.current())
            if len(plan) > MAX_SOURCES:
                try:
                    await services.dynamo.transact(_gather_actions(ctx, identity.sub, shards))
                    continue  # gathered: plan again at once
                except TransactionCancelled:
                    pass  # a shard moved meanwhile
            else:
                done = await _withdraw(ctx, attempt, withdrawal, plan, shards, limit)
                if done is not None:
                    return done
        # A balance moved under the plan (a gift, another withdrawal): read and plan again.
        try:
            await backoff(retry, deadline, "stale withdrawal plan")
        except Unavailable as error:
            raise TryAgain("Your balance kept changing; retry with the same key.") from error
        retry += 1


async def _withdraw(
    ctx: Context,
    attempt: idempotency.Attempt,
    withdrawal: Item,
    plan: list[tuple[int | None, int]],
    shards: list[ShardBalance],
    limit: int,
) -> Item | None:
    """The withdrawal transaction for one plan; None when a balance moved under the plan."""
    services, account_id = ctx.services, withdrawal["accountId"]
    actions: list[dict[str, Any]] = [
        services.accounts.debit_action(account_id, 0, take, owes_nothing=True)
        if source is None
        else services.earnings.debit_action(account_id, source, take, shards[source].matured)
        for source, take in plan
    ]
    # the account's restriction is checked in the transaction: by its own debit, or else here
    account_check = next((i for i, (source, _) in enumerate(plan) if source is None), None)
    if account_check is None:
        actions.append(services.accounts.unrestricted_action(account_id, owes_nothing=True))
        account_check = len(actions) - 1
    offset = len(actions)
    actions += [
        services.withdrawals.create_action(withdrawal),
        services.withdrawals.reserve_daily_action(
            account_id, withdrawal["day"], withdrawal["amount"], limit
        ),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=account_id,
            kind="WITHDRAWAL",
            coins=0,
            diamonds=-withdrawal["diamonds"],
            reference_id=withdrawal["id"],
            created_at=withdrawal["createdAt"],
        ),
        idempotency.completed_action(ctx, attempt, {"withdrawalId": withdrawal["id"]}),
    ]
    daily, record = offset + 1, offset + 3
    try:
        await services.dynamo.transact(actions)
        services.metrics["DiamondsWithdrawn"] += withdrawal["diamonds"]
        return withdrawal
    except TransactionCancelled as cancelled:
        if cancelled.failed(record):
            return await _replay(ctx, await idempotency.earlier(ctx, attempt, cancelled, record))
        if cancelled.failed(account_check) and is_restricted(cancelled.items[account_check]):
            return await _replay(ctx, await idempotency.fail(ctx, attempt, restricted()))
        if cancelled.failed(daily):
            requested = (cancelled.items[daily] or {}).get("cents", 0)
            return await _replay(ctx, await _over_limit(ctx, attempt, limit - requested))
    return None


async def _over_limit(ctx: Context, attempt: idempotency.Attempt, remaining: int) -> Item:
    error = DailyLimitExceeded(
        "This would pass today's withdrawal limit.",
        remaining=max(0, remaining),
        currency=ctx.services.settings.payout_currency,
    )
    return await idempotency.fail(ctx, attempt, error)


async def _replay(ctx: Context, record: Item) -> Item:
    services = ctx.services
    found = await services.dynamo.committed(
        lambda: services.withdrawals.get(record["withdrawalId"]), "the withdrawal"
    )
    return found


async def settle_withdrawal(ctx: Context, withdrawal_id: str, outcome: str) -> Item:
    """PENDING -> PAID, or PENDING -> REJECTED returning the diamonds; the same outcome again
    changes nothing; the other outcome is InvalidState."""
    admin = ctx.require_admin()
    services = ctx.services
    if not validation.is_minted_id(withdrawal_id, "wdr"):
        raise NotFound(f"No withdrawal {withdrawal_id[:64]}.")
    for _ in range(2):
        withdrawal = await services.withdrawals.get(withdrawal_id)
        if withdrawal is None:
            raise NotFound(f"No withdrawal {withdrawal_id}.")
        if withdrawal["status"] == outcome:
            return withdrawal
        if withdrawal["status"] != PENDING:
            raise InvalidState(f"This withdrawal is already {withdrawal['status']}.")
        if outcome == "PAID" and services.payouts is not None:
            return await payouts.pay(services, withdrawal, admin.sub)
        if withdrawal.get("payoutStartedAt"):
            raise InvalidState(
                "A transfer of this withdrawal was asked for: settle it as PAID to finish it, "
                "or to learn that it was refused."
            )
        settled_at = iso(now())
        actions = [
            services.withdrawals.settle_action(withdrawal_id, outcome, settled_at, admin.sub)
        ]
        if outcome == "REJECTED":
            owner, diamonds = withdrawal["accountId"], withdrawal["diamonds"]
            actions += [
                services.accounts.add_diamonds_action(owner, diamonds),
                services.ledger.put_action(
                    entry_id=new_id("tx"),
                    account_id=owner,
                    kind="WITHDRAWAL_RETURNED",
                    coins=0,
                    diamonds=diamonds,
                    reference_id=withdrawal_id,
                    created_at=settled_at,
                ),
                services.withdrawals.release_daily_action(
                    owner, withdrawal["day"], withdrawal["amount"]
                ),
            ]
        try:
            await services.dynamo.transact(actions)
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                continue  # settled concurrently, or being paid by transfer: answer from that
            raise
        logger.info(
            "admin settled a withdrawal",
            extra={"admin": admin.sub, "withdrawalId": withdrawal_id, "outcome": outcome},
        )
        return {**withdrawal, "status": outcome, "settledAt": settled_at, "settledBy": admin.sub}
    raise RuntimeError("withdrawal settlement did not converge")
