"""Local server: aiohttp with Strawberry's GraphQLView, GraphiQL served from this package.

Tokens are HS256 JWTs signed with LIVECOINS_JWT_SECRET (local only). No token: anonymous;
a bad signature or an expired token: HTTP 401. Given the embedded engine, the server
supervises it: /health reports it (503 while it is down) and a dead engine is restarted.

It also serves the reference web app (/app/, handlers/static/app) with its configuration
(/app/config.json) and, for `livecoins serve` only, /dev/tokens: dev tokens of a few demo
users for the app's sign-in picker. That route exists on this local server alone, never in
the Lambda (test enforced), and answers loopback clients only.

streamDigest subscriptions are shared (`DigestGroups`): those with the same document and
variables are executed once per digest, the message serialised once and queued to each of
them, so 10,000 viewers of one stream cost one execution a second, not 10,000 (`make bench`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler
from cross_web import HTTPException
from graphql import FieldNode, OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLError
from strawberry.aiohttp.views import GraphQLView
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from handlers.cors import cors_headers
from handlers.dev_tokens import dev_token_picker
from handlers.http_rules import HttpRules
from infra.services import Services
from resolvers.context import Context
from resolvers.identity import Identity
from schema import schema
from schema.limits import CachedValidation

if TYPE_CHECKING:
    from infra.engine import LocalEngine

STATIC = Path(__file__).resolve().parent / "static"
APP = STATIC / "app"
IDENTITY = web.RequestKey("identity", Identity)
SERVICES = web.AppKey("services", Services)


log = logging.getLogger("livecoins")
MEMBER_QUEUE = 16  # digests a viewer may fall behind (16 s) before it is dropped


@functools.lru_cache(maxsize=512)
def is_digest_subscription(query: str, operation_name: str | None) -> bool:
    """Whether the document's operation subscribes to streamDigest (its one root field)."""
    try:
        document = parse(query)
    except GraphQLError:
        return False
    operations = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name is not None and d.name.value == operation_name))
    ]
    if len(operations) != 1 or operations[0].operation != OperationType.SUBSCRIPTION:
        return False
    roots = operations[0].selection_set.selections
    return (
        len(roots) == 1
        and isinstance(roots[0], FieldNode)
        and roots[0].name.value == ("streamDigest")
    )


class _Member:
    """One viewer's streamDigest subscription in a group: what it has yet to be sent."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(MEMBER_QUEUE)

    def offer(self, kind: str, body: Any) -> None:
        try:
            self.queue.put_nowait((kind, body))
        except asyncio.QueueFull:  # fell too far behind: what it has is dropped for the end
            while not self.queue.empty():
                self.queue.get_nowait()
            slow = GraphQLError("This subscriber fell too far behind.").formatted
            self.queue.put_nowait(("error", [slow]))


class _DigestGroup:
    """The streamDigest subscriptions of one document and variables: executed once per
    digest, anonymously (a digest is the same for everyone), until the stream ends or the
    last member leaves."""

    def __init__(self, groups: DigestGroups, key: tuple[str, str, str | None]) -> None:
        self.groups, self.key = groups, key
        self.members: set[_Member] = set()
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def deliver(self, kind: str, body: Any = None) -> None:
        for member in list(self.members):
            member.offer(kind, body)

    async def run(self) -> None:
        query, variables, name = self.key
        view = self.groups.view
        try:
            context = Context(view.services, None)
            context.introspection = view.services.settings.introspection is not False
            source = await view.schema.stream(
                query,
                variable_values=json.loads(variables),
                context_value=context,
                operation_name=name,
            )
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        self.finish("error", [e.formatted for e in result.errors or []])
                        return
                    if not isinstance(result, ExecutionResult):
                        error = GraphQLError("Incremental delivery is not supported here")
                        self.finish("error", [error.formatted])
                        return
                    first = False
                    payload: dict[str, Any] = {"data": result.data}
                    if result.errors:
                        payload["errors"] = [e.formatted for e in result.errors]
                    self.deliver("next", view.encode_json(payload))
            self.finish("complete")
        except Exception:
            log.exception("a shared streamDigest subscription failed")
            self.finish("error", [{"message": "Internal error."}])
            raise

    def finish(self, kind: str, body: Any = None) -> None:
        self.closed = True
        self.groups.forget(self)
        self.deliver(kind, body)

    def leave(self, member: _Member) -> None:
        self.members.discard(member)
        if not self.members and not self.closed:
            self.closed = True
            self.groups.forget(self)
            if self.task is not None:
                self.task.cancel()


class DigestGroups:
    """This server's streamDigest subscriptions, grouped by document and variables."""

    def __init__(self, view: LocalGraphQLView) -> None:
        self.view = view
        self.groups: dict[tuple[str, str, str | None], _DigestGroup] = {}

    def join(self, operation: Operation[Context, None], member: _Member) -> _DigestGroup:
        variables = json.dumps(operation.variables or {}, sort_keys=True)
        key = (operation.query, variables, operation.operation_name)
        group = self.groups.get(key)
        if group is None or group.closed:
            group = self.groups[key] = _DigestGroup(self, key)
            group.task = asyncio.create_task(group.run())
            group.task.add_done_callback(_retrieved)
        group.members.add(member)
        return group

    def forget(self, group: _DigestGroup) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # logged where it was raised


class LocalTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws as Strawberry speaks it, with streamDigest subscriptions served
    from their group (one execution per digest for every viewer of a stream)."""

    view: LocalGraphQLView

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        if not is_digest_subscription(operation.query, operation.operation_name):
            await super().run_operation(operation)
            return
        member = _Member()
        group = self.view.digest_groups.join(operation, member)
        ws = getattr(self.websocket, "ws", None)
        prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        try:
            while True:
                kind, body = await member.queue.get()
                if kind == "next" and ws is not None and not operation.completed:
                    await ws.send_str(prefix + body + "}")
                elif kind == "next":
                    await operation.send_operation_message(
                        {"id": operation.id, "type": "next", "payload": json.loads(body)}
                    )
                elif kind == "error":
                    await operation.send_operation_message(
                        {"id": operation.id, "type": "error", "payload": body}
                    )
                    return
                else:
                    await operation.send_operation_message({"id": operation.id, "type": "complete"})
                    return
        except ConnectionError:  # the viewer went away while it was being sent to
            return
        finally:
            group.leave(member)


class LocalGraphQLView(HttpRules, GraphQLView[Context, None]):
    graphql_transport_ws_handler_class = LocalTransportWSHandler

    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            schema=schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=settings.cors_origins,
            # graphql-transport-ws: no connection_init in time closes with 4408; past the cap
            # a subscribe gets an `error` message for its id (the connection stays open).
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.ws_max_operations,
        )
        self.services = services
        self.digest_groups = DigestGroups(self)
        self._ide = (STATIC / "graphiql.html").read_text()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self.run(request=request)
        except HTTPException as error:  # the same JSON errors as the Lambda's
            body = {"errors": [{"message": error.reason}]}
            return web.json_response(body, status=error.status_code)

    async def create_websocket_response(
        self, request: web.Request, subprotocol: str | None
    ) -> web.WebSocketResponse:
        # A message over the body limit closes the connection with 1009 (message too big).
        ws = web.WebSocketResponse(
            protocols=[subprotocol] if subprotocol else [],
            max_msg_size=self.services.settings.max_body_bytes,
        )
        await ws.prepare(request)
        return ws

    async def get_context(self, request: web.Request, response: object) -> Context:
        context = Context(self.services, request.get(IDENTITY))
        context.introspection = self.services.settings.introspection is not False
        return context

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        return web.Response(text=self._ide, content_type="text/html")


class RateLimiter:
    """A token bucket per client address: `rate` requests a second, bursts of `burst`.
    Addresses idle long enough to have a full bucket are forgotten. rate 0: no limit."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if len(self._buckets) > 10_000:  # forget clients whose bucket has refilled
            refill = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1, now)
        return True


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"errors": [{"message": message}]}, status=401)


