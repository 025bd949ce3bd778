"""The live feed's AWS handlers (handlers/gift_feed.py) against moto, with API Gateway's
management API replaced by a recorder (or its local fake, tests/management_api_fake.py) and
the dispatch queue by a list drained by the posters: the protocol's edges, the fan-out, the
digest and the posters' checkpoints, which the cloud suite's end-to-end tests (tests/cloud/)
do not walk one by one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import defaultdict
from typing import Any
from urllib.parse import quote

import pytest

from handlers.gift_feed import FanOut, Posting, SocketSession
from infra.dynamo import to_item
from infra.services import Services
from infra.subscriptions import DIGEST, Gone, PostFailed, SubscriptionsRepo
from resolvers.identity import Identity
from tests.clients import LambdaClient, claims_for
from tests.gifting import END, go_live, send, top_up

FEED_DOC = "subscription F($id: ID!) { giftFeed(streamId: $id) { id coins sender { id } } }"
FEED_AFTER = (
    "subscription F($id: ID!, $after: ID) { giftFeed(streamId: $id, after: $after) { id } }"
)
DIGEST_DOC = """subscription D($id: ID!) { streamDigest(streamId: $id) {
  sequence status coinsReceived giftsSinceLast coinsSinceLast
  topGifters { rank coins user { id } } highlights { id coins sender { id } } } }"""


class Recorder:
    """Stands in for the management API: what each connection was sent, which were closed,
    which are gone (410), and posts that fail otherwise."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closed: list[str] = []
        self.gone: set[str] = set()
        self.failing: set[str] = set()

    async def post(self, connection_id: str, body: bytes) -> None:
        if connection_id in self.gone:
            raise Gone(connection_id)
        if connection_id in self.failing:
            raise PostFailed(connection_id)
        self.sent[connection_id].append(json.loads(body))

    async def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)

    def of(self, connection_id: str, kind: str = "next") -> list[dict[str, Any]]:
        return [m for m in self.sent[connection_id] if m["type"] == kind]


