"""The live feed on AWS: giftFeed and streamDigest over an API Gateway WebSocket API
(graphql-transport-ws), fed by the tables' streams. docs/scaling.md has the design and its
figures.

`socket_handler` (GiftFeedSocketFunction) serves the connection's events:
- $connect: remember the connection; answer the graphql-transport-ws subprotocol.
- connection_init: an optional Cognito ID token in the payload (`Authorization: Bearer ...`
  or `token`), verified against the pool's keys (PyJWT's JWK client) as the HTTP API's JWT
  authorizer would; then connection_ack. A bad or expired token is acknowledged too, and
  each `subscribe` on that connection then answers an `error` with extensions.code
  UNAUTHENTICATED before the connection is closed: API Gateway closes with 1000 whatever
  the backend wants (it cannot send the protocol's 4403), and graphql-transport-ws clients
  reject an `error` that comes before connection_ack, so this is the refusal they can read.
- subscribe: at most `LIVECOINS_WS_MAX_OPERATIONS` subscriptions per connection (past it an
  `error` for that id; the connection stays), as on the local server. The document is
  executed once against an empty feed to validate it and learn its field and stream: a
  refused document answers `error`; an execution error (a malformed id), a stream that does
  not exist, an `after` that is not one of its gifts and a full giftFeed (FEED_FULL, never
  the creator) answer `next` with the errors then `complete`, as the local server does; a
  stream that is not live answers `complete` at once (after giftFeed's backfill); otherwise
  the subscription is stored in one of the stream's subscriber partitions, and giftFeed's
  gifts after `after` are sent (resolvers/feed.py: `backfill`).
- complete, ping/pong, $disconnect (its subscriptions are removed).
- A message over `LIVECOINS_MAX_BODY_BYTES` is not read: an `error` for its id if it has one
  (MESSAGE_TOO_LARGE), then the connection is closed (the local server closes with 1009;
  API Gateway itself closes with 1009 past its 128 KB).
Queries and mutations are the HTTP API's: over the socket they answer `error`.

`fanout_handler` (GiftFeedFanOutFunction) consumes the transfers table's stream (new gifts)
and the streams table's (a stream ended). It posts nothing itself: for each stream of a
batch it hands the batch's gifts to each of the stream's giftFeed partitions (one dispatch
message per partition), adds the batch to the stream's digest (infra/digests.py) and, if it
wins the second's claim, builds the digest and hands it to each streamDigest partition; an
ended stream's last digest is built 5 s later (`tick`), once its last gifts are in.

`post_handler` (GiftFeedPostFunction) takes the dispatch queue's messages: each is one
partition's posts for one batch of gifts, one digest or the end, streamed from the
partition a page at a time with many posts in flight, checkpointed after each page (a
retried message does not post again to those served; a duplicate posts nothing). Gone
connections (410) are removed. A message that keeps failing goes to GiftFeedFailures.

PyJWT (the token check) is imported here only: the GraphQL function never loads it. As in
handlers/lambda_api.py, the imports run with the garbage collector off, then frozen.
"""

# ruff: noqa: E402 - the collector goes off before the imports
from __future__ import annotations

import gc

gc.disable()

import asyncio
import json
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from graphql import OperationType, parse
from graphql.error import GraphQLSyntaxError

from handlers.metrics import MetricsPublisher
from infra.config import Settings
from infra.digests import DigestState
from infra.dynamo import Item, from_item
from infra.services import Services
from infra.subscriptions import (
    CONNECTIONS,
    DIGEST,
    FEED,
    FEED_PER_PARTITION,
    Checkpoints,
    ConnectionsRepo,
    Dispatch,
    Gone,
    ManagementApi,
    PostFailed,
    SubscriptionsRepo,
    batch_key,
    channel,
    work_key,
)
from resolvers import feed as feed_resolvers
from resolvers.context import Context
from resolvers.errors import UnknownId
from resolvers.identity import Identity
from schema import schema

logger = Logger(service="livecoins")
log = logging.getLogger("livecoins")
PROTOCOL = "graphql-transport-ws"
Event = dict[str, Any]
PAGE = 500  # subscribers a poster reads, and checkpoints, at a time
LAST_DIGEST_DELAY = 5  # seconds after a stream ends: its last gifts reach the feed first (a
# heuristic: the gifts come on the transfers table's stream, the end on the streams table's, in no
# order; a transfers stream lagging more than this still completes a viewer before its last gifts)
STALE_SECONDS = 10  # a digest not posted by then is not posted: a newer one says more


