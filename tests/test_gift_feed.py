"""giftFeed over WebSockets (graphql-transport-ws) on the local server."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import datetime
from typing import Any

import pytest

from infra.feed import GiftFeed, SlowConsumer
from infra.services import Services
from tests.clients import AiohttpClient, LambdaClient, claims_for
from tests.conftest import Clock
from tests.gifting import END, SEND, go_live, send, top_up

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


# --- giftFeed(after:), the cap, streamDigest: the local server ---------------------------

FEED_AFTER = """subscription F($id: ID!, $after: ID) {
  giftFeed(streamId: $id, after: $after) { id coins } }"""
DIGEST = """subscription D($id: ID!) { streamDigest(streamId: $id) {
  streamId sequence at status coinsReceived giftsSinceLast coinsSinceLast
  topGifters { rank coins user { id } } highlights { id coins sender { id } } } }"""


async def open_socket(client: Any, headers: dict[str, str] | None = None) -> Any:
    ws = await client.ws_connect(
        "/graphql", protocols=["graphql-transport-ws"], headers=headers or {}
    )
    await ws.send_json({"type": "connection_init"})
    assert (await ws.receive_json(timeout=2))["type"] == "connection_ack"
    return ws


async def start(ws: Any, op: str, query: str, variables: dict[str, Any]) -> None:
    payload = {"query": query, "variables": variables}
    await ws.send_json({"id": op, "type": "subscribe", "payload": payload})


async def until(ws: Any, op: str, *types: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=5)
        if message.get("id") == op and message["type"] in types:
            return message


async def gifts_until(ws: Any, op: str, count: int) -> list[str]:
    """The ids of the next `count` gifts of subscription `op`."""
    ids = []
    while len(ids) < count:
        message = await until(ws, op, "next", "complete", "error")
        assert message["type"] == "next" and "errors" not in message["payload"], message
        ids.append(message["payload"]["data"]["giftFeed"]["id"])
    return ids


@pytest.fixture
async def local(services: Services, aiohttp_client: Any) -> tuple[Any, AiohttpClient]:
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services))
    return client, AiohttpClient(client, services.settings.jwt_secret)


async def test_after_sends_what_landed_meanwhile_late_commits_included_then_live(
    services: Services, local: tuple[Any, AiohttpClient], clock: Clock
) -> None:
    client, http = local
    fan = claims_for("fan")
    stream = await go_live(http, claims_for("creator"))
    await top_up(http, fan, 2)
    # GIVEN a viewer that saw two gifts, then dropped
    ws = await open_socket(client)
    await start(ws, "1", FEED_AFTER, {"id": stream, "after": None})
    await wait_for_subscribers(services, stream, 1)
    seen = [(await send(http, fan, f"s{i}", stream=stream))["transfer"]["id"] for i in range(2)]
    assert await gifts_until(ws, "1", 2) == seen
    await ws.close()
    await wait_for_subscribers(services, stream, 0)
    # WHEN a gift lands meanwhile, and one whose id was minted before the last one seen
    # (its writer's clock is behind, or it retried) commits after it
    missed = [(await send(http, fan, "m1", stream=stream))["transfer"]["id"]]
    clock.ahead = -3.0
    late = (await send(http, fan, "late", stream=stream))["transfer"]["id"]
    clock.ahead = 0.0
    assert late < seen[-1] < missed[0]
    # THEN resubscribing after the last gift seen sends both, oldest first, then live ones
    ws = await open_socket(client)
    await start(ws, "2", FEED_AFTER, {"id": stream, "after": seen[-1]})
    backfilled = await gifts_until(ws, "2", 3)
    assert backfilled == sorted(backfilled)
    assert set(backfilled) == {
        seen[0],
        late,
        missed[0],
    }  # the overlap resends seen[0], not seen[-1]
    live = (await send(http, fan, "after", stream=stream))["transfer"]["id"]
    assert await gifts_until(ws, "2", 1) == [live]
    await ws.close()


async def test_a_gift_landing_while_the_backfill_is_read_is_sent_once(
    services: Services, local: tuple[Any, AiohttpClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam: a gift that lands after the subscription is registered and before the
    backfill is read is in both; it is sent once."""
    import resolvers.feed as feed_resolvers

    client, http = local
    fan = claims_for("fan")
    stream = await go_live(http, claims_for("creator"))
    await top_up(http, fan, 2)
    first = (await send(http, fan, "a", stream=stream))["transfer"]["id"]
    read_backfill = feed_resolvers.backfill
    at_the_seam: list[str] = []

    async def landing_meanwhile(*args: Any) -> list[dict[str, Any]]:
        at_the_seam.append((await send(http, fan, "seam", stream=stream))["transfer"]["id"])
        return await read_backfill(*args)

    monkeypatch.setattr(feed_resolvers, "backfill", landing_meanwhile)
    ws = await open_socket(client)
    await start(ws, "1", FEED_AFTER, {"id": stream, "after": first})
    assert await gifts_until(ws, "1", 1) == at_the_seam
    monkeypatch.setattr(feed_resolvers, "backfill", read_backfill)
    next_gift_id = (await send(http, fan, "b", stream=stream))["transfer"]["id"]
    assert await gifts_until(ws, "1", 1) == [next_gift_id]  # not the seam's gift again
    await ws.close()


