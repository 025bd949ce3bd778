"""The gift feed on the deployed WebSocket API, message by message (a plain graphql-transport-ws
client over `websockets`): a document selecting every field the schema allows under
GiftTransfer, resolved by the fan-out under its own IAM role; and the local server's limits
and answers on AWS (README, "What a feed client sees"), which tests/test_hostile_ws.py checks
on the local server.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_required_argument,
)

from tests.cloud.conftest import Cloud
from tests.cloud.test_stack import END, FEED, _forged_token, _subscribers, buy, gift, go_live

pytestmark = pytest.mark.cloud


class Feed:
    """One graphql-transport-ws connection to the stack's gift feed."""

    def __init__(self, cloud: Cloud) -> None:
        self.url = cloud.stack.gift_feed_url
        self.socket: Any = None

    async def open(self, payload: dict[str, Any] | None = None) -> Feed:
        import websockets

        self.socket = await websockets.connect(
            self.url, subprotocols=["graphql-transport-ws"], open_timeout=30, max_size=2**20
        )
        await self.send({"type": "connection_init", "payload": payload or {}})
        assert await self.receive() == {"type": "connection_ack"}
        return self

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        # API Gateway takes frames of at most 32 KB: a longer message goes in fragments
        await self.socket.send([text[i : i + 16_000] for i in range(0, len(text), 16_000)])

    async def subscribe(self, op: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"id": op, "type": "subscribe", "payload": payload})

    async def receive(self, timeout: float = 30) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        return message

    async def until(self, op: str, *types: str) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message.get("id") == op and message["type"] in types:
                return message

    async def closed(self, timeout: float = 30) -> int:
        """Wait for the server to close the connection: its close code."""
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await self.receive(deadline - time.monotonic())
            except ConnectionClosed:
                return int(self.socket.close_code)
        raise AssertionError("the connection stayed open")

    async def close(self) -> None:
        await self.socket.close()


async def wait_for(cloud: Cloud, count: int) -> None:
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(_subscribers, cloud) != count:
        assert time.monotonic() < deadline, (_subscribers(cloud), count)
        await asyncio.sleep(0.1)


# --- every field ------------------------------------------------------------------------


def every_field(type_name: str = "GiftTransfer", first: int = 2) -> str:
    """A selection of every field reachable under `type_name` in the served schema: each list
    asks for `first` items; a type met again on its own path is asked for its plain fields
    only, so the document ends. Fields added to the schema later are selected too."""
    from schema import schema

    def fields(kind: GraphQLNamedType, path: tuple[str, ...]) -> str:
        if is_abstract_type(kind):
            possible = schema._schema.get_possible_types(kind)  # type: ignore[arg-type]
            return "__typename " + " ".join(
                f"... on {t.name} {{ {fields(t, path)} }}" for t in possible
            )
        assert isinstance(kind, GraphQLObjectType)
        return " ".join(field(name, f, path) for name, f in kind.fields.items())

    def field(name: str, definition: GraphQLField, path: tuple[str, ...]) -> str:
        required = [a for a, arg in definition.args.items() if is_required_argument(arg)]
        assert not required, f"{name} needs {required}: give the generator a value for it"
        arguments = f"(first: {first})" if "first" in definition.args else ""
        kind = get_named_type(definition.type)
        if is_leaf_type(kind):
            return name + arguments
        if kind.name in path:
            assert isinstance(kind, GraphQLObjectType)
            plain = [n for n, f in kind.fields.items() if is_leaf_type(get_named_type(f.type))]
            return f"{name}{arguments} {{ {' '.join(plain)} }}"
        return f"{name}{arguments} {{ {fields(kind, (*path, kind.name))} }}"

    root = schema._schema.get_type(type_name)
    assert root is not None
    return fields(root, (type_name,))


@pytest.fixture(scope="module")
def fay(cloud: Cloud) -> str:
    """A buyer of this module's own (test_stack.py counts Vic's coins)."""
    cloud.sign_up("fay", "1993-03-03")
    buy(cloud, "fay", "coins-350", "fay-buy")
    return "fay"


async def test_a_feed_selecting_every_field_under_gift_transfer(cloud: Cloud, fay: str) -> None:
    # GIVEN a viewer whose giftFeed selects every field of GiftTransfer, stream { topGifters
    # gifts } and video { gifts } included (the fan-out resolves them under its own role)
    stream = go_live(cloud, "cora")
    selection = every_field()
    document = f"subscription F($id: ID!) {{ giftFeed(streamId: $id) {{ {selection} }} }}"
    before = _subscribers(cloud)
    feed = await Feed(cloud).open()
    await feed.subscribe("all", document, {"id": stream})
    await wait_for(cloud, before + 1)
    # WHEN Fay sends a gift
    sent = await asyncio.to_thread(gift, cloud, fay, stream, "rose", "every-field-1")
    # THEN the viewer gets it with every field resolved, and no error
    message = await feed.until("all", "next", "error", "complete")
    assert message["type"] == "next" and "errors" not in message["payload"], message
    got = message["payload"]["data"]["giftFeed"]
    assert got["id"] == sent["transfer"]["id"] and got["coins"] == 1
    assert (got["sender"]["id"], got["recipient"]["id"]) == (
        cloud.users[fay].sub,
        cloud.users["cora"].sub,
    )
    assert got["stream"]["topGifters"][0]["user"]["id"] == cloud.users[fay].sub
    assert got["stream"]["gifts"]["edges"][0]["node"]["id"] == sent["transfer"]["id"]
    assert got["video"] is None
    await asyncio.to_thread(cloud.data, "cora", END, {"id": stream})
    assert (await feed.until("all", "complete"))["type"] == "complete"
    await feed.close()