class Poster(Protocol):
    """API Gateway's management API (infra.subscriptions.ManagementApi; a recorder in tests)."""

    async def post(self, connection_id: str, body: bytes) -> None: ...

    async def close(self, connection_id: str) -> None: ...


class Dispatcher(Protocol):
    """The dispatch queue (infra.subscriptions.Dispatch; a list in tests)."""

    async def send(self, messages: list[dict[str, Any]], delay: int = 0) -> None: ...


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


class _Probe:
    """A feed with nothing in it that notes what a subscription asked for."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.stream_id: str | None = None
        self.after: str | None = None

    async def gifts(self, stream_id: str, after: str | None) -> AsyncIterator[Any]:
        self.kind, self.stream_id, self.after = FEED, stream_id, after
        return
        yield  # an async generator that ends at once

    async def digests(self, stream_id: str) -> AsyncIterator[Any]:
        self.kind, self.stream_id = DIGEST, stream_id
        return
        yield


class _Handed:
    """A feed that delivers what it was handed: gifts (in order) or one digest, to the
    subscriptions of their stream."""

    def __init__(self, transfers: list[Item] | None = None, digest: Item | None = None) -> None:
        self.transfers = transfers or []
        self.digest = digest

    async def gifts(self, stream_id: str, after: str | None) -> AsyncIterator[Any]:
        for transfer in self.transfers:
            if stream_id == transfer.get("streamId"):
                yield transfer

    async def digests(self, stream_id: str) -> AsyncIterator[Any]:
        if self.digest is not None and self.digest["streamId"] == stream_id:
            yield self.digest


async def execute(
    services: Services, request: dict[str, Any], feed: Any, users: dict[str, Item] | None = None
) -> list[dict[str, Any]]:
    """Run a subscription document against `feed`: its results, formatted for `next`.
    `users` (by id) are the accounts the results show, read once for all of them."""
    refused, payloads = await _run(services, request, feed, users)
    return [refused] if refused is not None else payloads


async def _run(
    services: Services, request: dict[str, Any], feed: Any, users: dict[str, Item] | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the answer if the document was refused before execution, e.g. invalid; else None,
    and the results of executing it against `feed`)."""
    context = Context(services, None, feed=feed)
    if users:
        context.users.prime_many(users)
    result = await schema.subscribe(
        request["query"],
        variable_values=request.get("variables") or None,
        context_value=context,
        operation_name=request.get("operationName"),
    )
    if not hasattr(result, "__aiter__"):
        return _formatted(result), []
    payloads = []
    try:
        async for item in result:
            payloads.append(_formatted(item))
    finally:
        await result.aclose()
    return None, payloads


