"""Money out: earnings, withdrawal requests and their review.

requestWithdrawal reads the creator's balance (one GetItem, one BatchGetItem of the earnings
shards) to plan which items to take the diamonds from, then one TransactWriteItems:
  0..n-1  accounts[creator] / earnings[creator#kk]   diamonds -= take  (condition: >= take)
  n       withdrawals[id]                           the PENDING withdrawal
  n+1     withdrawals[daily#creator#day]            cents += amount   (condition: within limit)
  n+2     ledger[creator]                           WITHDRAWAL entry
  n+3     idempotency[key]                          born COMPLETED    (condition: key unused)
Every condition checks what it changes, so a plan made from a stale read cannot overdraw:
the transaction is cancelled, and the request re-reads and tries again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from infra.dynamo import Item, TransactionCancelled, backoff
from infra.ids import BadCursor, iso, new_id, now
from infra.withdrawals import PENDING
from resolvers import accounts, idempotency, validation
from resolvers.context import Context
from resolvers.errors import (
    BadUserInput,
    BelowMinimum,
    DailyLimitExceeded,
    InsufficientDiamonds,
    InvalidState,
    NotFound,
)

MUTATION = "requestWithdrawal"
MAX_DIAMONDS = 10**12
ATTEMPTS = 6


def cash_value(ctx: Context, diamonds: int) -> int:
    """Cents a number of diamonds is worth, rounded down (never in the creator's favour)."""
    return diamonds * ctx.services.settings.diamond_cents_per_2 // 2


@dataclass(frozen=True)
class EarningsView:
    diamonds: int
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
    return EarningsView(
        diamonds=balances.diamonds,
        cash=cash_value(ctx, balances.diamonds),
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


def _plan(account: Item, shards: list[int], diamonds: int) -> list[tuple[int | None, int]]:
    """Which items to take `diamonds` from: (None = the account item, or a shard, amount)."""
    shard_sources: list[tuple[int | None, int]] = sorted(enumerate(shards), key=lambda s: -s[1])
    sources = [(None, account.get("diamonds", 0)), *shard_sources]
    plan, left = [], diamonds
    for source, available in sources:
        if left == 0:
            break
        take = min(available, left)
        if take > 0:
            plan.append((source, take))
            left -= take
    return plan


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
    for retry in range(ATTEMPTS):
        account = await services.accounts.get(identity.sub, consistent=True) or {"id": identity.sub}
        shard_count = account.get("shards") or 0
        shards = (
            (await services.earnings.shards([(identity.sub, shard_count)]))[identity.sub]
            if shard_count
            else []
        )
        available = account.get("diamonds", 0) + sum(shards)
        if available < diamonds:
            return await _replay(
                ctx,
                await idempotency.fail(
                    ctx,
                    attempt,
                    InsufficientDiamonds(
                        f"You have {available} diamonds.", required=diamonds, available=available
                    ),
                ),
            )
        plan = _plan(account, shards, diamonds)
        actions: list[dict[str, Any]] = [
            services.accounts.debit_action(identity.sub, 0, take)
            if source is None
            else services.earnings.debit_action(identity.sub, source, take)
            for source, take in plan
        ]
        actions += [
            services.withdrawals.create_action(withdrawal),
            services.withdrawals.reserve_daily_action(
                identity.sub, day, amount, settings.daily_withdrawal_limit_cents
            ),
            services.ledger.put_action(
                entry_id=new_id("tx"),
                account_id=identity.sub,
                kind="WITHDRAWAL",
                coins=0,
                diamonds=-diamonds,
                reference_id=withdrawal["id"],
                created_at=withdrawal["createdAt"],
            ),
            idempotency.completed_action(ctx, attempt, {"withdrawalId": withdrawal["id"]}),
        ]
        daily, record = len(plan) + 1, len(plan) + 3
        try:
            await services.dynamo.transact(actions)
            return withdrawal
        except TransactionCancelled as cancelled:
            if cancelled.failed(record):
                return await _replay(
                    ctx, await idempotency.earlier(ctx, attempt, cancelled, record)
                )
            if cancelled.failed(daily):
                requested = (cancelled.items[daily] or {}).get("cents", 0)
                remaining = max(0, settings.daily_withdrawal_limit_cents - requested)
                return await _replay(
                    ctx,
                    await idempotency.fail(
                        ctx,
                        attempt,
                        DailyLimitExceeded(
                            "This would pass today's withdrawal limit.",
                            remaining=remaining,
                            currency=currency,
                        ),
                    ),
                )
            # a balance moved under the plan (a gift, another withdrawal): read and plan again
            await backoff(retry)
    raise RuntimeError("withdrawal kept meeting concurrent balance changes")


async def _replay(ctx: Context, record: Item) -> Item:
    found = await ctx.services.withdrawals.get(record["withdrawalId"])
    if found is None:
        raise RuntimeError("completed idempotency record without its withdrawal")
    return found


async def settle_withdrawal(ctx: Context, withdrawal_id: str, outcome: str) -> Item:
    """PENDING -> PAID, or PENDING -> REJECTED returning the diamonds; the same outcome again
    changes nothing; the other outcome is InvalidState."""
    ctx.require_admin()
    services = ctx.services
    for _ in range(2):
        withdrawal = await services.withdrawals.get(withdrawal_id)
        if withdrawal is None:
            raise NotFound(f"No withdrawal {withdrawal_id}.")
        if withdrawal["status"] == outcome:
            return withdrawal
        if withdrawal["status"] != PENDING:
            raise InvalidState(f"This withdrawal is already {withdrawal['status']}.")
        settled_at = iso(now())
        actions = [services.withdrawals.settle_action(withdrawal_id, outcome, settled_at)]
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
            if cancelled.failed(0) or cancelled.conflict:
                continue  # settled concurrently: answer from what won
            raise
        withdrawal = {**withdrawal, "status": outcome, "settledAt": settled_at}
        return withdrawal
    raise RuntimeError("withdrawal settlement did not converge")
