"""The live feed: the giftFeed and streamDigest subscriptions and the StreamDigest type."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from infra.dynamo import Item
from resolvers import feed
from schema.common import Info, ctx, timestamp
from schema.gifts import GiftTransfer
from schema.streams import GifterRank, LiveStreamStatus


@strawberry.type
class StreamDigest:
    stream_id: strawberry.ID
    sequence: int = strawberry.field(
        description="One more than the previous message's; a gap means messages were missed "
        "(every message carries the full totals)."
    )
    at: datetime
    status: LiveStreamStatus
    coins_received: int = strawberry.field(description="All coins gifted in this stream.")
    gifts_since_last: int = strawberry.field(
        description="Gifts and coins since the previous message."
    )
    coins_since_last: int
    top_gifters: list[GifterRank] = strawberry.field(description="The first ten of the ranking.")
    highlights: list[GiftTransfer] = strawberry.field(
        description="The largest gifts since the previous message, at most five, largest first."
    )

    @classmethod
    def of(cls, item: Item) -> StreamDigest:
        return cls(
            stream_id=strawberry.ID(item["streamId"]),
            sequence=item["sequence"],
            at=timestamp(item["at"]),
            status=LiveStreamStatus(item["status"]),
            coins_received=item["coinsReceived"],
            gifts_since_last=item["giftsSinceLast"],
            coins_since_last=item["coinsSinceLast"],
            top_gifters=[
                GifterRank(rank=n, coins=i["coins"], user_id=i["senderId"])
                for n, i in enumerate(item["topGifters"], start=1)
            ],
            highlights=[GiftTransfer.of(t) for t in item["highlights"]],
        )


@strawberry.type
class FeedSubscriptions:
    @strawberry.subscription(
        description="Each gift sent in the stream, as it lands. With `after` (the id of the "
        "last gift the client saw), the gifts that landed after it are sent first, in order, "
        "then the live ones, with no gap and no duplicate, gifts that commit late included; an "
        "`after` that is not a gift of this stream is refused with extensions.code NOT_FOUND. A "
        "deployment may cap a stream's giftFeed subscribers (never refusing the stream's "
        "creator); past the cap a new subscription is refused with extensions.code FEED_FULL, "
        "and streamDigest is the way to follow that stream."
    )
    async def gift_feed(
        self, info: Info, stream_id: strawberry.ID, after: strawberry.ID | None = None
    ) -> AsyncGenerator[GiftTransfer, None]:
        gifts = feed.gift_feed(ctx(info), str(stream_id), None if after is None else str(after))
        async for transfer in gifts:
            yield GiftTransfer.of(transfer)

    @strawberry.subscription(
        description="At most one message a second per stream while gifts land, and a last one "
        "when it ends: its totals, the head of its ranking and its largest recent gifts. Built "
        "for streams with very many viewers."
    )
    async def stream_digest(
        self, info: Info, stream_id: strawberry.ID
    ) -> AsyncGenerator[StreamDigest, None]:
        async for digest in feed.stream_digest(ctx(info), str(stream_id)):
            yield StreamDigest.of(digest)
