"""Gifts sent: GiftTransfer and the sendGift mutation (their live feed: schema/feed.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from infra.catalog import GIFT
from infra.dynamo import Item
from resolvers import accounts, gifts
from schema.accounts import User, Wallet
from schema.catalog import Gift
from schema.common import Info, PageInfo, ctx, timestamp
from schema.errors import (
    AccountRestricted,
    AgeRestricted,
    IdempotencyConflict,
    InsufficientCoins,
    InvalidInput,
    NotAllowed,
    NotFound,
    StreamNotLive,
    returns_user_errors,
)

if TYPE_CHECKING:
    from schema.streams import LiveStream
    from schema.videos import Video


@strawberry.type
class GiftTransfer:
    id: strawberry.ID
    quantity: int
    coins: int = strawberry.field(
        description="Coins the sender spent: the gift's price when sent, times quantity."
    )
    diamonds: int = strawberry.field(description="Diamonds the recipient earned.")
    created_at: datetime
    item: strawberry.Private[Item]

    @strawberry.field
    async def gift(self, info: Info) -> Gift:
        # Catalog entries are never deleted, only hidden, so old transfers still find theirs.
        found = await ctx(info).services.catalog.get(GIFT, self.item["giftId"])
        if found is None:
            raise RuntimeError(f"gift {self.item['giftId']} missing from the catalog")
        return Gift.of(found)

    @strawberry.field
    async def sender(self, info: Info) -> User:
        return await User.load(info, self.item["senderId"])

    @strawberry.field
    async def recipient(self, info: Info) -> User:
        return await User.load(info, self.item["recipientId"])

    @strawberry.field
    async def stream(
        self, info: Info
    ) -> Annotated[LiveStream, strawberry.lazy("schema.streams")] | None:
        from schema.streams import LiveStream

        stream_id = self.item.get("streamId")
        found = await ctx(info).streams.load(stream_id) if stream_id else None
        return LiveStream.of(found) if found else None

    @strawberry.field
    async def video(self, info: Info) -> Annotated[Video, strawberry.lazy("schema.videos")] | None:
        from schema.videos import Video

        video_id = self.item.get("videoId")
        found = await ctx(info).videos.load(video_id) if video_id else None
        return Video.of(found) if found else None

    @classmethod
    def of(cls, item: Item) -> GiftTransfer:
        return cls(
            id=strawberry.ID(item["id"]),
            quantity=item["quantity"],
            coins=item["coins"],
            diamonds=item["diamonds"],
            created_at=timestamp(item["createdAt"]),
            item=item,
        )


@strawberry.type
class GiftTransferEdge:
    cursor: str
    node: GiftTransfer


@strawberry.type
class GiftTransferConnection:
    edges: list[GiftTransferEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, info: Info, items: list[Item], more: bool) -> GiftTransferConnection:
        transfers = ctx(info).services.transfers
        edges = [
            GiftTransferEdge(cursor=transfers.cursor(i), node=GiftTransfer.of(i)) for i in items
        ]
        return cls(
            edges=edges,
            page_info=PageInfo.of([e.cursor for e in edges], more),
        )


@strawberry.input
class SendGiftInput:
    gift_id: strawberry.ID
    stream_id: strawberry.ID | None = strawberry.field(
        default=None, description="Exactly one of streamId and videoId."
    )
    video_id: strawberry.ID | None = None
    quantity: int | None = strawberry.field(default=1, description="1 to 1000.")
    idempotency_key: str


@strawberry.type
class GiftSent:
    transfer: GiftTransfer
    sender_id: strawberry.Private[str]

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet:
        return Wallet.of(await accounts.wallet(ctx(info), self.sender_id))


SendGiftResult = Annotated[
    GiftSent
    | InsufficientCoins
    | StreamNotLive
    | NotFound
    | NotAllowed
    | AgeRestricted
    | IdempotencyConflict
    | InvalidInput
    | AccountRestricted,
    strawberry.union(
        "SendGiftResult",
        description="NotAllowed: gifting yourself, or a recipient who is not an adult.",
    ),
]


@strawberry.type
class GiftMutations:
    @strawberry.mutation(
        description="Spend coins on a gift to a live stream or a video; the recipient earns "
        "diamonds. Adults only."
    )
    @returns_user_errors
    async def send_gift(self, info: Info, input: SendGiftInput) -> SendGiftResult:
        outcome = await gifts.send_gift(
            ctx(info),
            str(input.gift_id),
            str(input.stream_id) if input.stream_id is not None else None,
            str(input.video_id) if input.video_id is not None else None,
            input.quantity,
            input.idempotency_key,
        )
        return GiftSent(transfer=GiftTransfer.of(outcome.transfer), sender_id=outcome.sender_id)