class Queue:
    """Stands in for the dispatch queue (SQS): what was sent, and when it may be received."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, dict[str, Any]]] = []

    async def send(self, messages: list[dict[str, Any]], delay: int = 0) -> None:
        # through JSON, as SQS carries them
        self.messages += [(delay, json.loads(json.dumps(m))) for m in messages]

    def take(self, delayed: bool = True) -> list[dict[str, Any]]:
        """The messages ready (with `delayed`, also those sent with a delay), as SQS records."""
        ready = [m for m in self.messages if delayed or not m[0]]
        self.messages = [m for m in self.messages if m not in ready]
        return [{"messageId": str(n), "body": json.dumps(m)} for n, (_, m) in enumerate(ready)]


def verify(token: str) -> Identity | None:
    return Identity.from_claims({"sub": token.split("-")[0]}) if token.endswith("-ok") else None


@pytest.fixture
def poster() -> Recorder:
    return Recorder()


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture
def session(services: Services, poster: Recorder) -> SocketSession:
    return SocketSession(services, poster, verify)


@pytest.fixture
def fanout(services: Services, queue: Queue) -> FanOut:
    return FanOut(services, queue)


@pytest.fixture
def posting(services: Services, poster: Recorder, queue: Queue) -> Posting:
    return Posting(services, poster, queue)


async def deliver(fanout: FanOut, posting: Posting, queue: Queue, records: list[Any]) -> int:
    """A batch of stream records through the fan-out, then every message it queued (and
    those they queued) through the posters: the posts made."""
    await fanout.handle(records)
    posts = 0
    while records := queue.take():
        answer = await posting.handle(records)
        assert answer["batchItemFailures"] == [], answer
        posts += sum(1 for _ in records)
    return posts


async def connect(session: SocketSession, cid: str, init: dict[str, Any] | None = None) -> None:
    event = {"requestContext": {"connectionId": cid}, "headers": {}}
    assert (await session.connect(event))["statusCode"] == 200
    await session.message(cid, json.dumps({"type": "connection_init", "payload": init or {}}))


async def subscribe(
    session: SocketSession,
    cid: str,
    stream: str,
    sid: str = "1",
    query: str = FEED_DOC,
    **variables: Any,
) -> None:
    payload = {"query": query, "variables": {"id": stream, **variables}}
    await session.message(cid, json.dumps({"id": sid, "type": "subscribe", "payload": payload}))


def record(transfer: dict[str, Any]) -> dict[str, Any]:
    return {"eventName": "INSERT", "dynamodb": {"NewImage": to_item(transfer)}}


async def gift_record(
    services: Services, api: Any, sender: dict[str, Any], stream: str, key: str, gift: str = "rose"
) -> dict[str, Any]:
    sent = (await send(api, sender, key, gift=gift, stream=stream))["transfer"]["id"]
    transfer = await services.transfers.get(sent)
    assert transfer is not None
    return record(transfer)


def ended_record(stream: dict[str, Any]) -> dict[str, Any]:
    return {"eventName": "MODIFY", "dynamodb": {"NewImage": to_item({**stream, "status": "ENDED"})}}


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
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
) -> None:
    # GIVEN two viewers of one stream (one signed in) and one of another
    api = LambdaClient(services)
    fan = claims_for("fan")
    mine, other = await go_live(api, claims_for("cora")), await go_live(api, claims_for("wen"))
    await top_up(api, fan, 1)
    await connect(session, "c1")
    await connect(session, "c2", {"Authorization": "Bearer vic-ok"})
    await connect(session, "c3")
    for cid, stream in (("c1", mine), ("c2", mine), ("c3", other)):
        await subscribe(session, cid, stream)
    assert all(poster.sent[c] == [{"type": "connection_ack"}] for c in ("c1", "c2", "c3"))
    # WHEN a gift lands and the fan-out gets its stream record
    gift = await gift_record(services, api, fan, mine, "g1")
    counts = await fanout.handle([gift])
    # THEN it hands the stream's one giftFeed partition one message, whose poster posts to
    # both viewers of that stream, the other viewer nothing
    assert counts == {"gifts": 1, "ended": 0, "dispatched": 1}
    assert (await posting.handle(queue.take())) == {"batchItemFailures": []}
    sent = gift["dynamodb"]["NewImage"]["id"]["S"]
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
    await deliver(fanout, posting, queue, [ended_record(ended)])
    assert poster.sent["c1"][-1] == {"id": "1", "type": "complete"}
    assert await session.subscriptions.of_stream(mine) == []
    assert (await session.connections.get("c1") or {}).get("subscriptions") == {}


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
    assert await session.subscriptions.of_stream(stream) == []


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
    assert len(await session.subscriptions.of_stream(stream)) == 2
    # AND completing one frees a place
    await session.message("c", json.dumps({"id": "a", "type": "complete"}))
    await subscribe(session, "c", stream, "d")
    assert {s["subscriptionId"] for s in await session.subscriptions.of_stream(stream)} == {
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
    payload = {"query": FEED_DOC, "variables": {"id": stream}}
    # GIVEN five subscribes that all read the connection before any of them wrote
    await asyncio.gather(*(session.subscribe("c", sid, payload, connection) for sid in "vwxyz"))
    assert len(await session.subscriptions.of_stream(stream)) == 2
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


async def test_gone_connections_are_removed_with_their_places(
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
) -> None:
    api = LambdaClient(services)
    stream = await go_live(api, claims_for("cora"))
    await top_up(api, claims_for("fan"), 1)
    # GIVEN a connection with a giftFeed and a streamDigest subscription, then gone (410)
    await connect(session, "gone")
    await subscribe(session, "gone", stream, "f")
    await subscribe(session, "gone", stream, "d", DIGEST_DOC)
    await connect(session, "stays")
    await subscribe(session, "stays", stream)
    repo = SubscriptionsRepo(services.dynamo)
    assert (await repo.meta(stream))["feed"] == 2
    poster.gone.add("gone")
    # WHEN a gift is fanned out to it
    await deliver(
        fanout, posting, queue, [await gift_record(services, api, claims_for("fan"), stream, "g1")]
    )
    # THEN the connection and both its subscriptions are removed, their places given back
    assert [s["connectionId"] for s in await repo.of_stream(stream)] == ["stays"]
    assert await repo.of_stream(stream, DIGEST) == []
    assert await session.connections.get("gone") is None
    meta = await repo.meta(stream)
    assert (meta["feed"], meta["feedCapped"], meta["digest"]) == (1, 1, 0)
    assert len(poster.of("stays")) == 1


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


# --- giftFeed(after:), the cap, streamDigest, the posters, on AWS ------------------------


class Clock:
    """`time` for handlers.gift_feed: the second the fan-out and the posters think it is."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def seconds(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(float(int(time.time())))
    monkeypatch.setattr("handlers.gift_feed.time", clock)
    return clock


def nexts(poster: Recorder, cid: str, field: str, sid: str = "1") -> list[dict[str, Any]]:
    return [m["payload"]["data"][field] for m in poster.of(cid) if m["id"] == sid]


