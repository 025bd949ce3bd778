"""giftFeed over WebSockets (graphql-transport-ws) on the local server."""

from __future__ import annotations

import asyncio
from typing import Any

from infra.feed import GiftFeed, SlowConsumer
from infra.services import Services
from tests.clients import AiohttpClient, LambdaClient, claims_for
from tests.gifting import SEND, go_live, send, top_up

FEED = "subscription F($id: ID!) { giftFeed(streamId: $id) { id coins gift { id } sender { id } } }"


async def subscribe(client: Any, stream: str, headers: dict[str, str] | None = None) -> Any:
    ws = await client.ws_connect(
        "/graphql", protocols=["graphql-transport-ws"], headers=headers or {}
    )
    await ws.send_json({"type": "connection_init"})
    assert (await ws.receive_json(timeout=2))["type"] == "connection_ack"
    await ws.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": FEED, "variables": {"id": stream}}}
    )
    return ws


async def next_gift(ws: Any) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=1.0)  # within a second of landing
        if message["type"] == "next":
            gift: dict[str, Any] = message["payload"]["data"]["giftFeed"]
            return gift
        assert message["type"] in ("ping", "pong"), message


async def wait_for_subscribers(services: Services, stream: str, count: int) -> None:
    for _ in range(100):
        if services.feed.subscribers(stream) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} subscribers")


async def test_every_gift_reaches_every_subscriber_in_order(
    services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services))
    http = AiohttpClient(client, services.settings.jwt_secret)
    lambda_client = LambdaClient(services)
    creator, fan = claims_for("creator"), claims_for("fan")
    stream = await go_live(http, creator)
    await top_up(http, fan, 2)
    # GIVEN two anonymous subscribers
    watchers = [await subscribe(client, stream), await subscribe(client, stream)]
    await wait_for_subscribers(services, stream, 2)
    # WHEN gifts are sent over HTTP, over the WebSocket and through the Lambda handler
    sender_ws = await client.ws_connect(
        "/graphql",
        protocols=["graphql-transport-ws"],
        headers={"Authorization": f"Bearer {http.token(fan)}"},
    )
    await sender_ws.send_json({"type": "connection_init"})
    await sender_ws.receive_json(timeout=2)
    sent = [(await send(http, fan, "h1", stream=stream))["transfer"]["id"]]
    await sender_ws.send_json(
        {
            "id": "m",
            "type": "subscribe",
            "payload": {
                "query": SEND,
                "variables": {
                    "input": {"giftId": "panda", "streamId": stream, "idempotencyKey": "ws1"}
                },
            },
        }
    )
    while (message := await sender_ws.receive_json(timeout=2))["type"] != "next":
        pass
    sent.append(message["payload"]["data"]["sendGift"]["transfer"]["id"])
    sent.append((await send(lambda_client, fan, "l1", stream=stream))["transfer"]["id"])
    sent.append((await send(http, fan, "h2", gift="love-bang", stream=stream))["transfer"]["id"])
    # THEN each subscriber sees all four, in order
    for ws in watchers:
        received = [await next_gift(ws) for _ in sent]
        assert [g["id"] for g in received] == sent
        assert [g["gift"]["id"] for g in received] == ["rose", "panda", "rose", "love-bang"]
        assert received[0]["sender"] == {"id": "fan"}
    # a disconnect removes the subscriber
    for ws in [*watchers, sender_ws]:
        await ws.close()
    await wait_for_subscribers(services, stream, 0)


async def test_only_graphql_transport_ws_is_spoken(services: Services, aiohttp_client: Any) -> None:
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services))
    ws = await client.ws_connect("/graphql", protocols=["graphql-ws"])
    message = await ws.receive(timeout=2)
    assert ws.closed or message.type.name in ("CLOSE", "CLOSED", "CLOSING")
    await ws.close()


async def test_stalled_subscriber_does_not_block_gifts(
    services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    services.feed.queue_size = 4
    client = await aiohttp_client(make_app(services))
    http = AiohttpClient(client, services.settings.jwt_secret)
    fan = claims_for("fan")
    stream = await go_live(http, claims_for("creator"))
    await top_up(http, fan)
    stalled = await subscribe(client, stream)  # never reads again
    await wait_for_subscribers(services, stream, 1)
    results = [await send(http, fan, f"g{i}", stream=stream) for i in range(30)]
    assert {r["__typename"] for r in results} == {"GiftSent"}
    await stalled.close()


async def test_feed_drops_a_consumer_that_falls_behind() -> None:
    feed = GiftFeed(queue_size=3)
    received: list[int] = []
    slow = feed.subscribe("s")
    fast = feed.subscribe("s")
    first_slow = asyncio.ensure_future(slow.__anext__())
    first_fast = asyncio.ensure_future(fast.__anext__())
    await asyncio.sleep(0)
    for n in range(10):
        feed.publish("s", n)  # never waits
        await asyncio.sleep(0)
        if n == 0:
            received.append(await first_fast)
        else:
            received.append(await fast.__anext__())
    assert received == list(range(10))
    assert await first_slow == 0
    drained = []
    try:
        while True:
            drained.append(await slow.__anext__())
    except SlowConsumer:
        pass
    assert len(drained) < 9
    await fast.aclose()
    assert feed.subscribers("s") == 0
