"""The live feed: giftFeed (each gift of a live stream, caught up from `after`) and
streamDigest (at most one summary a second), until the stream ends.

A stream that does not exist is an error (NOT_FOUND); an ended stream's feed completes at
once (after the gifts `after` asks for); ending the stream completes its feeds
(`GiftFeed.end`). A stream ended by another process (the Lambda in AWS) is noticed at the
next re-check of its status.

`giftFeed(after:)`: gift ids are ULIDs minted from each writer's clock, a gift commits up to
the retry budget after its id was minted, and the byTarget index is eventually consistent,
so a gift may land after `after` with a smaller id. The backfill therefore reads from
`overlap_seconds` before `after`'s time (what can still commit late), newest first and at
most BACKFILL_GIFTS gifts of the last BACKFILL_SECONDS (README "The gift feed"); older gifts
are `liveStream { gifts }`'s. The subscription is registered before the backfill is read and
live gifts it already sent are dropped by id, so the seam has no gap and no duplicate.

The cap: a stream takes `feed_max_subscribers` giftFeed subscribers; past it a subscribe is
refused with FEED_FULL (never the stream's creator), and streamDigest is the way to follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from infra.dynamo import Item
from infra.feed import FeedFullError, GiftFeed, Pending
from infra.ids import iso, now
from infra.services import Services
from infra.streams import shard_key
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import FeedFull, UnknownId

RECHECK_SECONDS = 30.0
BACKFILL_GIFTS = 100  # the most a (re)subscription with `after` is sent before the live gifts
BACKFILL_SECONDS = 300  # and none older than this: older ones are liveStream { gifts }'s
LATE_MARGIN_SECONDS = 6.0  # clock skew between writers and index lag, beyond the retry budget
TOP_GIFTERS = 10
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def overlap_seconds(services: Services) -> float:
    """How long after its id's time a gift may still appear in the stream's gift list: a gift
    commits within the request's retry budget or not at all."""
    return services.settings.retry_budget_seconds + LATE_MARGIN_SECONDS


