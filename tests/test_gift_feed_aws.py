"""The gift feed's AWS handlers (handlers/gift_feed.py) against moto, with API Gateway's
management API replaced by a recorder: the protocol's edges, which the cloud suite's
end-to-end test (tests/cloud/) does not walk one by one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from handlers.gift_feed import FanOut, SocketSession
from infra.dynamo import to_item
from infra.services import Services
from infra.subscriptions import Gone
from resolvers.identity import Identity
from tests.clients import LambdaClient, claims_for
from tests.gifting import END, go_live, send, top_up

FEED = "subscription F($id: ID!) { giftFeed(streamId: $id) { id coins sender { id } } }"


class Recorder:
    """Stands in for ConnectionPoster: what each connection was sent, and which were closed."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.closed: list[str] = []
        self.gone: set[str] = set()

    def post(self, connection_id: str, message: dict[str, Any]) -> None:
        if connection_id in self.gone:
            raise Gone(connection_id)
        self.sent.setdefault(connection_id, []).append(message)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)


def verify(token: str) -> Identity | None:
    return Identity.from_claims({"sub": "wen"}) if token == "good" else None


@pytest.fixture
def poster() -> Recorder:
    return Recorder()


@pytest.fixture
def session(services: Services, poster: Recorder) -> SocketSession:
    return SocketSession(services, poster, verify)  # type: ignore[arg-type]


async def connect(session: SocketSession, cid: str, init: dict[str, Any] | None = None) -> None:
    event = {"requestContext": {"connectionId": cid}, "headers": {}}
    assert (await session.connect(event))["statusCode"] == 200
    await session.message(cid, json.dumps({"type": "connection_init", "payload": init or {}}))


async def subscribe(session: SocketSession, cid: str, stream: str, sid: str = "1") -> None:
    payload = {"query": FEED, "variables": {"id": stream}}
    await session.message(cid, json.dumps({"id": sid, "type": "subscribe", "payload": payload}))


def record(transfer: dict[str, Any]) -> dict[str, Any]:
    return {"eventName": "INSERT", "dynamodb": {"NewImage": to_item(transfer)}}


async def test_connect_speaks_graphql_transport_ws_only(session: SocketSession) -> None:
    ok = {
        "requestContext": {"connectionId": "a"},
        "headers": {"Sec-WebSocket-Protocol": "x, graphql-transport-ws"},
    }
    assert (await session.connect(ok))["headers"] == {
        "Sec-WebSocket-Protocol": "graphql-transport-ws"
    }
    legacy = {
        "requestContext": {"connectionId": "b"},
        "headers": {"Sec-WebSocket-Protocol": "graphql-ws"},
    }
    assert (await session.connect(legacy))["statusCode"] == 400


