"""Accounts: the signed-in account, public users, profiles and the ledger pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra import runtime
from infra.dynamo import Item
from infra.earnings import ShardBalance
from infra.ids import BadCursor, iso, now
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import BadUserInput, NotFound

logger = logging.getLogger("livecoins")


async def me(ctx: Context) -> Item:
    return await ctx.account()


async def user(ctx: Context, user_id: str) -> Item | None:
    if not validation.is_account_id(user_id):
        return None
    return await ctx.users.load(user_id)


async def update_profile(ctx: Context, display_name: str) -> Item:
    identity = ctx.require_identity()
    name = validation.text(display_name, "displayName", 50)
    return await ctx.services.accounts.set_display_name(identity.sub, name, identity.birthdate)


@dataclass(frozen=True)
class Balances:
    coins: int
    diamonds: int
    # the earnings hold: diamonds that may be withdrawn now, and those still held
    available: int = 0
    pending: int = 0
    next_available: float | None = None


async def balances(ctx: Context, account: Item) -> Balances:
    """The wallet of an account item: a recipient's diamonds include every earnings shard,
    split into available and pending by the earnings hold."""
    settings = ctx.services.settings
    own = account.get("diamonds", 0)  # returned withdrawals and gathered shards: available
    shards: list[ShardBalance] = []
    if account.get("shards"):
        shards = await ctx.services.earnings.balances(
            account["id"],
            account["shards"],
            settings.earnings_hold_seconds,
            runtime.current().time(),
        )
    upcoming = [s.next_available for s in shards if s.next_available is not None]
    # Coins held for a refund in progress still belong to the wallet until it completes.
    return Balances(
        coins=account.get("coins", 0) + account.get("heldCoins", 0),
        diamonds=own + sum(s.total for s in shards),
        available=own + sum(s.available for s in shards),
        pending=sum(s.pending_total for s in shards),
        next_available=min(upcoming) if upcoming else None,
    )


async def wallet(ctx: Context, account_id: str) -> Balances:
    """Fresh balances after a write (strongly consistent GetItem, + shards of a recipient)."""
    item = await ctx.services.accounts.get(account_id, consistent=True)
    return await balances(ctx, item or {"id": account_id})


async def transactions(
    ctx: Context, account: Item, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    size = validation.page_size(first)
    try:
        return await ctx.services.ledger.page(
            account["id"], size, after, shards=account.get("shards") or 1
        )
    except BadCursor as error:
        raise BadUserInput("after is not a cursor from this list", field="after") from error


GIFT_KINDS = frozenset({"GIFT_SENT", "GIFT_RECEIVED", "GIFT_REVERSED"})


async def transfer(ctx: Context, kind: str, reference_id: str) -> Item | None:
    """The gift transfer of a ledger entry: every entry of a page in one BatchGetItem."""
    if kind not in GIFT_KINDS:
        return None
    return await ctx.transfers.load(reference_id)


async def clear_restriction(ctx: Context, account_id: str) -> Item:
    """Admin: lift every dispute's restriction on an account (logged with the admin)."""
    admin = ctx.require_admin()
    found = (
        await ctx.services.accounts.clear_restriction(account_id, admin.sub, iso(now()))
        if validation.is_account_id(account_id)
        else None
    )
    if found is None:
        raise NotFound(f"No account {account_id[:64]}.")
    logger.info("restriction cleared", extra={"account": account_id, "admin": admin.sub})
    return found
