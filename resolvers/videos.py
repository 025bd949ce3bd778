"""Videos: publishing, and looking one up. Gifts to videos are in resolvers/gifts.py."""

from __future__ import annotations

from infra.dynamo import Item, TransactionCancelled
from infra.ids import iso, new_id, now
from resolvers import idempotency, validation
from resolvers.context import Context

MUTATION = "publishVideo"


async def publish_video(ctx: Context, title: str, idempotency_key: str | None = None) -> Item:
    """With a key, a retry after a lost response returns the first video, not a second one."""
    identity = ctx.require_identity()
    clean_title = validation.text(title, "title", 100)
    attempt = idempotency.begin_optional(ctx, MUTATION, idempotency_key, {"title": clean_title})
    services = ctx.services
    video = {
        "id": new_id("vid"),
        "creatorId": identity.sub,
        "title": clean_title,
        # Only adults collect diamonds: a minor's video never accepts gifts.
        "creatorAdult": identity.is_adult(ctx.today),
        "shards": services.settings.gift_shards,
        "indexShards": services.settings.index_shards,
        "createdAt": iso(now()),
    }
    actions = [
        services.videos.create_action(video),
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
        actions.append(idempotency.completed_action(ctx, attempt, {"videoId": video["id"]}))
    try:
        await services.dynamo.transact(actions)
    except TransactionCancelled as cancelled:
        if attempt is None or not cancelled.failed(len(actions) - 1):
            if cancelled.failed(0):  # its new random id exists: an earlier try of this call
                return video
            raise
        record = await idempotency.earlier(ctx, attempt, cancelled, len(actions) - 1)
        found = await services.dynamo.committed(
            lambda: services.videos.get(record["videoId"]), "the video"
        )
        return found
    return video


async def video(ctx: Context, video_id: str) -> Item | None:
    if not validation.is_id(video_id):
        return None
    return await ctx.services.videos.get(video_id)


async def coins_received(ctx: Context, video: Item) -> int:
    return await ctx.video_coins.load((video["id"], video["shards"]))