async def test_after_is_backfilled_on_aws_and_not_sent_again_by_the_fan_out(
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
) -> None:
    api = LambdaClient(services)
    fan = claims_for("fan")
    stream = await go_live(api, claims_for("cora"))
    await top_up(api, fan, 2)
    records = [await gift_record(services, api, fan, stream, f"g{i}") for i in range(3)]
    ids = [r["dynamodb"]["NewImage"]["id"]["S"] for r in records]
    # GIVEN a viewer that saw the first gift only: it resubscribes after it
    await connect(session, "c")
    await subscribe(session, "c", stream, "1", FEED_AFTER, after=ids[0])
    # THEN the two others come at once, in order
    assert [g["id"] for g in nexts(poster, "c", "giftFeed")] == ids[1:]
    # AND when the fan-out catches up on those gifts (they landed around the subscription),
    # it does not send them again; a new gift it does
    new = await gift_record(services, api, fan, stream, "g3")
    await deliver(fanout, posting, queue, [*records[1:], new])
    got = [g["id"] for g in nexts(poster, "c", "giftFeed")]
    assert got == [*ids[1:], new["dynamodb"]["NewImage"]["id"]["S"]]
    # AND an after that is not one of the stream's gifts is NOT_FOUND
    other = await go_live(api, claims_for("wen"))
    await subscribe(session, "c", other, "2", FEED_AFTER, after=ids[0])
    answer = [m for m in poster.sent["c"] if m.get("id") == "2"]
    assert [m["type"] for m in answer] == ["next", "complete"]
    assert answer[0]["payload"]["errors"][0]["extensions"] == {
        "code": "NOT_FOUND",
        "field": "after",
    }


async def test_the_cap_on_aws_refuses_with_feed_full_never_the_creator(
    services: Services, session: SocketSession, poster: Recorder
) -> None:
    services.settings = dataclasses.replace(services.settings, feed_max_subscribers=2)
    api = LambdaClient(services)
    stream = await go_live(api, claims_for("cora"))
    for cid in ("a", "b", "c"):
        await connect(session, cid)
        await subscribe(session, cid, stream)
    refused = [m for m in poster.sent["c"] if m.get("id") == "1"]
    assert [m["type"] for m in refused] == ["next", "complete"]
    assert refused[0]["payload"]["errors"][0]["extensions"] == {"code": "FEED_FULL"}
    # the creator is never refused, and takes no one's place
    await connect(session, "cora", {"Authorization": "Bearer cora-ok"})
    await subscribe(session, "cora", stream)
    assert [m["type"] for m in poster.sent["cora"]] == ["connection_ack"]
    repo = SubscriptionsRepo(services.dynamo)
    assert {s["connectionId"] for s in await repo.of_stream(stream)} == {"a", "b", "cora"}
    # a place given back is taken again; digests are never capped
    await session.message("a", json.dumps({"id": "1", "type": "complete"}))
    await subscribe(session, "c", stream, "2")
    await subscribe(session, "c", stream, "3", DIGEST_DOC)
    assert {s["connectionId"] for s in await repo.of_stream(stream)} == {"b", "c", "cora"}
    assert [s["connectionId"] for s in await repo.of_stream(stream, DIGEST)] == ["c"]


