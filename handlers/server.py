"""Local server: aiohttp with Strawberry's GraphQLView, GraphiQL served from this package.

Tokens are HS256 JWTs signed with LIVECOINS_JWT_SECRET (local only). No token: anonymous;
a bad signature or an expired token: HTTP 401. Given the embedded engine, the server
supervises it: /health reports it (503 while it is down) and a dead engine is restarted.

It also serves the reference web app (/app/, handlers/static/app) with its configuration
(/app/config.json) and, for `livecoins serve` only, /dev/tokens: dev tokens of a few demo
users for the app's sign-in picker. That route exists on this local server alone, never in
the Lambda (test enforced), and answers loopback clients only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler
from cross_web import HTTPException
from strawberry.aiohttp.views import GraphQLView
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

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


class LocalGraphQLView(HttpRules, GraphQLView[Context, None]):
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