async def test_a_gift_reaches_every_subscriber_of_its_stream_only(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    # GIVEN two viewers of one stream (one signed in) and one of another
    api = LambdaClient(services)
    fan = claims_for("fan")
    mine, other = await go_live(api, claims_for("cora")), await go_live(api, claims_for("wen"))
    await top_up(api, fan, 1)
    await connect(session, "c1")
    await connect(session, "c2", {"Authorization": "Bearer good"})
    await connect(session, "c3")
    for cid, stream in (("c1", mine), ("c2", mine), ("c3", other)):
        await subscribe(session, cid, stream)
    assert all(poster.sent[c] == [{"type": "connection_ack"}] for c in ("c1", "c2", "c3"))
    # WHEN a gift lands and the fan-out gets its stream record
    sent = (await send(api, fan, "g1", stream=mine))["transfer"]["id"]
    transfer = await services.transfers.get(sent)
    assert transfer is not None
    counts = await FanOut(services, poster).handle([record(transfer)])  # type: ignore[arg-type]
    # THEN both viewers of that stream get it, the other viewer nothing
    assert counts == {"gifts": 1, "ended": 0, "posts": 2}
    for cid in ("c1", "c2"):
        message = poster.sent[cid][-1]
        assert message["type"] == "next" and message["id"] == "1"
        assert message["payload"]["data"]["giftFeed"] == {
            "id": sent,
            "coins": 1,
            "sender": {"id": "fan"},
        }
    assert poster.sent["c3"] == [{"type": "connection_ack"}]
    # AND when the stream ends, its subscriptions complete and are forgotten
    ended = await services.streams.get(mine)
    assert ended is not None
    end = {"eventName": "MODIFY", "dynamodb": {"NewImage": to_item({**ended, "status": "ENDED"})}}
    assert (await FanOut(services, poster).handle([end]))["posts"] == 2  # type: ignore[arg-type]
    assert poster.sent["c1"][-1] == {"id": "1", "type": "complete"}
    assert await services.dynamo.query(
        "subscriptions", "channel = :c", {}, {":c": f"{mine}#00"}
    ) == ([], None)


async def test_protocol_errors(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    stream = await go_live(LambdaClient(services), claims_for("cora"))
    # subscribe before connection_init: closed (4401)
    await session.connect({"requestContext": {"connectionId": "early"}, "headers": {}})
    await subscribe(session, "early", stream)
    assert "early" in poster.closed and await session.connections.get("early") is None
    # a second connection_init: closed (4429)
    await connect(session, "twice")
    await session.message("twice", json.dumps({"type": "connection_init"}))
    assert "twice" in poster.closed
    # ping -> pong; a query -> error; a duplicate subscription id: closed (4409)
    await connect(session, "c")
    await session.message("c", json.dumps({"type": "ping"}))
    await session.message(
        "c", json.dumps({"id": "q", "type": "subscribe", "payload": {"query": "{ gifts { id } }"}})
    )
    await subscribe(session, "c", stream, "1")
    assert [m["type"] for m in poster.sent["c"]] == ["connection_ack", "pong", "error"]
    await subscribe(session, "c", stream, "1")
    assert "c" in poster.closed


async def test_a_stream_that_is_not_live_completes_at_once(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    api, cora = LambdaClient(services), claims_for("cora")
    stream = await go_live(api, cora)
    await api.data(END, {"id": stream}, cora)
    await connect(session, "c")
    await subscribe(session, "c", stream)
    assert poster.sent["c"][-1] == {"id": "1", "type": "complete"}


async def test_a_stream_that_does_not_exist_is_not_found_as_on_the_local_server(
    session: SocketSession, poster: Recorder
) -> None:
    # GIVEN a well-formed id that names no stream, and one that cannot be an id
    await connect(session, "c")
    await subscribe(session, "c", "str_01HZZZZZZZZZZZZZZZZZZZZZZZ", "1")
    await subscribe(session, "c", "x" * 500, "2")
    # THEN each gets NOT_FOUND in a `next`, then `complete` (tests/test_hostile_ws.py: local)
    for sid in ("1", "2"):
        answer = [m for m in poster.sent["c"] if m.get("id") == sid]
        assert [m["type"] for m in answer] == ["next", "complete"], answer
        error = answer[0]["payload"]["errors"][0]
        assert error["extensions"] == {"code": "NOT_FOUND", "field": "streamId"}, error
    assert "c" not in poster.closed


async def test_a_bad_or_expired_token_is_refused_on_each_subscribe_then_closed(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    stream = await go_live(LambdaClient(services), claims_for("cora"))
    # GIVEN a connection_init with a token that does not verify
    await connect(session, "forged", {"Authorization": "Bearer bad"})
    # THEN it is acknowledged (clients reject an error before connection_ack) ...
    assert poster.sent["forged"] == [{"type": "connection_ack"}]
    assert "forged" not in poster.closed
    # ... and a subscribe answers UNAUTHENTICATED for its id, then the connection is closed
    await subscribe(session, "forged", stream, "1")
    refused = poster.sent["forged"][-1]
    assert (refused["id"], refused["type"]) == ("1", "error")
    assert refused["payload"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "forged" in poster.closed
    assert await session.subscriptions.of_stream(stream, 4) == []


async def test_subscriptions_per_connection_are_capped(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    services.settings = dataclasses.replace(services.settings, ws_max_operations=2)
    stream = await go_live(LambdaClient(services), claims_for("cora"))
    await connect(session, "c")
    for sid in ("a", "b", "c"):
        await subscribe(session, "c", stream, sid)
    # THEN the third gets the local server's error for its id, and the connection stays
    assert poster.sent["c"][-1] == {
        "id": "c",
        "type": "error",
        "payload": [{"message": "Subscription limit reached"}],
    }
    assert "c" not in poster.closed
    assert len(await session.subscriptions.of_stream(stream, 4)) == 2
    # AND completing one frees a place
    await session.message("c", json.dumps({"id": "a", "type": "complete"}))
    await subscribe(session, "c", stream, "d")
    assert {s["subscriptionId"] for s in await session.subscriptions.of_stream(stream, 4)} == {
        "b",
        "d",
    }


async def test_the_cap_holds_for_subscribes_that_arrive_together(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    """API Gateway invokes the function for each message of a connection in parallel: the
    conditional write, not the read before it, keeps the count."""
    services.settings = dataclasses.replace(services.settings, ws_max_operations=2)
    stream = await go_live(LambdaClient(services), claims_for("cora"))
    await connect(session, "c")
    connection = await session.connections.get("c")
    assert connection is not None
    payload = {"query": FEED, "variables": {"id": stream}}
    # GIVEN five subscribes that all read the connection before any of them wrote
    await asyncio.gather(*(session.subscribe("c", sid, payload, connection) for sid in "vwxyz"))
    assert len(await session.subscriptions.of_stream(stream, 4)) == 2
    refused = [m for m in poster.sent["c"] if m.get("type") == "error"]
    assert len(refused) == 3


async def test_a_message_over_the_size_limit_is_refused_then_closed(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    limit = services.settings.max_body_bytes
    await connect(session, "c")
    big = {"id": "big", "type": "subscribe", "payload": {"query": "x" * limit}}
    await session.message("c", json.dumps(big))
    assert poster.sent["c"][-1]["payload"][0]["extensions"] == {"code": "MESSAGE_TOO_LARGE"}
    assert "c" in poster.closed


async def test_gone_connections_are_removed_by_the_fan_out(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    api = LambdaClient(services)
    stream = await go_live(api, claims_for("cora"))
    await top_up(api, claims_for("fan"), 1)
    await connect(session, "gone")
    await subscribe(session, "gone", stream)
    poster.gone.add("gone")
    sent = (await send(api, claims_for("fan"), "g1", stream=stream))["transfer"]["id"]
    transfer = await services.transfers.get(sent)
    assert transfer is not None
    await FanOut(services, poster).handle([record(transfer)])  # type: ignore[arg-type]
    assert await session.subscriptions.of_stream(stream, 4) == []


def test_the_token_check_refuses_an_expired_or_foreign_token() -> None:
    """What `verify` answers for the refusal above: None for an expired token and for one
    signed by another key, the identity for a valid one (as the HTTP API's authorizer)."""
    import time
    from types import SimpleNamespace

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from handlers.gift_feed import TokenVerifier
    from infra.config import Settings

    pool, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool"
    settings = Settings(
        token_issuer=issuer, token_audience="client", jwks_url="https://keys.invalid/jwks.json"
    )
    verify = TokenVerifier(settings)
    verify._keys = SimpleNamespace(
        get_signing_key_from_jwt=lambda token: SimpleNamespace(key=pool.public_key())
    )

    def token(key: rsa.RSAPrivateKey, expires_in: int) -> str:
        claims = {"sub": "wen", "iss": issuer, "aud": "client", "token_use": "id"}
        return jwt.encode({**claims, "exp": int(time.time()) + expires_in}, key, "RS256")

    assert verify(token(pool, 600)) is not None
    assert verify(token(pool, -60)) is None  # expired
    assert verify(token(other, 600)) is None  # not the pool's key
