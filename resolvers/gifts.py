"""Sending a gift: the sender's coins become the creator's diamonds in one transaction.

One TransactWriteItems, every item in it distinct, none of them shared by all the gifts to a
stream (see docs/scaling.md):
  0 accounts[sender]           coins -= price x quantity   (condition: enough coins)
  1 streams[stream#kk]         coins += price x quantity   (condition: live = true)
    or videos[video#kk]
  2 earnings[creator#kk]       diamonds += diamonds x quantity
  3 ledger[sender]             GIFT_SENT entry
  4 ledger[creator#kk]         GIFT_RECEIVED entry
  5 transfers[id]              the gift transfer
  6 idempotency[key]           born COMPLETED (condition: key unused)
  7 rankings[stream, sender]   coins += price x quantity (streams only)
kk is a random shard of the target, so a crowd of gifters spreads over `gift_shards` items.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import runtime
from infra.accounts import is_restricted
from infra.catalog import GIFT
from infra.dynamo import Item, TransactionCancelled
from infra.earnings import bucket_for
from infra.ids import iso, new_id, now
from resolvers import idempotency, validation
from resolvers.context import Context
from resolvers.errors import (
    InsufficientCoins,
    InvalidInput,
    NotAllowed,
    NotFound,
    StreamNotLive,
    restricted,
)

MUTATION = "sendGift"
MAX_QUANTITY = 1000
SENDER, TARGET, IDEMPOTENCY = 0, 1, 6


@dataclass
class GiftOutcome:
    transfer: Item
    sender_id: str


async def send_gift(
    ctx: Context,
    gift_id: str,
    stream_id: str | None,
    video_id: str | None,
    quantity: int | None,
    idempotency_key: str,
) -> GiftOutcome:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    validation.identifier(gift_id, "giftId")
    if (stream_id is None) == (video_id is None):
        raise InvalidInput("Give exactly one of streamId and videoId.", field="streamId")
    field = "streamId" if stream_id is not None else "videoId"
    target_id = validation.identifier(stream_id or video_id or "", field)
    count = validation.int_range(1 if quantity is None else quantity, "quantity", 1, MAX_QUANTITY)
    ctx.require_adult("send gifts")
    attempt = idempotency.begin(
        ctx,
        MUTATION,
        idempotency_key,
        {
            "giftId": gift_id,
            "streamId": stream_id,
            "videoId": video_id,
            "quantity": count,
        },
    )

    services = ctx.services
    gift = await services.catalog.get(GIFT, gift_id)
    if gift is None or not gift["active"]:
        return await _replay(
            ctx, await idempotency.fail(ctx, attempt, NotFound(f"No gift {gift_id} is on sale."))
        )
    repo = services.streams if stream_id is not None else services.videos
    facts = await repo.facts(target_id)
    if facts is None:
        kind = "live stream" if stream_id is not None else "video"
        return await _replay(
            ctx, await idempotency.fail(ctx, attempt, NotFound(f"No {kind} {target_id}."))
        )
    creator = facts["creatorId"]
    if creator == identity.sub:
        return await _replay(
            ctx,
            await idempotency.fail(ctx, attempt, NotAllowed("You cannot send gifts to yourself.")),
        )
    if video_id is not None and not facts["creatorAdult"]:
        return await _replay(
            ctx,
            await idempotency.fail(ctx, attempt, NotAllowed("This creator cannot receive gifts.")),
        )

    coins, diamonds = gift["coins"] * count, gift["diamonds"] * count
    shard = runtime.current().randbelow(facts["shards"])
    created = iso(now())
    # the creator's earnings shard and hold bucket, kept on the transfer for a chargeback
    bucket = bucket_for(services.settings.earnings_hold_seconds, runtime.current().time())
    new_sender = await services.accounts.is_new(identity.sub)  # a review signal
    transfer = {
        "id": new_id("gft"),
        "targetId": services.transfers.index_key(target_id, shard, facts["indexShards"]),
        "streamId": stream_id,
        "videoId": video_id,
        "senderId": identity.sub,
        "recipientId": creator,
        "giftId": gift_id,
        "quantity": count,
        "coins": coins,
        "diamonds": diamonds,
        "shard": shard,
        "bucket": bucket,
        "createdAt": created,
    }
    actions = [
        services.accounts.debit_action(identity.sub, coins, 0),
        services.streams.gift_action(target_id, shard, coins)
        if stream_id is not None
        else services.videos.gift_action(target_id, shard, coins),
        services.earnings.credit_action(creator, shard, diamonds, bucket, new_sender),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=identity.sub,
            kind="GIFT_SENT",
            coins=-coins,
            diamonds=0,
            reference_id=transfer["id"],
            created_at=created,
        ),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=creator,
            kind="GIFT_RECEIVED",
            coins=0,
            diamonds=diamonds,
            reference_id=transfer["id"],
            created_at=created,
            shard=shard,
        ),
        services.transfers.put_action(transfer),
        idempotency.completed_action(ctx, attempt, {"transferId": transfer["id"]}),
    ]
    if stream_id is not None:
        actions.append(
            services.rankings.add_action(target_id, identity.sub, coins, facts["indexShards"])
        )

    try:
        await services.dynamo.transact(actions)
    except TransactionCancelled as cancelled:
        # Conflicts and throttles were retried below; these are conditions, checked in this
        # order: a retry of a gift that landed fails every condition it would change again.
        if cancelled.failed(IDEMPOTENCY):
            return await _replay(
                ctx, await idempotency.earlier(ctx, attempt, cancelled, IDEMPOTENCY)
            )
        if cancelled.failed(SENDER) and is_restricted(cancelled.items[SENDER]):
            return await _replay(ctx, await idempotency.fail(ctx, attempt, restricted()))
        if cancelled.failed(SENDER):
            available = (cancelled.items[SENDER] or {}).get("coins", 0)
            error = InsufficientCoins(
                f"This gift costs {coins} coins; you have {available}.",
                required=coins,
                available=available,
            )
            return await _replay(ctx, await idempotency.fail(ctx, attempt, error))
        if cancelled.failed(TARGET):
            return await _replay(
                ctx,
                await idempotency.fail(ctx, attempt, StreamNotLive("This stream is not live.")),
            )
        raise
    if stream_id is not None:
        services.feed.publish(target_id, transfer)
    return GiftOutcome(_clean(transfer), identity.sub)


async def _replay(ctx: Context, record: Item) -> GiftOutcome:
    services = ctx.services
    transfer = await services.dynamo.committed(
        lambda: services.transfers.get(record["transferId"]), "the gift"
    )
    return GiftOutcome(transfer, transfer["senderId"])


def _clean(transfer: Item) -> Item:
    return {k: v for k, v in transfer.items() if v is not None}
