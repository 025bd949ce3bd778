"""Videos: Video, publishVideo and the video query."""

from __future__ import annotations

from typing import Annotated

import strawberry

from infra.dynamo import Item
from resolvers import streams, videos
from schema.accounts import User
from schema.common import Info, ctx
from schema.errors import IdempotencyConflict, InvalidInput, returns_user_errors
from schema.gifts import GiftTransferConnection


@strawberry.type
class Video:
    id: strawberry.ID
    title: str
    item: strawberry.Private[Item]

    @strawberry.field
    async def creator(self, info: Info) -> User:
        return await User.load(info, self.item["creatorId"])

    @strawberry.field
    async def coins_received(self, info: Info) -> int:
        return await videos.coins_received(ctx(info), self.item)

    @strawberry.field(description="Newest first.")
    async def gifts(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> GiftTransferConnection:
        items, more = await streams.gifts(ctx(info), self.item, first, after)
        return GiftTransferConnection.of(info, items, more)

    @classmethod
    def of(cls, item: Item) -> Video:
        return cls(id=strawberry.ID(item["id"]), title=item["title"], item=item)


@strawberry.input
class PublishVideoInput:
    title: str = strawberry.field(description="1 to 100 characters after trimming.")
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Optional. With a key, a retry after a lost response returns the first "
        "result instead of acting again (the same rules as sendGift's key).",
    )


@strawberry.type
class VideoPublished:
    video: Video


PublishVideoResult = Annotated[
    VideoPublished | InvalidInput | IdempotencyConflict, strawberry.union("PublishVideoResult")
]


@strawberry.type
class VideoQueries:
    @strawberry.field
    async def video(self, info: Info, id: strawberry.ID) -> Video | None:
        item = await videos.video(ctx(info), str(id))
        return Video.of(item) if item else None


@strawberry.type
class VideoMutations:
    @strawberry.mutation
    @returns_user_errors
    async def publish_video(self, info: Info, input: PublishVideoInput) -> PublishVideoResult:
        return VideoPublished(
            video=Video.of(
                await videos.publish_video(ctx(info), input.title, input.idempotency_key)
            )
        )