def id_millis(entity_id: str) -> int:
    """The creation time (ms) a ULID-based id carries (infra.ids.new_id)."""
    value = 0
    for char in entity_id.partition("_")[2][:10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value


def id_floor(prefix: str, millis: int) -> str:
    """An id below every id minted at or after `millis`."""
    chars = []
    for _ in range(10):
        chars.append(_CROCKFORD[millis & 31])
        millis >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def _stream_error(stream_id: str) -> UnknownId:
    return UnknownId(f"No live stream {stream_id[:64]}.", field="streamId")


def _gift_error(after: str) -> UnknownId:
    return UnknownId(f"No gift {after[:64]} in this stream.", field="after")


async def anchor(services: Services, stream_id: str, after: str) -> Item:
    """The gift `after` names, if it is one of the stream's (else NOT_FOUND): one GetItem."""
    found = await services.transfers.get(after) if validation.is_id(after) else None
    if found is None or found.get("streamId") != stream_id:
        raise _gift_error(after)
    return found


async def backfill(services: Services, stream: Item, after: Item) -> list[Item]:
    """The stream's gifts that may have landed after `after`, oldest first: every gift from
    `overlap_seconds` before its time on, `after` itself excluded, at most the newest
    BACKFILL_GIFTS of the last BACKFILL_SECONDS. One Query per index partition (J), newest
    first, in parallel."""
    transfers = services.transfers
    since = max(
        id_millis(after["id"]) - int(overlap_seconds(services) * 1000),
        int(now().timestamp() * 1000) - BACKFILL_SECONDS * 1000,
    )
    lower = id_floor(after["id"].partition("_")[0], since)
    shards = stream.get("indexShards", 1)

    async def partition(key: str) -> list[Item]:
        items, _ = await services.dynamo.query(
            "transfers",
            "targetId = :t AND id > :lower",
            names={},
            values={":t": key, ":lower": lower},
            limit=BACKFILL_GIFTS + 1,
            forward=False,
            index="byTarget",
        )
        return items

    keys = [transfers.index_key(stream["id"], j, shards) for j in range(max(shards, 1))]
    pages = await asyncio.gather(*(partition(key) for key in keys))
    found = {t["id"]: t for page in pages for t in page if t["id"] != after["id"]}
    newest = sorted(found.values(), key=lambda t: t["id"], reverse=True)[:BACKFILL_GIFTS]
    return newest[::-1]


async def totals(services: Services, stream_id: str, shards: int) -> int:
    """All coins gifted in the stream: its counters, read strongly consistent (a digest's
    total never goes back)."""
    keys = [shard_key(stream_id, k) for k in range(shards)]
    items = await services.dynamo.batch_get("streams", keys, consistent=True)
    return sum(int(i.get("coins", 0)) for i in items)


async def build_digest(
    services: Services, stream_id: str, pending: Pending, sequence: int, ended: bool
) -> Item:
    """A digest of the stream: totals from its counters and ranking, `pending` (what landed
    since the previous one) for the rest. 1 BatchGetItem per 100 shards + J Queries."""
    facts = await services.streams.facts(stream_id)
    if facts is None:
        raise RuntimeError(f"a digest of a stream that does not exist: {stream_id}")
    coins, top = await asyncio.gather(
        totals(services, stream_id, facts["shards"]),
        services.rankings.top(stream_id, TOP_GIFTERS, facts.get("indexShards", 1)),
    )
    return {
        "streamId": stream_id,
        "sequence": sequence,
        "at": iso(now()),
        "status": "ENDED" if ended else "LIVE",
        "coinsReceived": coins,
        "giftsSinceLast": pending.gifts,
        "coinsSinceLast": pending.coins,
        "topGifters": [{"senderId": i["senderId"], "coins": i["coins"]} for i in top],
        "highlights": list(pending.largest),
    }


async def gift_feed(ctx: Context, stream_id: str, after: str | None) -> AsyncIterator[Item]:
    if not validation.is_id(stream_id):
        raise _stream_error(stream_id)
    if after is not None and not validation.is_id(after):
        raise _gift_error(after)
    services, source = ctx.services, ctx.feed
    if not isinstance(source, GiftFeed):
        # The AWS fan-out (handlers/gift_feed.py) renders gifts it was handed, for
        # subscriptions the WebSocket API accepted: nothing to subscribe to or check here.
        async for transfer in source.gifts(stream_id, after):
            yield transfer
        return
    facts = await services.streams.facts(stream_id)
    if facts is None:
        raise _stream_error(stream_id)
    creator = ctx.identity is not None and ctx.identity.sub == facts["creatorId"]
    try:
        # Subscribe before reading the status and the backfill: an end or a gift landing
        # between them still reaches us.
        subscription = services.feed.subscribe(
            stream_id, cap=services.settings.feed_max_subscribers, exempt=creator
        )
    except FeedFullError:
        raise FeedFull(
            "This stream's live gift feed is full: follow it with streamDigest."
        ) from None
    try:
        stream = await services.streams.get(stream_id)
        if stream is None:
            raise _stream_error(stream_id)
        sent: set[str] = set()
        if after is not None:
            for transfer in await backfill(
                services, stream, await anchor(services, stream_id, after)
            ):
                sent.add(transfer["id"])
                yield transfer
        if stream["status"] != "LIVE":
            return
        while True:
            try:
                transfer = await subscription.next(RECHECK_SECONDS)
            except StopAsyncIteration:
                return
            if transfer is not None:
                if transfer["id"] not in sent:  # the seam: sent by the backfill already
                    yield transfer
                continue
            latest = await services.streams.get(stream_id)
            if latest is None or latest["status"] != "LIVE":
                return
    finally:
        subscription.close()


async def stream_digest(ctx: Context, stream_id: str) -> AsyncIterator[Item]:
    if not validation.is_id(stream_id):
        raise _stream_error(stream_id)
    services, source = ctx.services, ctx.feed
    if not isinstance(source, GiftFeed):
        async for digest in source.digests(stream_id):
            yield digest
        return

    async def build(stream: str, pending: Pending, sequence: int, ended: bool) -> Item:
        return await build_digest(services, stream, pending, sequence, ended)

    subscription = services.feed.subscribe_digest(stream_id, build)
    try:
        stream = await services.streams.get(stream_id)
        if stream is None:
            raise _stream_error(stream_id)
        if stream["status"] != "LIVE":
            return
        while True:
            try:
                digest = await subscription.next(RECHECK_SECONDS)
            except StopAsyncIteration:
                return
            if digest is not None:
                yield digest
                continue
            latest = await services.streams.get(stream_id)
            if latest is None or latest["status"] != "LIVE":
                return
    finally:
        subscription.close()