def verify_token(token: str, secret: str) -> Identity | None:
    """Claims of a valid HS256 token; raises jwt.InvalidTokenError (401) otherwise."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    return Identity.from_claims(claims)


def make_app(
    services: Services,
    engine: LocalEngine | None = None,
    on_engine_lost: Callable[[], None] | None = None,
    dev_tokens: bool = False,
) -> web.Application:
    """The app; with `engine`, it also supervises it and calls `on_engine_lost` if it gives up.
    `dev_tokens` adds /dev/tokens (`livecoins serve`)."""
    settings = services.settings

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        # webhooks verify their own senders (Google's push sends Google's OIDC token here)
        if header and not request.path.startswith("/webhooks/"):
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return _unauthorized("Authorization must be 'Bearer <token>'.")
            try:
                identity = verify_token(token.strip(), settings.jwt_secret)
            except jwt.ExpiredSignatureError:
                return _unauthorized("The token has expired.")
            except jwt.InvalidTokenError:
                return _unauthorized("The token is not valid.")
            if identity is None:
                return _unauthorized("The token has no usable sub claim.")
            request[IDENTITY] = identity
        return await handler(request)

    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not limiter.allow(request.remote or ""):
            body = {"errors": [{"message": "Too many requests from this client; slow down."}]}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        return await handler(request)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return web.Response(
                status=204, headers=cors_headers(origin, settings.cors_origins, True)
            )
        try:
            response = await handler(request)
        except web.HTTPException as error:
            if error.status == 413:
                body = {"errors": [{"message": "Request body is too large"}]}
                response = web.json_response(body, status=413)
            else:
                raise
        if not response.prepared:
            response.headers.update(cors_headers(origin, settings.cors_origins))
        return response

    app = web.Application(
        client_max_size=settings.max_body_bytes, middlewares=[rate_limit, cors, authenticate]
    )
    app[SERVICES] = services
    app.router.add_route("*", "/graphql", LocalGraphQLView(services))
    app.router.add_static("/static/graphiql", STATIC / "graphiql")

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/graphql")

    async def favicon(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "favicon.ico", headers={"Content-Type": "image/x-icon"})

    async def app_page(request: web.Request) -> web.StreamResponse:
        if request.path == "/app":
            raise web.HTTPFound("/app/")
        return web.FileResponse(APP / "index.html", headers={"Cache-Control": "no-cache"})

    async def app_config(request: web.Request) -> web.Response:
        # The app's configuration, here the local server itself (docs/app.md: the AWS form).
        config = {"mode": "local", "graphqlUrl": "/graphql", "publicGraphqlUrl": "/graphql"}
        if dev_tokens:
            config["devTokensUrl"] = "/dev/tokens"
        return web.json_response(config, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/app", app_page)
    app.router.add_get("/app/", app_page)
    app.router.add_get("/app/config.json", app_config)
    app.router.add_static("/app", APP)
    if dev_tokens:
        app.router.add_get("/dev/tokens", dev_token_picker(settings.jwt_secret))

    async def health(request: web.Request) -> web.Response:
        if engine is None:
            return web.Response(text=json.dumps({"status": "ok"}), content_type="application/json")
        state = await asyncio.to_thread(engine.status)
        body = {"status": "ok" if state == "up" else "unavailable", "engine": state}
        return web.json_response(body, status=200 if state == "up" else 503)

    async def supervisor(app: web.Application) -> AsyncIterator[None]:
        async def run(engine: LocalEngine) -> None:
            await engine.supervise()
            if on_engine_lost:
                on_engine_lost()

        task = asyncio.create_task(run(engine)) if engine else None
        yield
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def worker_threads(app: web.Application) -> None:
        # DynamoDB calls run in threads; the default pool (cores + 4) would queue concurrent
        # requests behind six calls. Match botocore's connection pool instead.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="dynamodb")
        )
        # Large documents are validated here, one at a time, off the event loop (README
        # "Limits"): their CPU then delays other clients by GIL switches, not whole seconds.
        CachedValidation.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")

    async def stop_worker_threads(app: web.Application) -> None:
        pool, CachedValidation.pool = CachedValidation.pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    app.on_startup.append(worker_threads)
    app.on_cleanup.append(stop_worker_threads)
    app.cleanup_ctx.append(supervisor)
    app.router.add_get("/", root)
    app.router.add_get("/health", health)

    async def stripe_webhook(request: web.Request) -> web.Response:
        from handlers.webhooks import stripe_webhook as apply

        status, answer = await apply(
            services, await request.read(), request.headers.get("Stripe-Signature")
        )
        return web.json_response(answer, status=status)

    app.router.add_post("/webhooks/stripe", stripe_webhook)

    async def app_store_webhook(request: web.Request) -> web.Response:
        from handlers.webhooks import app_store_webhook as apply

        status, answer = await apply(services, await request.read())
        return web.json_response(answer, status=status)

    async def play_webhook(request: web.Request) -> web.Response:
        from handlers.webhooks import play_webhook as apply

        status, answer = await apply(
            services, await request.read(), request.headers.get("Authorization")
        )
        return web.json_response(answer, status=status)

    app.router.add_post("/webhooks/app-store", app_store_webhook)
    app.router.add_post("/webhooks/play", play_webhook)

    async def connect_webhook(request: web.Request) -> web.Response:
        from handlers.webhooks import connect_webhook as apply

        status, answer = await apply(
            services, await request.read(), request.headers.get("Stripe-Signature")
        )
        return web.json_response(answer, status=status)

    app.router.add_post("/webhooks/stripe-connect", connect_webhook)
    return app
