"""Accounts: the signed-in account, public users, profiles and the ledger pages."""

from __future__ import annotations

from infra.dynamo import Item
from infra.ids import BadCursor
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import BadUserInput


async def me(ctx: Context) -> Item:
    return await ctx.account()


async def user(ctx: Context, user_id: str) -> Item | None:
    if not user_id or len(user_id) > 128:
        return None
    return await ctx.users.load(user_id)


async def update_profile(ctx: Context, display_name: str) -> Item:
    identity = ctx.require_identity()
    name = validation.text(display_name, "displayName", 50)
    await ctx.account()  # first sight creates the account
    updated = await ctx.services.accounts.set_display_name(identity.sub, name)
    assert updated is not None
    return updated


async def wallet(ctx: Context, account_id: str) -> Item:
    """Fresh balances after a write (strongly consistent GetItem)."""
    item = await ctx.services.accounts.get(account_id, consistent=True)
    return item or {"id": account_id, "coins": 0, "diamonds": 0}


async def transactions(
    ctx: Context, account_id: str, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    size = validation.page_size(first)
    try:
        return await ctx.services.ledger.page(account_id, size, after)
    except BadCursor as error:
        raise BadUserInput("after is not a cursor from this list", field="after") from error