async def test_digests_on_aws_are_built_once_a_second_from_every_shard_in_sequence(
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
    seconds: Clock,
) -> None:
    services.settings = dataclasses.replace(services.settings, feed_partition_size=1)
    api = LambdaClient(services)
    fan, wen = claims_for("fan"), claims_for("wen")
    creator = claims_for("cora")
    stream = await go_live(api, creator)
    await top_up(api, fan, 2)
    await top_up(api, wen, 1, package="coins-350")
    # GIVEN three viewers of the digest: with a partition size of 1 they spread over 4
    viewers = ["v1", "v2", "v3"]
    for cid in viewers:
        await connect(session, cid)
        await subscribe(session, cid, stream, "d", DIGEST_DOC)
    repo = SubscriptionsRepo(services.dynamo)
    assert (await repo.meta(stream))["digestParts"] == 4
    # WHEN two batches of the stream's gifts come from two stream shards in the same second
    a = [await gift_record(services, api, fan, stream, f"a{i}") for i in range(2)]
    b = [await gift_record(services, api, wen, stream, "b", gift="panda")]
    await fanout.handle(a)
    await fanout.handle(b)
    # THEN the first builds that second's digest (its batch), the second queues the next one
    ready = queue.take(delayed=False)
    assert {json.loads(r["body"])["kind"] for r in ready} == {DIGEST}
    assert len(ready) == 4  # one message per partition
    await posting.handle(ready)
    seconds.now += 1
    while records := queue.take():
        assert (await posting.handle(records))["batchItemFailures"] == []
    # AND every viewer gets the same two digests, in sequence, that add up to the gifts
    digests = nexts(poster, "v1", "streamDigest", "d")
    assert all(nexts(poster, cid, "streamDigest", "d") == digests for cid in viewers)
    assert [d["sequence"] for d in digests] == [1, 2]
    assert [d["giftsSinceLast"] for d in digests] == [2, 1]
    coins = sum(int(r["dynamodb"]["NewImage"]["coins"]["N"]) for r in a + b)
    assert sum(d["coinsSinceLast"] for d in digests) == coins == digests[-1]["coinsReceived"]
    assert digests[1]["highlights"][0]["sender"] == {"id": "wen"}
    assert digests[1]["topGifters"][0]["user"] == {"id": "wen"}
    # WHEN the stream ends: the last digest, then complete, for every viewer
    c = [await gift_record(services, api, fan, stream, "c")]
    await api.data(END, {"id": stream}, creator)
    ended = await services.streams.get(stream)
    assert ended is not None
    seconds.now += 1
    await deliver(fanout, posting, queue, [*c, ended_record(ended)])
    for cid in viewers:
        last = nexts(poster, cid, "streamDigest", "d")[2:]
        assert [(d["sequence"], d["status"]) for d in last][-1] == (2 + len(last), "ENDED")
        assert sum(d["giftsSinceLast"] for d in last) == 1
        assert poster.sent[cid][-1] == {"id": "d", "type": "complete"}
    assert await repo.of_stream(stream, DIGEST) == []


async def test_a_retried_fan_out_batch_counts_and_posts_once(
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
    seconds: Clock,
) -> None:
    api = LambdaClient(services)
    fan = claims_for("fan")
    stream = await go_live(api, claims_for("cora"))
    await top_up(api, fan, 1)
    await connect(session, "f")
    await subscribe(session, "f", stream)
    await connect(session, "d")
    await subscribe(session, "d", stream, "1", DIGEST_DOC)
    batch = [await gift_record(services, api, fan, stream, "g")]
    # GIVEN a batch handled, then handled again (Lambda retries a batch whose invocation
    # failed after it had done its work), a second later
    await deliver(fanout, posting, queue, batch)
    seconds.now += 1
    await deliver(fanout, posting, queue, batch)
    # THEN the giftFeed viewer has the gift once, the digest viewer one digest of one gift
    assert len(nexts(poster, "f", "giftFeed")) == 1
    digests = nexts(poster, "d", "streamDigest")
    assert [(d["sequence"], d["giftsSinceLast"]) for d in digests] == [(1, 1)]


async def test_a_poster_retried_after_a_failure_posts_only_to_those_not_served(
    services: Services,
    session: SocketSession,
    poster: Recorder,
    fanout: FanOut,
    posting: Posting,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("handlers.gift_feed.PAGE", 2)  # checkpoints after every 2 subscribers
    api = LambdaClient(services)
    fan = claims_for("fan")
    stream = await go_live(api, claims_for("cora"))
    await top_up(api, fan, 1)
    viewers = [f"c{n}" for n in range(1, 6)]
    for cid in viewers:
        await connect(session, cid)
        await subscribe(session, cid, stream)
    # GIVEN a post that fails (not a gone connection) for the fourth viewer
    poster.failing.add("c4")
    await fanout.handle([await gift_record(services, api, fan, stream, "g")])
    message = queue.take()
    answer = await posting.handle(message)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "0"}]}  # SQS delivers it again
    assert [cid for cid in viewers if poster.of(cid)] == ["c1", "c2", "c3"]
    # WHEN it is delivered again and the post works
    poster.failing.clear()
    assert await posting.handle(message) == {"batchItemFailures": []}
    # THEN everyone has the gift once: the retry resumed after the last checkpoint
    assert [len(poster.of(cid)) for cid in viewers] == [1, 1, 1, 1, 1]
    # AND the same message once more (SQS may deliver twice) posts nothing
    assert await posting.handle(message) == {"batchItemFailures": []}
    assert [len(poster.of(cid)) for cid in viewers] == [1, 1, 1, 1, 1]


