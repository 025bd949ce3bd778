"""Accounts: the signed-in account, public users, profiles and the ledger pages."""

from __future__ import annotations

from dataclasses import dataclass

from infra.dynamo import Item
from infra.ids import BadCursor
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import BadUserInput


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


async def balances(ctx: Context, account: Item) -> Balances:
    """The wallet of an account item: a recipient's diamonds include every earnings shard."""
    diamonds = account.get("diamonds", 0)
    shards = account.get("shards")
    if shards:
        found = await ctx.services.earnings.shards([(account["id"], shards)])
        diamonds += sum(found[account["id"]])
    # Coins held for a refund in progress still belong to the wallet until it completes.
    return Balances(account.get("coins", 0) + account.get("heldCoins", 0), diamonds)


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
