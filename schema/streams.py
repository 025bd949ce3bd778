"""Live streams: LiveStream, its viewer ranking and gifts, going live and ending."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from infra.dynamo import Item
from resolvers import streams
from schema.accounts import User
from schema.common import Info, PageInfo, ctx, timestamp
from schema.errors import (
    AgeRestricted,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    NotAllowed,
    NotFound,
    returns_user_errors,
)
from schema.gifts import GiftTransferConnection


@strawberry.enum
class LiveStreamStatus(Enum):
    LIVE = "LIVE"
    ENDED = "ENDED"


@strawberry.type
class GifterRank:
    rank: int
    coins: int
    user_id: strawberry.Private[str]

    @strawberry.field
    async def user(self, info: Info) -> User:
        return await User.load(info, self.user_id)


@strawberry.type
class MyRank:
    coins: int
    rank: int | None


@strawberry.type
class LiveStream:
    id: strawberry.ID
    title: str
    status: LiveStreamStatus
    started_at: datetime
    ended_at: datetime | None
    item: strawberry.Private[Item]

    @strawberry.field
    async def creator(self, info: Info) -> User:
        return await User.load(info, self.item["creatorId"])

    @strawberry.field(description="All coins gifted in this stream.")
    async def coins_received(self, info: Info) -> int:
        return await streams.coins_received(ctx(info), self.item)

    @strawberry.field(
        description="The stream's viewer ranking: senders by coins gifted here, highest first, "
        "ties by user id."
    )
    async def top_gifters(self, info: Info, first: int | None = 10) -> list[GifterRank]:
        ranked = await streams.top_gifters(ctx(info), self.item, first)
        return [
            GifterRank(rank=n, coins=i["coins"], user_id=i["senderId"])
            for n, i in enumerate(ranked, start=1)
        ]

    @strawberry.field(
        description="The caller's coins gifted in this stream and place in its ranking; rank "
        "is null outside the first 100 or when the caller has gifted nothing. Null without a "
        "token."
    )
    async def my_rank(self, info: Info) -> MyRank | None:
        found = await streams.my_rank(ctx(info), self.item)
        return MyRank(coins=found[0], rank=found[1]) if found else None

    @strawberry.field(description="Gifts sent in this stream, newest first.")
    async def gifts(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> GiftTransferConnection:
        items, more = await streams.gifts(ctx(info), self.item, first, after)
        return GiftTransferConnection.of(info, items, more)

    @classmethod
    def of(cls, item: Item) -> LiveStream:
        return cls(
            id=strawberry.ID(item["id"]),
            title=item["title"],
            status=LiveStreamStatus(item["status"]),
            started_at=timestamp(item["startedAt"]),
            ended_at=timestamp(item["endedAt"]) if item.get("endedAt") else None,
            item=item,
        )


@strawberry.type
class LiveStreamEdge:
    cursor: str
    node: LiveStream


@strawberry.type
class LiveStreamConnection:
    edges: list[LiveStreamEdge]
    page_info: PageInfo


@strawberry.input
class StartLiveStreamInput:
    title: str = strawberry.field(description="1 to 100 characters after trimming.")
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Optional. With a key, a retry after a lost response returns the first "
        "result instead of acting again (the same rules as sendGift's key).",
    )


@strawberry.type
class LiveStreamStarted:
    stream: LiveStream


@strawberry.input
class EndLiveStreamInput:
    stream_id: strawberry.ID
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Optional. With a key, a retry after a lost response returns the first "
        "result instead of acting again (the same rules as sendGift's key).",
    )


@strawberry.type
class LiveStreamEnded:
    stream: LiveStream


StartLiveStreamResult = Annotated[
    LiveStreamStarted | AgeRestricted | InvalidState | InvalidInput | IdempotencyConflict,
    strawberry.union(
        "StartLiveStreamResult", description="InvalidState: the account already has a live stream."
    ),
]
EndLiveStreamResult = Annotated[
    LiveStreamEnded | NotFound | NotAllowed | InvalidState | InvalidInput | IdempotencyConflict,
    strawberry.union(
        "EndLiveStreamResult",
        description="NotAllowed: someone else's stream. InvalidState: already ended (with an "
        "idempotencyKey, a retry of the call that ended it returns LiveStreamEnded).",
    ),
]


@strawberry.type
class StreamQueries:
    @strawberry.field(description="Streams that are live now, newest first.")
    async def live_streams(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> LiveStreamConnection:
        items, more = await streams.live_streams(ctx(info), first, after)
        repo = ctx(info).services.streams
        edges = [LiveStreamEdge(cursor=repo.cursor(i), node=LiveStream.of(i)) for i in items]
        return LiveStreamConnection(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], more),
        )

    @strawberry.field
    async def live_stream(self, info: Info, id: strawberry.ID) -> LiveStream | None:
        item = await streams.live_stream(ctx(info), str(id))
        return LiveStream.of(item) if item else None


@strawberry.type
class StreamMutations:
    @strawberry.mutation(description="Go live. Adults only; one live stream per account at a time.")
    @returns_user_errors
    async def start_live_stream(
        self, info: Info, input: StartLiveStreamInput
    ) -> StartLiveStreamResult:
        return LiveStreamStarted(
            stream=LiveStream.of(
                await streams.start_live_stream(ctx(info), input.title, input.idempotency_key)
            )
        )

    @strawberry.mutation(description="End one of your own live streams.")
    @returns_user_errors
    async def end_live_stream(self, info: Info, input: EndLiveStreamInput) -> EndLiveStreamResult:
        return LiveStreamEnded(
            stream=LiveStream.of(
                await streams.end_live_stream(
                    ctx(info), str(input.stream_id), input.idempotency_key
                )
            )
        )
