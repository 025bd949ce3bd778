"""sendGift: debits, credits, rules, idempotency, rankings, concurrency, spread, call counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.services import Services
from tests.clients import Client, claims_for
from tests.gifting import PUBLISH, go_live, send, top_up

RANKING = """query R($id: ID!, $first: Int) { liveStream(id: $id) {
  coinsReceived topGifters(first: $first) { rank coins user { id displayName } } } }"""
GIFTS = """query G($id: ID!, $after: String) { liveStream(id: $id) {
  gifts(first: 7, after: $after) { edges { cursor node { id coins sender { id } } }
  pageInfo { hasNextPage endCursor } } } }"""
WALLET = "{ me { wallet { coins diamonds } } }"


async def wallet(api: Client, user: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = (await api.data(WALLET, user=user))["me"]["wallet"]
    return result


async def test_gift_moves_coins_to_diamonds(api: Client, alice: dict[str, Any]) -> None:
    # GIVEN a live creator and a viewer with 70 coins
    creator = claims_for("creator", name="Creator")
    stream = await go_live(api, creator)
    await top_up(api, alice)
    # WHEN the viewer sends 3 Pandas (5 coins each)
    sent = await send(api, alice, "g1", gift="panda", stream=stream, quantity=3)
    # THEN the viewer pays 15 coins and the creator earns 15 diamonds, both in the ledger
    assert sent["__typename"] == "GiftSent"
    transfer = sent["transfer"]
    assert transfer["coins"] == 15 and transfer["diamonds"] == 15 and transfer["quantity"] == 3
    assert transfer["gift"] == {"id": "panda", "coins": 5}
    assert transfer["sender"] == {"id": "alice"} and transfer["recipient"] == {"id": "creator"}
    assert transfer["stream"] == {"id": stream} and transfer["video"] is None
    assert sent["wallet"] == {"coins": 55, "diamonds": 0}
    assert await wallet(api, creator) == {"coins": 0, "diamonds": 15}
    entries = (
        await api.data(
            "{ me { transactions { edges { node { kind coins diamonds referenceId } } } } }",
            user=creator,
        )
    )["me"]["transactions"]
    assert [e["node"] for e in entries["edges"]] == [
        {"kind": "GIFT_RECEIVED", "coins": 0, "diamonds": 15, "referenceId": transfer["id"]}
    ]
    ranking = (await api.data(RANKING, {"id": stream}))["liveStream"]
    assert ranking["coinsReceived"] == 15
    assert ranking["topGifters"] == [
        {"rank": 1, "coins": 15, "user": {"id": "alice", "displayName": "Alice"}}
    ]


async def test_gifts_to_videos(api: Client, alice: dict[str, Any]) -> None:
    creator = claims_for("vlogger")
    video = (await api.data(PUBLISH, {"title": "clip"}, creator))["publishVideo"]["video"]["id"]
    await top_up(api, alice)
    sent = await send(api, alice, "v1", gift="love-bang", video=video)
    assert sent["transfer"]["video"] == {"id": video} and sent["transfer"]["stream"] is None
    found = (
        await api.data(
            "query V($id: ID!) { video(id: $id) { coinsReceived gifts { edges { "
            "node { id } } } } }",
            {"id": video},
        )
    )["video"]
    assert found["coinsReceived"] == 25
    assert [e["node"]["id"] for e in found["gifts"]["edges"]] == [sent["transfer"]["id"]]
    assert await wallet(api, creator) == {"coins": 0, "diamonds": 25}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": 1001}, "quantity"),
        ({"stream": None}, "streamId"),
        ({"video": "vid_x"}, "streamId"),
        ({"key": ""}, "idempotencyKey"),
        ({"gift": "bad gift"}, "giftId"),
    ],
)
async def test_gift_input_limits(
    api: Client, alice: dict[str, Any], payload: dict[str, Any], field: str
) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    args: dict[str, Any] = {"key": "k", "gift": "rose", "stream": stream, "quantity": 1, **payload}
    result = await send(api, alice, args.pop("key"), **args)
    assert result["__typename"] == "InvalidInput" and result["field"] == field
    assert (await wallet(api, alice))["coins"] == 70


async def test_gift_rules(api: Client, alice: dict[str, Any], minor: dict[str, Any]) -> None:
    stream = await go_live(api, alice)
    assert (await send(api, alice, "self", stream=stream))["__typename"] == "NotAllowed"
    assert (await send(api, minor, "kid", stream=stream))["__typename"] == "AgeRestricted"
    bob = claims_for("bob")
    assert (await send(api, bob, "x", gift="nope", stream=stream))["__typename"] == "NotFound"
    assert (await send(api, bob, "y", stream="str_nope"))["__typename"] == "NotFound"
    poor = await send(api, bob, "z", gift="universe", stream=stream)
    assert poor["__typename"] == "InsufficientCoins"
    assert (poor["required"], poor["available"]) == (44999, 0)
    await top_up(api, bob)
    poor = await send(api, bob, "w", gift="galaxy", stream=stream)
    assert (poor["required"], poor["available"]) == (1000, 70)
    assert await wallet(api, alice) == {"coins": 0, "diamonds": 0}


async def test_gift_idempotency(api: Client, alice: dict[str, Any], services: Services) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    first = await send(api, alice, "once", gift="panda", stream=stream)
    again = await send(api, alice, "once", gift="panda", stream=stream)
    assert again["transfer"]["id"] == first["transfer"]["id"]
    assert (await send(api, alice, "once", gift="rose", stream=stream))["__typename"] == (
        "IdempotencyConflict"
    )
    # a remembered failure replays even after it would succeed
    assert (await send(api, alice, "big", gift="galaxy", stream=stream))["__typename"] == (
        "InsufficientCoins"
    )
    await top_up(api, alice, 1, "coins-1400")
    assert (await send(api, alice, "big", gift="galaxy", stream=stream))["__typename"] == (
        "InsufficientCoins"
    )
    assert (await wallet(api, alice))["coins"] == 70 - 5 + 1400


async def test_price_when_sent(api: Client, alice: dict[str, Any], admin: dict[str, Any]) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    first = await send(api, alice, "a", gift="panda", stream=stream)
    await api.data(
        'mutation { upsertGift(input: {id: "panda", name: "Panda", coins: 7, '
        "diamonds: 6}) { id } }",
        user=admin,
    )
    second = await send(api, alice, "b", gift="panda", stream=stream)
    assert (first["transfer"]["coins"], second["transfer"]["coins"]) == (5, 7)
    assert second["transfer"]["diamonds"] == 6
    listed = (await api.data(GIFTS, {"id": stream, "after": None}))["liveStream"]["gifts"]
    assert [e["node"]["coins"] for e in listed["edges"]] == [7, 5]


async def test_concurrent_same_key_lands_once(api: Client, alice: dict[str, Any]) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    results = await asyncio.gather(*(send(api, alice, "dup", stream=stream) for _ in range(10)))
    assert {r["__typename"] for r in results} == {"GiftSent"}
    assert len({r["transfer"]["id"] for r in results}) == 1
    assert (await wallet(api, alice))["coins"] == 69


async def test_top_gifters_order_and_boundary_ties(api: Client) -> None:
    stream = await go_live(api, claims_for("creator"))
    gifts = {"carol": 3, "bob": 5, "dave": 3, "erin": 1, "abby": 3}
    for name, roses in gifts.items():
        user = claims_for(name)
        await top_up(api, user)
        await send(api, user, "r", stream=stream, quantity=roses)
    ranking = (await api.data(RANKING, {"id": stream, "first": 3}))["liveStream"]["topGifters"]
    assert [(g["user"]["id"], g["coins"]) for g in ranking] == [
        ("bob", 5),
        ("abby", 3),
        ("carol", 3),
    ]
    assert [g["rank"] for g in ranking] == [1, 2, 3]


async def test_call_counts(api: Client, alice: dict[str, Any], calls: Any) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    await send(api, alice, "warm", stream=stream)  # warms the catalog and stream caches
    calls.reset()
    doc = (
        "mutation G($input: SendGiftInput!) { sendGift(input: $input) { "
        "... on GiftSent { transfer { id coins diamonds } } } }"
    )
    await api.data(
        doc, {"input": {"giftId": "rose", "streamId": stream, "idempotencyKey": "counted"}}, alice
    )
    assert calls.counts() == {"TransactWriteItems": 1}
    calls.reset()
    listing = (
        "query L($id: ID!) { liveStream(id: $id) { gifts(first: 50) { edges { node { "
        "sender { displayName } } } } } }"
    )
    await api.data(listing, {"id": stream})
    assert calls.counts() == {"GetItem": 1, "Query": 1, "BatchGetItem": 1}
    calls.reset()
    ranking = (
        "query R($id: ID!) { liveStream(id: $id) { topGifters(first: 10) { user { "
        "displayName } } } }"
    )
    await api.data(ranking, {"id": stream})
    # the stream's GetItem, then the ranking: one Query and one BatchGetItem
    assert calls.counts() == {"GetItem": 1, "Query": 1, "BatchGetItem": 1}
