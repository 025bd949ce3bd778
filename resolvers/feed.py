"""The giftFeed subscription: each gift of a live stream as it lands, until the stream ends.

A stream that does not exist is an error (NOT_FOUND); an ended stream's feed completes at
once; ending the stream completes its feeds (`GiftFeed.end`). A stream ended by another
process (the Lambda in AWS) is noticed at the next re-check of its status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from infra.dynamo import Item
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import UnknownId

RECHECK_SECONDS = 30.0


async def gift_feed(ctx: Context, stream_id: str) -> AsyncIterator[Item]:
    if not validation.is_id(stream_id):
        raise UnknownId(f"No live stream {stream_id[:64]}.", field="streamId")
    services = ctx.services
    if ctx.feed is not services.feed:
        # The AWS fan-out (handlers/gift_feed.py) renders gifts it was handed, one at a time,
        # for subscriptions the WebSocket API accepted: nothing to subscribe to or check here.
        async for transfer in ctx.feed.subscribe(stream_id):
            yield transfer
        return
    # Subscribe before reading the status: an end between the two still reaches us.
    subscription = services.feed.subscribe(stream_id)
    try:
        stream = await services.streams.get(stream_id)
        if stream is None:
            raise UnknownId(f"No live stream {stream_id}.", field="streamId")
        if stream["status"] != "LIVE":
            return
        while True:
            try:
                transfer = await subscription.next(RECHECK_SECONDS)
            except StopAsyncIteration:
                return
            if transfer is not None:
                yield transfer
                continue
            latest = await services.streams.get(stream_id)
            if latest is None or latest["status"] != "LIVE":
                return
    finally:
        subscription.close()
