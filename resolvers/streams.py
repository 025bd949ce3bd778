"""Live streams: going live, ending, listing, and a stream's gifts and viewer ranking."""

from __future__ import annotations

from infra.dynamo import Item, TransactionCancelled
from infra.ids import BadCursor, iso, new_id, now
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import BadUserInput, InvalidState, NotAllowed, NotFound


def _cursor_error(error: BadCursor) -> BadUserInput:
    return BadUserInput("after is not a cursor from this list", field="after")


async def start_live_stream(ctx: Context, title: str) -> Item:
    identity = ctx.require_identity()
    clean_title = validation.text(title, "title", 100)
    ctx.require_adult("go live")
    services = ctx.services
    stream = {
        "id": new_id("str"),
        "creatorId": identity.sub,
        "title": clean_title,
        "status": "LIVE",
        "startedAt": iso(now()),
        "shards": services.settings.gift_shards,
        "indexShards": services.settings.index_shards,
    }
    actions = [
        *services.streams.start_actions(stream),
        services.accounts.credit_action(
            identity.sub,
            0,
            0,
            identity.initial_display_name,
            identity.birthdate,
            shards=services.settings.gift_shards,
        ),
    ]
    try:
        await services.dynamo.transact(actions)
    except TransactionCancelled as cancelled:
        if cancelled.failed(0):
            raise InvalidState("You already have a live stream; end it first.") from None
        raise
    return stream


async def end_live_stream(ctx: Context, stream_id: str) -> Item:
    identity = ctx.require_identity()
    services = ctx.services
    stream = await services.streams.get(stream_id)
    if stream is None:
        raise NotFound(f"No live stream {stream_id}.")
    if stream["creatorId"] != identity.sub:
        raise NotAllowed("Only the creator can end this stream.")
    if stream["status"] != "LIVE":
        raise InvalidState("This stream has already ended.")
    ended_at = iso(now())
    try:
        await services.dynamo.transact(services.streams.end_actions(stream, ended_at))
    except TransactionCancelled as cancelled:
        if cancelled.failed(0):  # ended concurrently
            raise InvalidState("This stream has already ended.") from None
        raise
    stream = {**stream, "status": "ENDED", "endedAt": ended_at}
    stream.pop("liveIndex", None)
    stream.pop("liveSort", None)
    return stream


async def live_stream(ctx: Context, stream_id: str) -> Item | None:
    if not stream_id or len(stream_id) > 64:
        return None
    return await ctx.services.streams.get(stream_id)


async def live_streams(
    ctx: Context, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    size = validation.page_size(first)
    try:
        return await ctx.services.streams.live_page(size, after)
    except BadCursor as error:
        raise _cursor_error(error) from error


async def coins_received(ctx: Context, stream: Item) -> int:
    return await ctx.stream_coins.load((stream["id"], stream["shards"]))


async def top_gifters(ctx: Context, stream: Item, first: int | None) -> list[Item]:
    size = validation.page_size(first)
    return await ctx.services.rankings.top(stream["id"], size, stream.get("indexShards", 1))


async def gifts(
    ctx: Context, target: Item, first: int | None, after: str | None
) -> tuple[list[Item], bool]:
    """A stream's or a video's gift transfers, newest first."""
    size = validation.page_size(first)
    try:
        return await ctx.services.transfers.page(
            target["id"], target.get("indexShards", 1), size, after
        )
    except BadCursor as error:
        raise _cursor_error(error) from error
