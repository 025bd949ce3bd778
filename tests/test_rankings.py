"""A viewer's own place in a stream's ranking (LiveStream.myRank): coins and rank within the
first RANK_LIMIT senders, read as the caller's ranking entry plus the entries at or above it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra import rankings
from infra.services import Services
from tests.clients import Client, claims_for
from tests.gifting import go_live, send, top_up

MY_RANK = """query M($id: ID!) { liveStream(id: $id) {
  myRank { coins rank } topGifters(first: 100) { rank coins user { id } } } }"""
ONLY_MY_RANK = "query M($id: ID!) { liveStream(id: $id) { myRank { coins rank } } }"


async def gift_roses(api: Client, stream: str, roses: dict[str, int]) -> dict[str, Any]:
    senders = {name: claims_for(name) for name in roses}
    for name, n in roses.items():
        await top_up(api, senders[name])
        assert (await send(api, senders[name], "r", stream=stream, quantity=n))[
            "__typename"
        ] == "GiftSent"
    return senders


@pytest.mark.parametrize("index_shards", [1, 4])
async def test_my_rank_is_my_place_in_the_ranking(
    api: Client, services: Services, calls: Any, index_shards: int
) -> None:
    # GIVEN a stream's ranking with ties on coins, two of them on rankSort itself ("fan000a"
    # and "fan000b" share the 6-byte prefix it orders by)
    services.settings = dataclasses.replace(services.settings, index_shards=index_shards)
    stream = await go_live(api, claims_for("creator"))
    roses = {"bob": 5, "fan000b": 3, "carol": 3, "fan000a": 3, "erin": 1}
    senders = await gift_roses(api, stream, roses)

    # WHEN each sender asks for their rank
    for name, user in senders.items():
        data = (await api.data(MY_RANK, {"id": stream}, user))["liveStream"]
        # THEN it is their row of the ranking
        mine = next(r for r in data["topGifters"] if r["user"]["id"] == name)
        assert data["myRank"] == {"coins": mine["coins"], "rank": mine["rank"]}, name
    assert [r["user"]["id"] for r in data["topGifters"]] == [
        "bob",
        "carol",
        "fan000a",
        "fan000b",
        "erin",
    ]

    # AND it costs the stream's GetItem, the caller's own entry and one Query per partition
    calls.reset()
    await api.data(ONLY_MY_RANK, {"id": stream}, senders["fan000b"])
    assert calls.counts() == {"GetItem": 2, "Query": index_shards}


async def test_my_rank_without_gifts_or_token(api: Client, calls: Any) -> None:
    stream = await go_live(api, claims_for("creator"))
    await gift_roses(api, stream, {"bob": 2})
    # GIVEN a viewer who gave nothing: 0 coins, no rank, one GetItem past the stream's
    calls.reset()
    data = await api.data(ONLY_MY_RANK, {"id": stream}, claims_for("lurker"))
    assert data["liveStream"]["myRank"] == {"coins": 0, "rank": None}
    assert calls.counts() == {"GetItem": 2}
    # AND without a token: null, and no read for it
    calls.reset()
    assert (await api.data(ONLY_MY_RANK, {"id": stream}))["liveStream"]["myRank"] is None
    assert calls.counts() == {"GetItem": 1}


async def test_my_rank_is_null_past_the_limit(api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a limit of 3 (100 in production) and five senders
    monkeypatch.setattr(rankings, "RANK_LIMIT", 3)
    stream = await go_live(api, claims_for("creator"))
    senders = await gift_roses(api, stream, {"a5": 5, "b4": 4, "c3": 3, "d2": 2, "e1": 1})
    # THEN the first three have a rank and the others their coins only
    ranks = {
        name: (await api.data(ONLY_MY_RANK, {"id": stream}, user))["liveStream"]["myRank"]
        for name, user in senders.items()
    }
    assert ranks == {
        "a5": {"coins": 5, "rank": 1},
        "b4": {"coins": 4, "rank": 2},
        "c3": {"coins": 3, "rank": 3},
        "d2": {"coins": 2, "rank": None},
        "e1": {"coins": 1, "rank": None},
    }


async def test_ties_on_rank_sort_past_the_page_are_read_whole(
    api: Client, monkeypatch: pytest.MonkeyPatch, calls: Any
) -> None:
    # GIVEN a limit of 2 and three senders tied on rankSort (same coins, same id prefix)
    monkeypatch.setattr(rankings, "RANK_LIMIT", 2)
    stream = await go_live(api, claims_for("creator"))
    senders = await gift_roses(api, stream, {"fan000c": 3, "fan000a": 3, "fan000b": 3})
    # THEN their places follow their full ids, the third past the limit
    ranks = {
        name: (await api.data(ONLY_MY_RANK, {"id": stream}, user))["liveStream"]["myRank"]
        for name, user in senders.items()
    }
    assert ranks == {
        "fan000a": {"coins": 3, "rank": 1},
        "fan000b": {"coins": 3, "rank": 2},
        "fan000c": {"coins": 3, "rank": None},
    }
    # AND a page that ends on a tie costs one more Query (the tied entries)
    calls.reset()
    await api.data(ONLY_MY_RANK, {"id": stream}, senders["fan000c"])
    assert calls.counts() == {"GetItem": 2, "Query": 2}
