"""Videos: publishing, and looking one up. Gifts to videos are in resolvers/gifts.py."""

from __future__ import annotations

from infra.dynamo import Item
from infra.ids import iso, new_id, now
from resolvers import validation
from resolvers.context import Context


async def publish_video(ctx: Context, title: str) -> Item:
    identity = ctx.require_identity()
    clean_title = validation.text(title, "title", 100)
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
    await services.dynamo.transact(
        [
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
    )
    return video


async def video(ctx: Context, video_id: str) -> Item | None:
    if not video_id or len(video_id) > 64:
        return None
    return await ctx.services.videos.get(video_id)


async def coins_received(ctx: Context, video: Item) -> int:
    return await ctx.video_coins.load((video["id"], video["shards"]))
