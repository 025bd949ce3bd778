"""Events: creating, joining once, paying the host, and the rules around it."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.clients import Client, claims_for
from tests.gifting import top_up

CREATE = """mutation C($title: String!, $coins: Int!) { createEvent(input: {title: $title,
  entryCoins: $coins}) { __typename ... on EventCreated { event { id title entryCoins
  participants joined host { id } } } ... on InvalidInput { field }
  ... on UserError { message } } }"""
JOIN = """mutation J($id: ID!, $key: String!) {
  joinEvent(input: {eventId: $id, idempotencyKey: $key}) {
  __typename ... on EventJoined { event { id participants joined } wallet { coins } }
  ... on InsufficientCoins { required available } ... on UserError { message } } }"""
EVENT = "query E($id: ID!) { event(id: $id) { participants joined host { displayName } } }"


async def create(api: Client, host: dict[str, Any], coins: int = 50) -> str:
    result = await api.data(CREATE, {"title": "Meet & greet", "coins": coins}, host)
    assert result["createEvent"]["__typename"] == "EventCreated", result
    event_id: str = result["createEvent"]["event"]["id"]
    return event_id


async def join(api: Client, user: dict[str, Any], event: str, key: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(JOIN, {"id": event, "key": key}, user))["joinEvent"]
    return result


async def test_join_pays_the_host_once(api: Client, alice: dict[str, Any]) -> None:
    host = claims_for("host", name="Host")
    event = await create(api, host)
    await top_up(api, alice)
    joined = await join(api, alice, event, "j1")
    assert joined["__typename"] == "EventJoined"
    assert joined["event"] == {"id": event, "participants": 1, "joined": True}
    assert joined["wallet"] == {"coins": 20}
    assert (await join(api, alice, event, "j1"))["wallet"] == {"coins": 20}  # replay
    assert (await join(api, alice, event, "j2"))["__typename"] == "AlreadyJoined"
    assert (await join(api, alice, event, "j1"))["__typename"] == "EventJoined"
    host_wallet = (
        await api.data(
            "{ me { wallet { diamonds } transactions { edges { node { "
            "kind diamonds referenceId } } } } }",
            user=host,
        )
    )["me"]
    assert host_wallet["wallet"] == {"diamonds": 50}
    assert [e["node"] for e in host_wallet["transactions"]["edges"]] == [
        {"kind": "EVENT_INCOME", "diamonds": 50, "referenceId": event}
    ]
    assert (await api.data(EVENT, {"id": event}))["event"] == {
        "participants": 1,
        "joined": False,
        "host": {"displayName": "Host"},
    }
    assert (await api.data(EVENT, {"id": event}, alice))["event"]["joined"] is True


async def test_event_rules(api: Client, alice: dict[str, Any], minor: dict[str, Any]) -> None:
    host = claims_for("host")
    assert (await api.data(CREATE, {"title": "x", "coins": 5}, minor))["createEvent"][
        "__typename"
    ] == "AgeRestricted"
    for coins in (0, 100_001):
        bad = (await api.data(CREATE, {"title": "x", "coins": coins}, host))["createEvent"]
        assert bad["__typename"] == "InvalidInput" and bad["field"] == "entryCoins"
    event = await create(api, host, coins=100)
    assert (await join(api, host, event, "own"))["__typename"] == "NotAllowed"
    assert (await join(api, alice, "evt_nope", "k"))["__typename"] == "NotFound"
    assert (await join(api, minor, event, "k"))["__typename"] == "AgeRestricted"
    await top_up(api, alice)
    poor = await join(api, alice, event, "k2")
    assert poor == {
        "__typename": "InsufficientCoins",
        "required": 100,
        "available": 70,
        "message": poor["message"],
    }
    assert (await api.data(EVENT, {"id": event}))["event"]["participants"] == 0


async def test_concurrent_joins_pay_once(api: Client, alice: dict[str, Any]) -> None:
    event = await create(api, claims_for("host"), coins=10)
    others = [claims_for(f"fan{i}") for i in range(5)]
    for user in [alice, *others]:
        await top_up(api, user)
    mine = [join(api, alice, event, f"k{i}") for i in range(8)]
    theirs = [join(api, user, event, "k") for user in others]
    results = await asyncio.gather(*mine, *theirs)
    kinds = [r["__typename"] for r in results[:8]]
    assert kinds.count("EventJoined") == 1 and kinds.count("AlreadyJoined") == 7
    assert {r["__typename"] for r in results[8:]} == {"EventJoined"}
    assert (await api.data("{ me { wallet { coins } } }", user=alice))["me"]["wallet"] == {
        "coins": 60
    }
    assert (await api.data(EVENT, {"id": event}))["event"]["participants"] == 6