# --- the local server's limits and answers, on AWS --------------------------------------


async def test_subscriptions_per_connection_are_capped_as_on_the_local_server(
    cloud: Cloud,
) -> None:
    stream = go_live(cloud, "wen")
    before = _subscribers(cloud)
    feed = await Feed(cloud).open()
    # GIVEN 21 subscriptions on one connection (the cap is LIVECOINS_WS_MAX_OPERATIONS, 20)
    for i in range(21):
        await feed.subscribe(f"s{i}", FEED, {"id": stream})
    # THEN one of them gets the local server's error for its id, 20 are stored
    refused = await feed.until("s20", "error")
    assert refused["payload"] == [{"message": "Subscription limit reached"}]
    await wait_for(cloud, before + 20)
    # AND the connection stays: it answers a ping, and completing one frees a place
    await feed.send({"type": "ping"})
    assert await feed.receive() == {"type": "pong"}
    await feed.send({"id": "s0", "type": "complete"})
    await wait_for(cloud, before + 19)
    await feed.subscribe("s21", FEED, {"id": stream})
    await wait_for(cloud, before + 20)
    await asyncio.to_thread(cloud.data, "wen", END, {"id": stream})
    await wait_for(cloud, before)
    await feed.close()


async def test_a_feed_for_a_stream_that_does_not_exist_is_not_found(cloud: Cloud) -> None:
    feed = await Feed(cloud).open()
    await feed.subscribe("1", FEED, {"id": "str_01HZZZZZZZZZZZZZZZZZZZZZZZ"})
    answer = await feed.until("1", "next", "error", "complete")
    assert answer["type"] == "next", answer  # as the local server: the error, then complete
    error = answer["payload"]["errors"][0]
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "streamId"}, error
    assert (await feed.until("1", "complete", "next", "error"))["type"] == "complete"
    await feed.close()


async def test_a_bad_token_is_acknowledged_then_refused_then_closed(cloud: Cloud) -> None:
    feed = await Feed(cloud).open({"Authorization": f"Bearer {_forged_token(cloud)}"})
    await feed.subscribe("1", FEED, {"id": "str_01HZZZZZZZZZZZZZZZZZZZZZZZ"})
    refused = await feed.until("1", "error")
    assert refused["payload"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert await feed.closed() == 1000  # what API Gateway sends whatever the backend wants


async def test_a_message_over_the_size_limit_is_refused_then_closed(cloud: Cloud) -> None:
    feed = await Feed(cloud).open()
    # 70,000 bytes: over LIVECOINS_MAX_BODY_BYTES (64 KiB), under API Gateway's 128 KB
    await feed.subscribe("big", "{" + " " * 70_000 + "}", {})
    refused = await feed.until("big", "error")
    assert refused["payload"][0]["extensions"] == {"code": "MESSAGE_TOO_LARGE"}
    await feed.closed()


# --- streamDigest and giftFeed(after:) on the stack --------------------------------------

DIGEST = """subscription D($id: ID!) { streamDigest(streamId: $id) {
  streamId sequence status coinsReceived giftsSinceLast coinsSinceLast
  topGifters { rank coins user { id } } highlights { id coins } } }"""
AFTER = "subscription F($id: ID!, $after: ID) { giftFeed(streamId: $id, after: $after) { id } }"


async def test_digests_over_the_websocket_api(cloud: Cloud, fay: str) -> None:
    # GIVEN two viewers of Cora's stream's digest
    stream = go_live(cloud, "cora")
    before = _subscribers(cloud)
    viewers = [await Feed(cloud).open() for _ in range(2)]
    for viewer in viewers:
        await viewer.subscribe("d", DIGEST, {"id": stream})
    await wait_for(cloud, before + 2)
    # WHEN Fay sends three gifts
    sent = [
        await asyncio.to_thread(gift, cloud, fay, stream, "rose", f"digest-{i}") for i in range(3)
    ]
    ids = [s["transfer"]["id"] for s in sent]
    # THEN each viewer gets digests numbered one after another that add up to them, with the
    # stream's total (its counters) and Fay at the head of the ranking
    for viewer in viewers:
        digests: list[dict[str, Any]] = []
        while sum(d["giftsSinceLast"] for d in digests) < 3:
            message = await viewer.until("d", "next", "error", "complete")
            assert message["type"] == "next" and "errors" not in message["payload"], message
            digests.append(message["payload"]["data"]["streamDigest"])
        sequences = [d["sequence"] for d in digests]
        assert sequences == list(range(sequences[0], sequences[0] + len(digests)))
        assert digests[-1]["coinsReceived"] == sum(d["coinsSinceLast"] for d in digests) == 3
        assert digests[-1]["topGifters"][0]["user"]["id"] == cloud.users[fay].sub
        assert {h["id"] for d in digests for h in d["highlights"]} == set(ids)
    # AND a giftFeed(after:) subscriber gets what landed after the gift it names
    late = await Feed(cloud).open()
    await late.subscribe("f", AFTER, {"id": stream, "after": ids[0]})
    backfilled = [
        (await late.until("f", "next"))["payload"]["data"]["giftFeed"]["id"] for _ in ids[1:]
    ]
    assert backfilled == ids[1:]
    # WHEN Cora ends the stream: a last digest (ENDED), then complete, for each viewer
    await asyncio.to_thread(cloud.data, "cora", END, {"id": stream})
    for viewer in viewers:
        last = await viewer.until("d", "next")
        assert last["payload"]["data"]["streamDigest"]["status"] == "ENDED", last
        assert (await viewer.until("d", "complete", "next"))["type"] == "complete"
        await viewer.close()
    assert (await late.until("f", "complete"))["type"] == "complete"
    await late.close()
    await wait_for(cloud, before)
