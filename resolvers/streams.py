"""Live streams: going live, ending, listing, and a stream's gifts and viewer ranking.

Going live and ending take an optional idempotency key: with one, a retry after a lost
response replays the first answer (the idempotency record is born COMPLETED in the same
transaction, as for gifts). Without one, a retry inside the request after an ambiguous
failure is still recognised as this request's own write by the marker it wrote.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Item, TransactionCancelled
from infra.ids import BadCursor, iso, new_id, now
from resolvers import idempotency, validation
from resolvers.context import Context
from resolvers.errors import BadUserInput, InvalidState, NotAllowed, NotFound

START, END = "startLiveStream", "endLiveStream"
MAX_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems


def _cursor_error(error: BadCursor) -> BadUserInput:
    return BadUserInput("after is not a cursor from this list", field="after")


async def start_live_stream(ctx: Context, title: str, idempotency_key: str | None = None) -> Item:
    identity = ctx.require_identity()
    clean_title = validation.text(title, "title", 100)
    ctx.require_adult("go live")
    attempt = idempotency.begin_optional(ctx, START, idempotency_key, {"title": clean_title})
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
    if attempt is not None:
        actions.append(idempotency.completed_action(ctx, attempt, {"streamId": stream["id"]}))
    record = len(actions) - 1
    try:
        await _transact_with(ctx, actions, services.streams.shard_puts(stream), before=True)
    except TransactionCancelled as cancelled:
        if attempt is not None and cancelled.failed(record):
            return await _replay(ctx, await idempotency.earlier(ctx, attempt, cancelled, record))
        if cancelled.failed(0):
            live = (cancelled.items[0] or {}).get("streamId")
            if live == stream["id"]:
                return stream  # our own lock: an earlier try of this request landed
            error = InvalidState(f"You already have a live stream ({live}); end it first.")
            return await _replay(ctx, await idempotency.refuse(ctx, attempt, error))
        raise
    return stream


async def _transact_with(
    ctx: Context, main: list[dict[str, Any]], shards: list[dict[str, Any]], before: bool
) -> None:
    """`main` and the stream's shard writes in one transaction when they fit in DynamoDB's
    100 actions (K <= 95, the default 32 included). A superstar stream's K shards go in
    chunks of 100: before `main` when starting (nothing refers to them until the stream
    exists), after it when ending (each shard refuses gifts once its chunk lands; every shard
    does by the time endLiveStream answers)."""
    dynamo = ctx.services.dynamo
    if len(main) + len(shards) <= MAX_ACTIONS:
        await dynamo.transact(main + shards)
        return
    chunks = [shards[i : i + MAX_ACTIONS] for i in range(0, len(shards), MAX_ACTIONS)]
    if before:
        for chunk in chunks:
            await dynamo.transact(chunk)
    await dynamo.transact(main)
    if not before:
        for chunk in chunks:
            await dynamo.transact(chunk)


async def end_live_stream(ctx: Context, stream_id: str, idempotency_key: str | None = None) -> Item:
    identity = ctx.require_identity()
    validation.identifier(stream_id, "streamId")
    attempt = idempotency.begin_optional(ctx, END, idempotency_key, {"streamId": stream_id})
    services = ctx.services
    stream = await services.streams.get(stream_id) if validation.is_id(stream_id) else None
    if stream is None:
        error: Exception = NotFound(f"No live stream {stream_id}.")
    elif stream["creatorId"] != identity.sub:
        error = NotAllowed("Only the creator can end this stream.")
    elif stream["status"] != "LIVE":
        await _close_shards(ctx, stream)  # finishes an end that was interrupted
        error = InvalidState("This stream has already ended.")
    else:
        return await _end(ctx, stream, attempt)
    assert isinstance(error, NotFound | NotAllowed | InvalidState)
    return await _replay(ctx, await idempotency.refuse(ctx, attempt, error))


async def _end(ctx: Context, stream: Item, attempt: idempotency.Attempt | None) -> Item:
    services = ctx.services
    ended_at, marker = iso(now()), new_id("end")
    actions = services.streams.end_actions(stream, ended_at, marker)
    if attempt is not None:
        actions.append(idempotency.completed_action(ctx, attempt, {"streamId": stream["id"]}))
    record = len(actions) - 1
    try:
        await _transact_with(ctx, actions, services.streams.shard_closes(stream), before=False)
    except TransactionCancelled as cancelled:
        if attempt is not None and cancelled.failed(record):
            await _close_shards(ctx, stream)
            return await _replay(ctx, await idempotency.earlier(ctx, attempt, cancelled, record))
        if cancelled.failed(0):
            seen = cancelled.items[0] or {}
            if seen.get("endedBy") == marker:  # an earlier try of this request landed
                await _close_shards(ctx, stream)
                return _ended(seen)
            error = InvalidState("This stream has already ended.")
            return await _replay(ctx, await idempotency.refuse(ctx, attempt, error))
        raise
    services.feed.end(stream["id"])  # its giftFeed subscriptions complete
    return _ended({**stream, "status": "ENDED", "endedAt": ended_at, "endedBy": marker})


async def _close_shards(ctx: Context, stream: Item) -> None:
    """Close every shard (again): idempotent, for an end whose shard chunks may not all have
    landed (a superstar stream's end that was interrupted)."""
    closes = ctx.services.streams.shard_closes(stream)
    if len(closes) + 2 > MAX_ACTIONS:
        for i in range(0, len(closes), MAX_ACTIONS):
            await ctx.services.dynamo.transact(closes[i : i + MAX_ACTIONS])


def _ended(stream: Item) -> Item:
    return {k: v for k, v in stream.items() if k not in ("liveIndex", "liveSort")}


async def _replay(ctx: Context, record: Item) -> Item:
    services = ctx.services
    stream = await services.dynamo.committed(
        lambda: services.streams.get(record["streamId"]), "the stream"
    )
    return stream


async def live_stream(ctx: Context, stream_id: str) -> Item | None:
    if not validation.is_id(stream_id):
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


async def my_rank(ctx: Context, stream: Item) -> tuple[int, int | None] | None:
    """The caller's coins in the stream and place in its ranking; None without a token."""
    if ctx.identity is None:
        return None
    return await ctx.services.rankings.mine(
        stream["id"], ctx.identity.sub, stream.get("indexShards", 1)
    )


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