async def test_the_management_api_signs_retries_throttles_and_reports_gone(
    aiohttp_server: Any,
) -> None:
    from infra.subscriptions import ManagementApi
    from tests.management_api_fake import ManagementApiFake

    fake = ManagementApiFake(gone={"gone="})
    server = await aiohttp_server(fake.app())
    api = ManagementApi(str(server.make_url("/live")), "us-east-1")
    try:
        await api.post("abc=", b'{"type":"pong"}')
        fake.throttle_next = 2  # LimitExceededException twice, then accepted
        await api.post("abc=", b'{"type":"ka"}')
        with pytest.raises(Gone):
            await api.post("gone=", b"{}")
        await api.close("abc=")
    finally:
        await api.aclose()
    assert fake.received["abc="] == [b'{"type":"pong"}', b'{"type":"ka"}']
    assert fake.closed == ["abc="] and fake.requests == 6


async def test_a_digest_retried_long_after_is_not_posted(
    services: Services, session: SocketSession, poster: Recorder, posting: Posting
) -> None:
    """A digest message SQS delivers again after its visibility timeout (60 s) is stale: a
    newer digest, with the full totals, has gone out since. The last one is always posted."""
    from datetime import UTC, datetime

    from infra.ids import iso

    stream = await go_live(LambdaClient(services), claims_for("cora"))
    await connect(session, "d")
    await subscribe(session, "d", stream, "1", DIGEST_DOC)
    old = iso(datetime.fromtimestamp(time.time() - 60, UTC))
    digest = {
        "streamId": stream,
        "sequence": 7,
        "at": old,
        "status": "LIVE",
        "coinsReceived": 0,
        "giftsSinceLast": 0,
        "coinsSinceLast": 0,
        "topGifters": [],
        "highlights": [],
    }
    message = {"kind": DIGEST, "stream": stream, "partition": 0, "key": "7", "digest": digest}
    await posting.handle([{"messageId": "m", "body": json.dumps({**message, "last": False})}])
    assert poster.of("d") == []
    last = {**message, "key": "8", "digest": {**digest, "sequence": 8, "status": "ENDED"}}
    await posting.handle([{"messageId": "m", "body": json.dumps({**last, "last": True})}])
    assert [d["sequence"] for d in nexts(poster, "d", "streamDigest")] == [8]


@pytest.mark.parametrize("token", [None, "a-session-token"])
def test_the_posts_are_signed_as_botocore_signs_them(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """The management API's SigV4 (infra.subscriptions.SigV4) gives the headers botocore's
    SigV4Auth gives the same request at the same second, with and without a session token
    (Lambda's credentials carry one)."""
    import datetime as dt

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from infra.subscriptions import SigV4

    endpoint = "https://abc123.execute-api.eu-west-1.amazonaws.com/live"
    at = dt.datetime(2026, 12, 7, 1, 2, 3)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    signer = SigV4(endpoint, "eu-west-1")
    monkeypatch.setattr(signer, "_credentials", credentials)
    for connection in ("Lz5hxedcIAMCEYQ=", "abc+/d", "x"):
        url = f"{endpoint}/@connections/{quote(connection, safe='')}"
        body = json.dumps({"type": "next", "id": connection}).encode()
        request = AWSRequest(method="POST", url=url, data=body)
        botocore.auth.SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(request)
        expected = {k: v for k, v in request.headers.items()}
        assert signer.headers("POST", url, body, at.strftime("%Y%m%dT%H%M%SZ")) == expected


async def test_a_digest_backlog_is_taken_out_at_once(services: Services) -> None:
    """An UpdateExpression takes 4 KB: past MAX_TAKEN gifts waiting as highlights (digests
    that did not keep up), the builder resets them at once; the counts stay exact."""
    from infra.digests import MAX_TAKEN, DigestState

    state = DigestState(services.dynamo)
    await state.ensure("str_backlog")
    for n in range(MAX_TAKEN // 5 + 1):
        gifts = [{"id": f"gft_{n:04d}{k}", "coins": k + 1} for k in range(5)]
        assert await state.contribute("str_backlog", f"b{n}", gifts)
    read = await state.read("str_backlog")
    assert read is not None and len(read["pend"]) > MAX_TAKEN
    assert await state.consume("str_backlog", read, last=False)
    after = await state.read("str_backlog")
    assert after is not None
    assert (after["pend"], after["pendingGifts"], after["sequence"]) == ({}, 0, 1)


async def test_a_post_that_reaches_no_one_is_not_taken_for_delivered() -> None:
    """A refused connection, a reset, a timeout: retried, then PostFailed (the poster's
    message is retried from its checkpoint), never counted as sent."""
    from infra.engine import free_port
    from infra.subscriptions import ManagementApi

    api = ManagementApi(f"http://127.0.0.1:{free_port()}/live", "us-east-1")  # nobody there
    try:
        with pytest.raises(PostFailed):
            await api.post("abc=", b"{}")
    finally:
        await api.aclose()
    assert api.posts == ManagementApi.ATTEMPTS