def _formatted(result: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": getattr(result, "data", None)}
    errors = getattr(result, "errors", None)
    if errors:
        payload["errors"] = [e.formatted for e in errors]
    return payload


async def _users(
    services: Services, transfers: list[Item], others: list[str] | None = None
) -> dict[str, Item]:
    """The senders and recipients of `transfers` (and `others`): one BatchGetItem per 100."""
    ids = {t[k] for t in transfers for k in ("senderId", "recipientId") if t.get(k)}
    ids |= set(others or ())
    return await services.accounts.get_many(sorted(ids)) if ids else {}


class SocketSession:
    """One WebSocket event's work, with the process's services and poster."""

    def __init__(self, services: Services, poster: Poster, verify: Any) -> None:
        self.services = services
        self.poster = poster
        self.verify = verify
        self.connections = ConnectionsRepo(services.dynamo)
        self.subscriptions = SubscriptionsRepo(services.dynamo)
        self.digests = DigestState(services.dynamo)

    async def post(self, connection_id: str, message: dict[str, Any]) -> None:
        try:
            await self.poster.post(connection_id, encode(message))
        except Gone:
            await self.disconnect(connection_id)

    async def close(self, connection_id: str, reason: str) -> None:
        log.info("closing a gift feed connection: %s", reason)
        await self.poster.close(connection_id)
        await self.disconnect(connection_id)

    async def connect(self, event: Event) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if headers.get("sec-websocket-protocol") and PROTOCOL not in offered:
            return {"statusCode": 400, "body": f"Only {PROTOCOL} is spoken here."}
        await self.connections.open(event["requestContext"]["connectionId"])
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": PROTOCOL}}

    async def disconnect(self, connection_id: str) -> None:
        await disconnect(self.connections, self.subscriptions, connection_id)

    async def message(self, connection_id: str, body: str) -> None:
        limit = self.services.settings.max_body_bytes
        if len(body.encode("utf-8", "surrogatepass")) > limit:
            return await self.too_large(connection_id, body, limit)
        try:
            message = json.loads(body)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            return await self.close(connection_id, "not a graphql-transport-ws message")
        if kind == "ping":
            return await self.post(connection_id, {"type": "pong"})
        if kind == "pong":
            return None
        connection = await self.connections.get(connection_id)
        if connection is None:
            return await self.close(connection_id, "unknown connection")
        if kind == "connection_init":
            return await self.init(connection_id, connection, message.get("payload") or {})
        subscription_id = message.get("id")
        usable_id = isinstance(subscription_id, str) and 0 < len(subscription_id) <= 128
        if connection["state"] == REFUSED:
            if kind == "subscribe" and usable_id:
                await self.post(connection_id, _error(subscription_id, *UNAUTHENTICATED))
            return await self.close(connection_id, "4403 Forbidden: the token is not valid")
        if connection["state"] != "ready":
            return await self.close(connection_id, "4401 Unauthorized: connection_init first")
        if not usable_id:
            return await self.close(connection_id, "4400 a message without a usable id")
        if kind == "subscribe":
            return await self.subscribe(
                connection_id, subscription_id, message.get("payload"), connection
            )
        if kind == "complete":
            at = (connection.get("subscriptions") or {}).get(subscription_id)
            if at:
                await self.connections.remove_subscription(connection_id, subscription_id)
                await self.subscriptions.remove(at, connection_id, subscription_id)
            return None
        return await self.close(connection_id, f"4400 unknown message type {kind!r}")

    async def init(self, connection_id: str, connection: Item, payload: Any) -> None:
        if connection["state"] != "open":
            return await self.close(connection_id, "4429 Too many initialisation requests")
        identity = None
        token = _token(payload)
        if token is not None:
            identity = await asyncio.to_thread(self.verify, token)
        if token is not None and identity is None:
            # Acknowledged, so the client reads the refusal on its first subscribe (above).
            accepted = await self._refuse(connection_id)
        else:
            accepted = await self.connections.ready(
                connection_id, identity.sub if identity else None
            )
        if not accepted:
            return await self.close(connection_id, "4429 Too many initialisation requests")
        await self.post(connection_id, {"type": "connection_ack"})
        return None

    async def _refuse(self, connection_id: str) -> bool:
        """connection_init with a bad token: open -> refused, once (False: it was not open)."""
        updated = await self.services.dynamo.update(
            CONNECTIONS,
            {"id": connection_id},
            "SET #s = :refused",
            names={"#s": "state"},
            values={":refused": REFUSED, ":open": "open"},
            condition="#s = :open",
        )
        return updated is not None

    async def too_large(self, connection_id: str, body: str, limit: int) -> None:
        try:
            subscription_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            subscription_id = None
        if isinstance(subscription_id, str) and 0 < len(subscription_id) <= 128:
            message = f"The message is larger than {limit} bytes."
            await self.post(connection_id, _error(subscription_id, message, "MESSAGE_TOO_LARGE"))
        return await self.close(connection_id, f"1009 a message larger than {limit} bytes")

    async def subscribe(
        self, connection_id: str, subscription_id: str, payload: Any, connection: Item
    ) -> None:
        limit = self.services.settings.ws_max_operations
        held = connection.get("subscriptions") or {}
        if subscription_id not in held and len(held) >= limit:  # the write below is the rule
            return await self.post(connection_id, _error(subscription_id, LIMIT_REACHED))
        request = _request(payload)
        if isinstance(request, str):
            return await self.post(connection_id, _error(subscription_id, request))
        probe = _Probe()
        refused, results = await _run(self.services, request, probe)
        if refused is not None:
            errors = refused.get("errors") or [{"message": "The document was refused."}]
            return await self.post(
                connection_id, {"id": subscription_id, "type": "error", "payload": errors}
            )
        errors = [e for r in results for e in r.get("errors", [])]
        if errors:  # as the local server: the execution's errors, then the end
            return await self._ended(connection_id, subscription_id, errors)
        if probe.kind is None or probe.stream_id is None:
            return await self.post(
                connection_id, _error(subscription_id, "Subscribe to giftFeed or streamDigest.")
            )
        stream_id, kind = probe.stream_id, probe.kind
        stream = await self._stream(stream_id)
        if stream is None:
            error = {
                "message": f"No live stream {stream_id}.",
                "extensions": {"code": "NOT_FOUND", "field": "streamId"},
            }
            return await self._ended(connection_id, subscription_id, [error])
        after: Item | None = None
        if probe.after is not None:
            try:
                after = await feed_resolvers.anchor(self.services, stream_id, probe.after)
            except UnknownId as unknown:
                error = {
                    "message": str(unknown),
                    "extensions": {"code": "NOT_FOUND", "field": "after"},
                }
                return await self._ended(connection_id, subscription_id, [error])
        if stream.get("status") != "LIVE":
            if after is not None:
                await self._backfill(connection_id, subscription_id, request, stream, after)
            return await self.post(connection_id, {"id": subscription_id, "type": "complete"})
        at = await self._take_place(connection_id, subscription_id, kind, stream, connection)
        if at is None:
            error = {
                "message": "This stream's live gift feed is full: follow it with streamDigest.",
                "extensions": {"code": "FEED_FULL"},
            }
            return await self._ended(connection_id, subscription_id, [error])
        counted = kind == FEED and connection.get("sub") != stream["creatorId"]
        added = await self._add_subscription(connection_id, subscription_id, at, limit)
        if added != "added":
            await self.subscriptions.release_place(stream_id, kind, counted)
            if added == "full":
                return await self.post(connection_id, _error(subscription_id, LIMIT_REACHED))
            return await self.close(connection_id, f"4409 Subscriber for {subscription_id} exists")
        await self.subscriptions.add(
            at,
            connection_id,
            subscription_id,
            request,
            stream_id=stream_id,
            kind=kind,
            counted=counted,
        )
        if not await self._live(stream_id):  # it ended meanwhile: its fan-out may have missed us
            await self.connections.remove_subscription(connection_id, subscription_id)
            await self.subscriptions.remove(at, connection_id, subscription_id)
            await self.post(connection_id, {"id": subscription_id, "type": "complete"})
            return None
        if after is not None:
            sent = await self._backfill(connection_id, subscription_id, request, stream, after, at)
            log.info("giftFeed(after:) backfilled %d gifts", sent)
        return None

    async def _take_place(
        self, connection_id: str, subscription_id: str, kind: str, stream: Item, connection: Item
    ) -> str | None:
        """A place among the stream's subscribers of `kind` (giftFeed's are capped, never for
        its creator), and the partition it is in; None when the giftFeed is full."""
        settings = self.services.settings
        creator = connection.get("sub") == stream["creatorId"]
        counted = kind == FEED and not creator
        per = FEED_PER_PARTITION if kind == FEED else settings.feed_partition_size
        parts = await self.subscriptions.take_place(
            stream["id"], kind, counted, settings.feed_max_subscribers, per
        )
        if parts is None:
            return None
        if kind == DIGEST:
            await self.digests.ensure(stream["id"])
        partition = zlib.crc32(connection_id.encode()) % parts
        return channel(stream["id"], kind, partition)

    async def _backfill(
        self,
        connection_id: str,
        subscription_id: str,
        request: dict[str, Any],
        stream: Item,
        after: Item,
        at: str | None = None,
    ) -> int:
        """Send the gifts after `after` (resolvers/feed.py: `backfill`), in order. They are
        noted on the subscription first, so the fan-out does not send them again."""
        transfers = await feed_resolvers.backfill(self.services, stream, after)
        if not transfers:
            return 0
        if at is not None:
            ids = [t["id"] for t in transfers]
            await self.subscriptions.sent(at, connection_id, subscription_id, ids)
        users = await _users(self.services, transfers)
        payloads = await execute(self.services, request, _Handed(transfers), users)
        for payload in payloads:
            message = {"id": subscription_id, "type": "next", "payload": payload}
            await self.poster.post(connection_id, encode(message))
        return len(payloads)

    async def _ended(
        self, connection_id: str, subscription_id: str, errors: list[dict[str, Any]]
    ) -> None:
        payload = {"data": None, "errors": errors}
        await self.post(connection_id, {"id": subscription_id, "type": "next", "payload": payload})
        await self.post(connection_id, {"id": subscription_id, "type": "complete"})

    async def _add_subscription(
        self, connection_id: str, subscription_id: str, at: str, limit: int
    ) -> str:
        """Record the subscription on its connection if it has fewer than `limit`: "added",
        or why not: "full", "exists" (the id is in use) or "gone". One conditional write, so
        concurrent subscribes on one connection (Lambda runs them in parallel) cannot pass
        the cap together."""
        updated = await self.services.dynamo.update(
            CONNECTIONS,
            {"id": connection_id},
            "SET subscriptions.#id = :channel",
            names={"#id": subscription_id},
            values={":channel": at, ":limit": limit},
            condition="attribute_exists(id) AND attribute_not_exists(subscriptions.#id) "
            "AND size(subscriptions) < :limit",
        )
        if updated is not None:
            return "added"
        connection = await self.connections.get(connection_id)
        if connection is None:
            return "gone"
        return "exists" if subscription_id in (connection.get("subscriptions") or {}) else "full"

    async def _stream(self, stream_id: str) -> Item | None:
        return await self.services.streams.get(stream_id) if "#" not in stream_id else None

    async def _live(self, stream_id: str) -> bool:
        stream = await self._stream(stream_id)
        return stream is not None and stream.get("status") == "LIVE"


REFUSED = "refused"  # connection_init came with a bad token (the connection's state)
UNAUTHENTICATED = (
    "The token in connection_init is not valid or has expired: sign in again.",
    "UNAUTHENTICATED",
)
LIMIT_REACHED = "Subscription limit reached"  # the local server's words (Strawberry's)


def _error(subscription_id: str, message: str, code: str | None = None) -> dict[str, Any]:
    """A graphql-transport-ws `error` for one subscription."""
    error: dict[str, Any] = {"message": message}
    if code:
        error["extensions"] = {"code": code}
    return {"id": subscription_id, "type": "error", "payload": [error]}


def _token(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    value = payload.get("Authorization") or payload.get("authorization") or payload.get("token")
    if not isinstance(value, str) or not value.strip():
        return None
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()


def _request(payload: Any) -> dict[str, Any] | str:
    """The subscribe payload's document, if it is one subscription operation."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "subscribe needs a payload with a query."
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return "variables must be an object."
    name = payload.get("operationName")
    if len(payload["query"]) > 10_000:
        return "The document is too large."
    try:
        document = parse(payload["query"])
    except GraphQLSyntaxError as error:
        return error.message
    operations = [
        d
        for d in document.definitions
        if getattr(d, "operation", None) is not None
        and (name is None or getattr(getattr(d, "name", None), "value", None) == name)
    ]
    if len(operations) != 1 or operations[0].operation != OperationType.SUBSCRIPTION:  # type: ignore[attr-defined]
        return "Only subscriptions go over this socket; send queries and mutations over HTTP."
    return {"query": payload["query"], "variables": variables or {}, "operationName": name}


class TokenVerifier:
    """Cognito ID tokens, checked like the HTTP API's JWT authorizer: RS256 signature by the
    pool's published keys, issuer, audience (the app client), expiry; token_use = id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keys: Any = None

    def __call__(self, token: str) -> Identity | None:
        import jwt  # only this function's import path carries PyJWT

        if not (self.settings.jwks_url and self.settings.token_issuer):
            log.warning("a token came but no LIVECOINS_JWKS_URL/TOKEN_ISSUER is configured")
            return None
        if self._keys is None:
            self._keys = jwt.PyJWKClient(self.settings.jwks_url, cache_keys=True, timeout=5)
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.settings.token_audience,
                issuer=self.settings.token_issuer,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.PyJWTError as error:
            log.info("refused a gift feed token: %s", error)
            return None
        if claims.get("token_use") not in (None, "id"):
            return None
        return Identity.from_claims(claims)


async def disconnect(
    connections: ConnectionsRepo, subscriptions: SubscriptionsRepo, connection_id: str
) -> None:
    """Forget a connection and every subscription it holds (their places too)."""
    connection = await connections.close(connection_id)
    held = ((connection or {}).get("subscriptions") or {}).items()
    await asyncio.gather(*(subscriptions.remove(at, connection_id, sid) for sid, at in held))


# --- the fan-out -------------------------------------------------------------------------


def _image(record: dict[str, Any]) -> Item:
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    return from_item(image)


class Digests:
    """Builds a stream's digest (once per claim) and hands it to each of its streamDigest
    partitions: the fan-out and the posters' ticks share it."""

    def __init__(self, services: Services, dispatch: Dispatcher) -> None:
        self.services = services
        self.dispatch = dispatch
        self.state = DigestState(services.dynamo)
        self.subscriptions = SubscriptionsRepo(services.dynamo)

    async def build(self, stream_id: str, last: bool, meta: Item | None = None) -> Item | None:
        """The next digest, dispatched; None when nothing landed since the previous one (or
        the last one was built). The state is read, the totals and ranking, then the state
        taken out conditioned on what was read: a concurrent builder makes this one read
        again. The last one also ends the stream's giftFeed subscriptions."""
        digest: Item | None = None
        for _ in range(3):
            state = await self.state.read(stream_id)
            if state is None or state.get("ended"):
                break
            pending = DigestState.pending(state)
            if not pending.gifts and not last:
                return None
            sequence = int(state.get("sequence", 0)) + 1
            built = await feed_resolvers.build_digest(
                self.services, stream_id, pending, sequence, last
            )
            if await self.state.consume(stream_id, state, last):
                digest = built
                break
        if digest is None and not last:
            return None
        meta = meta if meta is not None and not last else await self.subscriptions.meta(stream_id)
        messages: list[dict[str, Any]] = []
        if digest is not None:
            self.services.metrics["FeedDigests"] += 1
            messages += [
                {
                    "kind": DIGEST,
                    "stream": stream_id,
                    "partition": p,
                    "key": str(digest["sequence"]),
                    "digest": digest,
                    "last": last,
                }
                for p in range(int(meta.get("digestParts", 0)))
            ]
        if last:  # the giftFeed subscribers' end (a repeated tick: their checkpoints say done)
            messages += [
                {"kind": "end", "stream": stream_id, "partition": p, "key": "end"}
                for p in range(int(meta.get("feedParts", 0)))
            ]
        await self.dispatch.send(messages)
        return digest


class FanOut:
    """The tables' streams' consumer: per stream of a batch, dispatch and digest work."""

    def __init__(self, services: Services, dispatch: Dispatcher) -> None:
        self.services = services
        self.dispatch = dispatch
        self.subscriptions = SubscriptionsRepo(services.dynamo)
        self.digests = Digests(services, dispatch)

    async def handle(self, records: list[dict[str, Any]]) -> dict[str, int]:
        gifts: dict[str, list[Item]] = defaultdict(list)
        ended: set[str] = set()
        for record in records:
            image = _image(record)
            if record.get("eventName") == "INSERT" and "giftId" in image:
                self.services.metrics["GiftsSent"] += 1
                self.services.metrics["GiftCoins"] += image.get("coins", 0)
                if image.get("streamId"):
                    gifts[image["streamId"]].append(image)
            elif image.get("status") == "ENDED" and "creatorId" in image:
                ended.add(image["id"])
        dispatched = await asyncio.gather(
            *(self._gifts(s, sorted(g, key=lambda t: t["id"])) for s, g in gifts.items())
        )
        if ended:  # the last digest and the end, once the stream's last gifts are in
            ticks = [{"kind": "tick", "stream": s, "last": True} for s in sorted(ended)]
            await self.dispatch.send(ticks, delay=LAST_DIGEST_DELAY)
        return {
            "gifts": sum(len(g) for g in gifts.values()),
            "ended": len(ended),
            "dispatched": sum(dispatched),
        }

    async def _gifts(self, stream_id: str, transfers: list[Item]) -> int:
        meta = await self.subscriptions.meta(stream_id)
        key = batch_key([t["id"] for t in transfers])
        messages = [
            {"kind": FEED, "stream": stream_id, "partition": p, "key": key, "gifts": transfers}
            for p in range(int(meta.get("feedParts", 0)) if meta.get("feed", 0) > 0 else 0)
        ]
        sending = asyncio.create_task(self.dispatch.send(messages))
        try:
            if meta.get("digest", 0) > 0:
                await self._digest(stream_id, key, transfers, meta)
        finally:
            await sending
        return len(messages)

    async def _digest(self, stream_id: str, key: str, transfers: list[Item], meta: Item) -> None:
        state = self.digests.state
        await state.contribute(stream_id, key, transfers)
        second = int(time.time())
        if await state.claim(stream_id, second):
            await self.digests.build(stream_id, last=False, meta=meta)
        elif await state.queue_tick(stream_id, second + 1):
            # someone builds this second's digest, perhaps before this batch was added: the
            # next second's is queued, in case no other batch of the stream comes to build it
            await self.dispatch.send([{"kind": "tick", "stream": stream_id}], delay=1)


# --- the posters -------------------------------------------------------------------------


class Posting:
    """The dispatch queue's consumer: each message one partition's posts (or a tick)."""

    def __init__(self, services: Services, poster: Poster, dispatch: Dispatcher) -> None:
        self.services = services
        self.poster = poster
        self.subscriptions = SubscriptionsRepo(services.dynamo)
        self.connections = ConnectionsRepo(services.dynamo)
        self.checkpoints = Checkpoints(services.dynamo)
        self.digests = Digests(services, dispatch)

    async def handle(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Every message at once; the ones that failed are reported for another try
        (ReportBatchItemFailures), the others are done."""
        outcomes = await asyncio.gather(
            *(self.work(json.loads(r["body"])) for r in records), return_exceptions=True
        )
        failures = []
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("a feed dispatch message failed: %r", outcome)
                failures.append({"itemIdentifier": record["messageId"]})
            else:
                self.services.metrics["FeedPosts"] += outcome
        return {"batchItemFailures": failures}

    async def work(self, message: dict[str, Any]) -> int:
        """One message's posts (their number)."""
        stream_id, kind = message["stream"], message["kind"]
        if kind == "tick":
            if message.get("last"):
                await self.digests.build(stream_id, last=True)
            elif await self.digests.state.claim(stream_id, int(time.time())):
                await self.digests.build(stream_id, last=False)
            return 0
        if kind == DIGEST and not message.get("last") and _age(message["digest"]) > STALE_SECONDS:
            self.services.metrics["FeedDigestsStale"] += 1
            return 0  # a retry long after: a newer digest (with the full totals) has gone out
        partition = int(message["partition"])
        work = work_key(kind, partition, message["key"])
        checkpoint = await self.checkpoints.get(stream_id, work)
        if checkpoint.get("done"):
            return 0  # a duplicate of a message already served
        at = channel(stream_id, DIGEST if kind == DIGEST else FEED, partition)
        bodies = Bodies(self.services, message)
        start, posts = checkpoint.get("upTo"), 0
        while True:
            page, last = await self.subscriptions.page(at, start, PAGE)
            served, count = await self._page(page, bodies, message)
            posts += count
            if served < len(page):  # resume after the last subscriber all before were served
                if served or start:
                    up_to = page[served - 1]["subscriber"] if served else start
                    await self.checkpoints.served(stream_id, work, str(up_to))
                raise PostFailed(f"{len(page) - served} subscribers of {at} not served")
            if last is None:
                break
            start = last
            await self.checkpoints.served(stream_id, work, last)
        await self.checkpoints.done(stream_id, work)
        return posts

    async def _page(
        self, page: list[Item], bodies: Bodies, message: dict[str, Any]
    ) -> tuple[int, int]:
        """Post to a page of subscribers, all at once (the management API's connections bound
        how many are in flight): how many of the first were all served, and the posts."""
        ends = message["kind"] == "end" or bool(message.get("last"))

        async def serve(subscriber: Item) -> int:
            posts = 0
            texts = await bodies.of(subscriber)
            if ends:
                texts.append(encode({"id": subscriber["subscriptionId"], "type": "complete"}))
            try:
                for text in texts:  # one subscriber's in order
                    await self.poster.post(subscriber["connectionId"], text)
                    posts += 1
            except Gone:
                await disconnect(self.connections, self.subscriptions, subscriber["connectionId"])
                return posts
            if ends:  # the stream is over: no place to give back
                await self.connections.remove_subscription(
                    subscriber["connectionId"], subscriber["subscriptionId"]
                )
                await self.services.dynamo.delete(
                    "subscriptions",
                    {"channel": subscriber["channel"], "subscriber": subscriber["subscriber"]},
                )
            return posts

        outcomes = await asyncio.gather(*(serve(s) for s in page), return_exceptions=True)
        served = next(
            (n for n, o in enumerate(outcomes) if isinstance(o, BaseException)), len(page)
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, PostFailed):
                log.warning("a post failed: %r", outcome)
        return served, sum(o for o in outcomes if isinstance(o, int))


def _age(digest: Item) -> float:
    """Seconds since the digest was built."""
    return time.time() - datetime.fromisoformat(digest["at"]).timestamp()


class Bodies:
    """What one message sends each subscriber: its document executed once per distinct
    document (and variables) of the message's subscribers, serialised once."""

    def __init__(self, services: Services, message: dict[str, Any]) -> None:
        self.services = services
        self.message = message
        self._rendered: dict[str, list[tuple[str, str]]] = {}  # request -> [(gift id, payload)]
        self._users: dict[str, Item] | None = None
        self._lock = asyncio.Lock()

    async def of(self, subscriber: Item) -> list[bytes]:
        kind = self.message["kind"]
        if kind == "end":
            return []
        raw = subscriber["request"]
        rendered = self._rendered.get(raw)
        if rendered is None:
            async with self._lock:
                rendered = self._rendered.get(raw)
                if rendered is None:
                    rendered = self._rendered[raw] = await self._render(json.loads(raw))
        sent = set(subscriber.get("sent") or ())
        prefix = '{"id":' + json.dumps(subscriber["subscriptionId"]) + ',"type":"next","payload":'
        return [(prefix + payload + "}").encode() for key, payload in rendered if key not in sent]

    async def _render(self, request: dict[str, Any]) -> list[tuple[str, str]]:
        ranked: list[str] = []
        if self.message["kind"] == FEED:
            transfers: list[Item] = self.message["gifts"]
            source = _Handed(transfers)
            keys = [t["id"] for t in transfers]
        else:
            digest = self.message["digest"]
            source = _Handed(digest=digest)
            transfers = digest["highlights"]
            ranked = [r["senderId"] for r in digest["topGifters"]]
            keys = [f"digest#{digest['sequence']}"]
        if self._users is None:  # every user the message shows, in one read
            self._users = await _users(self.services, transfers, ranked)
        payloads = await execute(self.services, request, source, self._users)
        if len(payloads) != len(keys):  # refused (a document that no longer validates)
            keys = [f"error#{n}" for n in range(len(payloads))]
        return [
            (k, json.dumps(p, separators=(",", ":"))) for k, p in zip(keys, payloads, strict=True)
        ]


# --- Lambda entrypoints ------------------------------------------------------------------


class _Function:
    """One function's process-wide state, built on its first invocation."""

    def __init__(self) -> None:
        settings = Settings.from_env()
        if not settings.feed_endpoint:
            raise RuntimeError("LIVECOINS_FEED_ENDPOINT is not set (template.yaml sets it)")
        # No payment provider: the feed never takes a payment, nor reads the processor's secret.
        self.services = Services.build(settings, takes_payments=False)
        self.loop = asyncio.new_event_loop()
        self.metrics = MetricsPublisher(self.services)
        self._poster: ManagementApi | None = None
        self._dispatch: Dispatch | None = None

    @property
    def poster(self) -> ManagementApi:
        if self._poster is None:
            settings = self.services.settings
            self._poster = ManagementApi(str(settings.feed_endpoint), settings.region)
        return self._poster

    @property
    def dispatch(self) -> Dispatch:
        if self._dispatch is None:
            settings = self.services.settings
            if not settings.feed_dispatch_queue:
                raise RuntimeError("LIVECOINS_FEED_DISPATCH_QUEUE is not set (template.yaml)")
            self._dispatch = Dispatch(settings.feed_dispatch_queue, settings.region)
        return self._dispatch

    def run(self, work: Callable[[], Any]) -> Any:
        try:
            return self.loop.run_until_complete(work())
        finally:
            self.metrics.publish(rate=False)


_socket: tuple[_Function, SocketSession] | None = None
_fanout: tuple[_Function, FanOut] | None = None
_posting: tuple[_Function, Posting] | None = None


@logger.inject_lambda_context
def socket_handler(event: Event, context: Any) -> dict[str, Any]:
    global _socket
    if _socket is None:
        function = _Function()
        verify = TokenVerifier(function.services.settings)
        _socket = function, SocketSession(function.services, function.poster, verify)
    function, session = _socket
    request = event.get("requestContext") or {}
    route, connection_id = request.get("routeKey"), request.get("connectionId", "")

    async def work() -> dict[str, Any]:
        if route == "$connect":
            return await session.connect(event)
        if route == "$disconnect":
            await session.disconnect(connection_id)
        else:
            await session.message(connection_id, event.get("body") or "")
        return {"statusCode": 200}

    result: dict[str, Any] = function.run(work)
    return result


@logger.inject_lambda_context
def fanout_handler(event: Event, context: Any) -> dict[str, Any]:
    global _fanout
    if _fanout is None:
        function = _Function()
        _fanout = function, FanOut(function.services, function.dispatch)
    function, fanout = _fanout
    counts: dict[str, Any] = function.run(lambda: fanout.handle(event.get("Records") or []))
    logger.info("gift feed fan-out", extra=counts)
    return counts


@logger.inject_lambda_context
def post_handler(event: Event, context: Any) -> dict[str, Any]:
    global _posting
    if _posting is None:
        function = _Function()
        _posting = function, Posting(function.services, function.poster, function.dispatch)
    function, posting = _posting
    answer: dict[str, Any] = function.run(lambda: posting.handle(event.get("Records") or []))
    if answer["batchItemFailures"]:
        logger.warning("gift feed posts failed", extra=answer)
    return answer


gc.freeze()
gc.enable()
