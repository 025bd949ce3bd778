"""Live streams and videos: going live, ending, listing, publishing."""

from __future__ import annotations

from typing import Any

from tests.clients import Client, claims_for
from tests.gifting import END, PUBLISH, START, go_live, send, top_up

LIVE = """query L($after: String) { liveStreams(first: 2, after: $after) {
  edges { node { id title status creator { displayName } coinsReceived } }
  pageInfo { hasNextPage endCursor } } }"""


async def test_going_live_and_listing_newest_first(api: Client) -> None:
    creators = [claims_for(f"creator{i}", name=f"Creator {i}") for i in range(3)]
    ids = [await go_live(api, c, f"Stream {i}") for i, c in enumerate(creators)]
    seen, after = [], None
    while True:
        page = (await api.data(LIVE, {"after": after}))["liveStreams"]
        seen += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [n["id"] for n in seen] == list(reversed(ids))
    assert seen[0] == {
        "id": ids[2],
        "title": "Stream 2",
        "status": "LIVE",
        "creator": {"displayName": "Creator 2"},
        "coinsReceived": 0,
    }


async def test_one_live_stream_per_account(api: Client, alice: dict[str, Any]) -> None:
    first = await go_live(api, alice)
    again = (await api.data(START, {"title": "again"}, alice))["startLiveStream"]
    assert again["__typename"] == "InvalidState"
    ended = (await api.data(END, {"id": first}, alice))["endLiveStream"]
    assert ended["__typename"] == "LiveStreamEnded" and ended["stream"]["status"] == "ENDED"
    assert ended["stream"]["endedAt"]
    assert await go_live(api, alice) != first


async def test_only_adults_go_live_and_titles_are_checked(
    api: Client, minor: dict[str, Any], alice: dict[str, Any]
) -> None:
    assert (await api.data(START, {"title": "hi"}, minor))["startLiveStream"]["__typename"] == (
        "AgeRestricted"
    )
    for bad in ["", "   ", "x" * 101]:
        result = (await api.data(START, {"title": bad}, alice))["startLiveStream"]
        assert result == {
            "__typename": "InvalidInput",
            "message": result["message"],
            "field": "title",
        }


async def test_ending_rules(api: Client, alice: dict[str, Any]) -> None:
    stream = await go_live(api, alice)
    bob = claims_for("bob")
    assert (await api.data(END, {"id": stream}, bob))["endLiveStream"]["__typename"] == (
        "NotAllowed"
    )
    assert (await api.data(END, {"id": "str_nope"}, alice))["endLiveStream"]["__typename"] == (
        "NotFound"
    )
    assert (await api.data(END, {"id": stream}, alice))["endLiveStream"]["__typename"] == (
        "LiveStreamEnded"
    )
    assert (await api.data(END, {"id": stream}, alice))["endLiveStream"]["__typename"] == (
        "InvalidState"
    )
    assert (await api.data(LIVE))["liveStreams"]["edges"] == []
    # an ended stream refuses gifts and changes nothing
    await top_up(api, bob)
    assert (await send(api, bob, "g1", stream=stream))["__typename"] == "StreamNotLive"
    assert (await api.data("{ me { wallet { coins } } }", user=bob))["me"]["wallet"]["coins"] == 70
    assert (await api.data("{ me { wallet { diamonds } } }", user=alice))["me"]["wallet"] == {
        "diamonds": 0
    }


async def test_live_stream_lookup_is_public(api: Client, alice: dict[str, Any]) -> None:
    stream = await go_live(api, alice, "Public")
    doc = "query S($id: ID!) { liveStream(id: $id) { id title status startedAt endedAt } }"
    found = (await api.data(doc, {"id": stream}))["liveStream"]
    assert found["title"] == "Public" and found["status"] == "LIVE" and found["endedAt"] is None
    assert (await api.data(doc, {"id": "str_missing"}))["liveStream"] is None
    assert (await api.data(doc, {"id": f"{stream}#00"}))["liveStream"] is None


async def test_videos(api: Client, alice: dict[str, Any], minor: dict[str, Any]) -> None:
    published = (await api.data(PUBLISH, {"title": " My clip "}, alice))["publishVideo"]
    assert published["__typename"] == "VideoPublished"
    video = published["video"]
    assert video["title"] == "My clip" and video["creator"] == {"id": "alice"}
    found = (
        await api.data(
            "query V($id: ID!) { video(id: $id) { id coinsReceived gifts { edges { cursor } } } }",
            {"id": video["id"]},
        )
    )["video"]
    assert found == {"id": video["id"], "coinsReceived": 0, "gifts": {"edges": []}}
    bad = (await api.data(PUBLISH, {"title": ""}, alice))["publishVideo"]
    assert bad["__typename"] == "InvalidInput" and bad["field"] == "title"
    # minors may publish, but their videos accept no gifts
    kid_video = (await api.data(PUBLISH, {"title": "kid"}, minor))["publishVideo"]["video"]["id"]
    await top_up(api, alice)
    assert (await send(api, alice, "k", video=kid_video))["__typename"] == "NotAllowed"