async def test_an_after_that_is_not_a_gift_of_the_stream_is_not_found(
    services: Services, local: tuple[Any, AiohttpClient]
) -> None:
    client, http = local
    fan = claims_for("fan")
    mine, other = await go_live(http, claims_for("cora")), await go_live(http, claims_for("wen"))
    await top_up(http, fan)
    elsewhere = (await send(http, fan, "o", stream=other))["transfer"]["id"]
    ws = await open_socket(client)
    for op, after in (("1", elsewhere), ("2", "gft_01HZZZZZZZZZZZZZZZZZZZZZZZ"), ("3", "x" * 300)):
        await start(ws, op, FEED_AFTER, {"id": mine, "after": after})
        message = await until(ws, op, "next", "error")
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"] == {"code": "NOT_FOUND", "field": "after"}, errors
    await ws.close()
    await wait_for_subscribers(services, mine, 0)


async def test_the_cap_refuses_with_feed_full_but_never_the_creator(
    services: Services, local: tuple[Any, AiohttpClient]
) -> None:
    client, http = local
    services.settings = dataclasses.replace(services.settings, feed_max_subscribers=2)
    creator = claims_for("creator")
    stream = await go_live(http, creator)
    # GIVEN two viewers: the stream's cap
    viewers = [await open_socket(client) for _ in range(2)]
    for ws in viewers:
        await start(ws, "1", FEED_AFTER, {"id": stream, "after": None})
    await wait_for_subscribers(services, stream, 2)
    # THEN a third is refused with FEED_FULL
    third = await open_socket(client)
    await start(third, "1", FEED_AFTER, {"id": stream, "after": None})
    refused = await until(third, "1", "next", "error")
    assert refused["payload"]["errors"][0]["extensions"] == {"code": "FEED_FULL"}
    # AND the creator is not
    own = await open_socket(client, {"Authorization": f"Bearer {http.token(creator)}"})
    await start(own, "1", FEED_AFTER, {"id": stream, "after": None})
    await wait_for_subscribers(services, stream, 3)
    # AND a place that frees up is taken again
    await viewers[0].close()
    await wait_for_subscribers(services, stream, 2)
    await start(third, "2", FEED_AFTER, {"id": stream, "after": None})
    await wait_for_subscribers(services, stream, 3)
    for ws in (viewers[1], third, own):
        await ws.close()


async def digests_until(ws: Any, op: str, gifts: int) -> list[dict[str, Any]]:
    """Digests of subscription `op` until they have counted `gifts` gifts."""
    received: list[dict[str, Any]] = []
    while sum(d["giftsSinceLast"] for d in received) < gifts:
        message = await until(ws, op, "next", "complete", "error")
        assert message["type"] == "next" and "errors" not in message["payload"], message
        received.append(message["payload"]["data"]["streamDigest"])
    return received


