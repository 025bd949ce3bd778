"""The gift feed on AWS: giftFeed over an API Gateway WebSocket API, graphql-transport-ws.

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
  executed once against an empty feed to validate it and learn its stream: a refused
  document answers `error`; an execution error (a malformed stream id) and a stream that does
  not exist answer `next` with the errors (NOT_FOUND) then `complete`, as the local server
  does; a stream that is not live answers `complete` at once; otherwise the subscription is
  stored under the stream's subscriber partition.
- complete, ping/pong, $disconnect (its subscriptions are removed).
- A message over `LIVECOINS_MAX_BODY_BYTES` is not read: an `error` for its id if it has one
  (MESSAGE_TOO_LARGE), then the connection is closed (the local server closes with 1009;
  API Gateway itself closes with 1009 past its 128 KB).
Queries and mutations are the HTTP API's: over the socket they answer `error`.

`fanout_handler` (GiftFeedFanOutFunction) consumes the transfers table's stream (new gifts)
and the streams table's (a stream ended): each gift is executed once per distinct document
among the stream's subscribers and posted to each of them (`next`, with the transfer's
time-ordered id, so clients can order gifts that arrive out of order); an ended stream's
subscribers get `complete`. Connections that are gone are removed. Delivery is at least
once: a batch that fails is retried (the mapping then sends it to GiftFeedFailures).

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
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

from aws_lambda_powertools import Logger
from graphql import OperationType, parse
from graphql.error import GraphQLSyntaxError

from handlers.metrics import MetricsPublisher
from infra.config import Settings
from infra.dynamo import Item, from_item
from infra.services import Services
from infra.subscriptions import (
    CONNECTIONS,
    ConnectionPoster,
    ConnectionsRepo,
    Gone,
    SubscriptionsRepo,
    channel,
)
from resolvers.context import Context
from resolvers.identity import Identity
from schema import schema

logger = Logger(service="livecoins")
log = logging.getLogger("livecoins")
PROTOCOL = "graphql-transport-ws"
Event = dict[str, Any]


class _Probe:
    """A feed with no gifts that notes which stream a subscription asked for."""

    def __init__(self) -> None:
        self.stream_id: str | None = None

    async def gifts(self, stream_id: str, after: str | None) -> AsyncIterator[Any]:
        self.stream_id = stream_id
        return
        yield  # an async generator that ends at once

    async def digests(self, stream_id: str) -> AsyncIterator[Any]:
        return
        yield


class _OneGift:
    """A feed that delivers one gift to a subscription of its stream."""

    def __init__(self, transfer: Item) -> None:
        self.transfer = transfer

    async def gifts(self, stream_id: str, after: str | None) -> AsyncIterator[Any]:
        if stream_id == self.transfer.get("streamId"):
            yield self.transfer

    async def digests(self, stream_id: str) -> AsyncIterator[Any]:
        return
        yield


async def execute(services: Services, request: dict[str, Any], feed: Any) -> list[dict[str, Any]]:
    """Run a subscription document against `feed`: its results, formatted for `next`."""
    refused, payloads = await _run(services, request, feed)
    return [refused] if refused is not None else payloads


async def _run(
    services: Services, request: dict[str, Any], feed: Any
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the answer if the document was refused before execution, e.g. invalid; else None,
    and the results of executing it against `feed`)."""
    result = await schema.subscribe(
        request["query"],
        variable_values=request.get("variables") or None,
        context_value=Context(services, None, feed=feed),
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


class SocketSession:
    """One WebSocket event's work, with the process's services and poster."""

    def __init__(self, services: Services, poster: ConnectionPoster, verify: Any) -> None:
        self.services = services
        self.poster = poster
        self.verify = verify
        self.connections = ConnectionsRepo(services.dynamo)
        self.subscriptions = SubscriptionsRepo(services.dynamo)

    async def post(self, connection_id: str, message: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.poster.post, connection_id, message)
        except Gone:
            await self.disconnect(connection_id)

    async def close(self, connection_id: str, reason: str) -> None:
        log.info("closing a gift feed connection: %s", reason)
        await asyncio.to_thread(self.poster.close, connection_id)
        await self.disconnect(connection_id)

    async def connect(self, event: Event) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if headers.get("sec-websocket-protocol") and PROTOCOL not in offered:
            return {"statusCode": 400, "body": f"Only {PROTOCOL} is spoken here."}
        await self.connections.open(event["requestContext"]["connectionId"])
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": PROTOCOL}}

    async def disconnect(self, connection_id: str) -> None:
        connection = await self.connections.close(connection_id)
        for subscription_id, at in ((connection or {}).get("subscriptions") or {}).items():
            await self.subscriptions.remove(at, connection_id, subscription_id)

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
        if probe.stream_id is None:
            return await self.post(connection_id, _error(subscription_id, "Subscribe to giftFeed."))
        stream_id = probe.stream_id
        stream = await self._stream(stream_id)
        if stream is None:
            error = {
                "message": f"No live stream {stream_id}.",
                "extensions": {"code": "NOT_FOUND", "field": "streamId"},
            }
            return await self._ended(connection_id, subscription_id, [error])
        if stream.get("status") != "LIVE":
            return await self.post(connection_id, {"id": subscription_id, "type": "complete"})
        at = channel(stream_id, connection_id, 4)
        added = await self._add_subscription(connection_id, subscription_id, at, limit)
        if added == "full":
            return await self.post(connection_id, _error(subscription_id, LIMIT_REACHED))
        if added != "added":
            return await self.close(connection_id, f"4409 Subscriber for {subscription_id} exists")
        await self.subscriptions.add(at, connection_id, subscription_id, request)
        if not await self._live(stream_id):  # it ended meanwhile: its fan-out may have missed us
            await self.connections.remove_subscription(connection_id, subscription_id)
            await self.subscriptions.remove(at, connection_id, subscription_id)
            await self.post(connection_id, {"id": subscription_id, "type": "complete"})
        return None

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


# --- the fan-out -------------------------------------------------------------------------


def _image(record: dict[str, Any]) -> Item:
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    return from_item(image)


class FanOut:
    def __init__(self, services: Services, poster: ConnectionPoster, posts_at_once: int = 32):
        self.services = services
        self.poster = poster
        self.subscriptions = SubscriptionsRepo(services.dynamo)
        self.connections = ConnectionsRepo(services.dynamo)
        self.posts_at_once = posts_at_once

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
        counts = await asyncio.gather(
            *(self._gifts(s, sorted(g, key=lambda t: t["id"])) for s, g in gifts.items()),
            *(self._ended(s) for s in ended),
        )
        posted = sum(counts)
        self.services.metrics["FeedPosts"] += posted
        return {"gifts": sum(len(g) for g in gifts.values()), "ended": len(ended), "posts": posted}

    async def _gifts(self, stream_id: str, transfers: list[Item]) -> int:
        subscribers = await self._subscribers(stream_id)
        by_request: dict[str, list[Item]] = defaultdict(list)
        for subscriber in subscribers:
            by_request[subscriber["request"]].append(subscriber)
        posts: list[tuple[Item, dict[str, Any]]] = []
        for transfer in transfers:  # time order within the batch
            for raw, group in by_request.items():
                payloads = await execute(self.services, json.loads(raw), _OneGift(transfer))
                for payload in payloads:
                    posts += [
                        (s, {"id": s["subscriptionId"], "type": "next", "payload": payload})
                        for s in group
                    ]
        await self._post_all(posts)
        return len(posts)

    async def _ended(self, stream_id: str) -> int:
        subscribers = await self._subscribers(stream_id)
        await self._post_all(
            [(s, {"id": s["subscriptionId"], "type": "complete"}) for s in subscribers]
        )
        for s in subscribers:
            await self.subscriptions.remove(s["channel"], s["connectionId"], s["subscriptionId"])
        return len(subscribers)

    async def _subscribers(self, stream_id: str) -> list[Item]:
        return await self.subscriptions.of_stream(stream_id, 4)

    async def _post_all(self, posts: list[tuple[Item, dict[str, Any]]]) -> None:
        """Posts in order per subscriber, subscribers in parallel (bounded)."""
        by_subscriber: dict[str, list[tuple[Item, dict[str, Any]]]] = defaultdict(list)
        for subscriber, message in posts:
            by_subscriber[subscriber["subscriber"] + subscriber["channel"]].append(
                (subscriber, message)
            )
        limit = asyncio.Semaphore(self.posts_at_once)

        async def deliver(queue: list[tuple[Item, dict[str, Any]]]) -> None:
            async with limit:
                for subscriber, message in queue:
                    try:
                        await asyncio.to_thread(
                            self.poster.post, subscriber["connectionId"], message
                        )
                    except Gone:
                        await self.subscriptions.remove(
                            subscriber["channel"],
                            subscriber["connectionId"],
                            subscriber["subscriptionId"],
                        )
                        return

        await asyncio.gather(*(deliver(q) for q in by_subscriber.values()))


# --- Lambda entrypoints ------------------------------------------------------------------


class _Function:
    """One function's process-wide state, built on its first invocation."""

    def __init__(self) -> None:
        settings = Settings.from_env()
        if not settings.feed_endpoint:
            raise RuntimeError("LIVECOINS_FEED_ENDPOINT is not set (template.yaml sets it)")
        # No payment provider: the feed never takes a payment, nor reads the processor's secret.
        self.services = Services.build(settings, takes_payments=False)
        self.poster = ConnectionPoster(settings.feed_endpoint, settings.region)
        self.loop = asyncio.new_event_loop()
        self.metrics = MetricsPublisher(self.services)

    def run(self, work: Callable[[], Any]) -> Any:
        try:
            return self.loop.run_until_complete(work())
        finally:
            self.metrics.publish(rate=False)


_socket: tuple[_Function, SocketSession] | None = None
_fanout: tuple[_Function, FanOut] | None = None


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
        _fanout = function, FanOut(function.services, function.poster)
    function, fanout = _fanout
    counts: dict[str, Any] = function.run(lambda: fanout.handle(event.get("Records") or []))
    logger.info("gift feed fan-out", extra=counts)
    return counts


gc.freeze()
gc.enable()