async def test_digests_are_ordered_summaries_at_most_one_a_second_and_a_last_at_the_end(
    services: Services, local: tuple[Any, AiohttpClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("infra.feed.DIGEST_SECONDS", 0.3)  # the spacing, kept short here
    client, http = local
    creator, fan, wen = claims_for("creator"), claims_for("fan"), claims_for("wen")
    stream = await go_live(http, creator)
    await top_up(http, fan, 2)
    await top_up(http, wen, 1, package="coins-350")
    # GIVEN two viewers of the stream's digest
    viewers = [await open_socket(client) for _ in range(2)]
    for ws in viewers:
        await start(ws, "d", DIGEST, {"id": stream})
    await wait_for_digest_subscribers(services, stream, 1)  # one shared subscription
    # WHEN gifts land: six roses from one viewer, a panda and a love-bang from another
    sent = [await send(http, fan, f"r{i}", stream=stream) for i in range(6)]
    sent.append(await send(http, wen, "p", gift="panda", stream=stream))
    sent.append(await send(http, wen, "l", gift="love-bang", stream=stream))
    coins = sum(s["transfer"]["coins"] for s in sent)
    # THEN each viewer gets the same digests: numbered one after another, spaced by at least
    # DIGEST_SECONDS, whose gifts and coins add up to what was sent, with exact totals
    received = [await digests_until(ws, "d", len(sent)) for ws in viewers]
    assert received[0] == received[1]
    digests = received[0]
    assert [d["sequence"] for d in digests] == list(range(1, len(digests) + 1))
    times = [datetime.fromisoformat(d["at"]) for d in digests]
    assert all((b - a).total_seconds() >= 0.3 for a, b in itertools.pairwise(times))
    assert sum(d["coinsSinceLast"] for d in digests) == coins == digests[-1]["coinsReceived"]
    assert all(d["status"] == "LIVE" and d["streamId"] == stream for d in digests)
    # the largest gifts first, at most five; the ranking's head
    first = digests[0]
    assert len(first["highlights"]) <= 5
    assert first["highlights"] == sorted(first["highlights"], key=lambda h: -h["coins"])
    every = [h["id"] for d in digests for h in d["highlights"]]
    love_bang = sent[-1]["transfer"]["id"]
    assert love_bang in every and len(every) == len(set(every))
    wens = sum(s["transfer"]["coins"] for s in sent[6:])
    assert digests[-1]["topGifters"][0] == {"rank": 1, "coins": wens, "user": {"id": "wen"}}
    # WHEN the stream ends: one last digest, ENDED, then complete
    rose = await send(http, fan, "last", stream=stream)
    await http.data(END, {"id": stream}, creator)
    for ws in viewers:
        last: list[dict[str, Any]] = []
        while not last or last[-1]["status"] != "ENDED":
            last.append((await until(ws, "d", "next"))["payload"]["data"]["streamDigest"])
        assert [d["sequence"] for d in last] == list(
            range(len(digests) + 1, len(digests) + 1 + len(last))
        )
        assert sum(d["giftsSinceLast"] for d in last) == 1
        assert last[-1]["coinsReceived"] == coins + rose["transfer"]["coins"]
        assert (await until(ws, "d", "complete", "next"))["type"] == "complete"
        await ws.close()


async def wait_for_digest_subscribers(services: Services, stream: str, count: int) -> None:
    for _ in range(100):
        channel = services.feed.digest_channel(stream)
        if (len(channel.subscribers) if channel else 0) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} digest subscribers")


async def test_many_viewers_of_a_digest_cost_one_execution(
    services: Services, local: tuple[Any, AiohttpClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local server executes a digest once per document, whatever the viewers."""
    monkeypatch.setattr("infra.feed.DIGEST_SECONDS", 0.1)
    client, http = local
    fan = claims_for("fan")
    stream = await go_live(http, claims_for("creator"))
    await top_up(http, fan)
    viewers = [await open_socket(client) for _ in range(20)]
    for ws in viewers:
        await start(ws, "d", DIGEST, {"id": stream})
    await wait_for_digest_subscribers(services, stream, 1)
    reads: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        reads.extend(params.get("RequestItems", {}))

    services.dynamo.client.meta.events.register(
        "provide-client-params.dynamodb.BatchGetItem", record
    )
    await send(http, fan, "g", stream=stream)
    for ws in viewers:
        assert (await digests_until(ws, "d", 1))[0]["sequence"] == 1
    # one read of the counters, and of the users shown (the gift's own answer reads some too):
    # not one per viewer
    assert reads.count(services.settings.table("streams")) <= 2, reads
    assert reads.count(services.settings.table("accounts")) <= 2, reads
    for ws in viewers:
        await ws.close()
    await wait_for_digest_subscribers(services, stream, 0)
