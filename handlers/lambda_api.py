"""AWS Lambda entrypoint: GraphQL over API Gateway HTTP API (payload format 2.0).

API Gateway's JWT authorizer has verified the Cognito token; its claims arrive in
requestContext.authorizer.jwt.claims. Routes without the authorizer are anonymous.
Strawberry's AsyncBaseHTTPView gives the same HTTP semantics as the local aiohttp server
(GET queries, POST JSON, 400 for malformed bodies, 405 for other methods and GET mutations).
aiohttp and the local engine stay out of this module's imports (cold start).

The imports run with Python's cyclic garbage collector off: they build tens of thousands of
objects and almost no garbage, so the collections they would trigger (over a hundred) are a
tenth of the import's CPU (`make bench`, cold start). What they built is then frozen (kept out
of every later collection, which requests also gain from) and the collector turned back on.
"""

# ruff: noqa: E402 - the collector goes off before the imports
from __future__ import annotations

import gc

gc.disable()

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeGuard, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from cross_web import AsyncHTTPRequestAdapter, FormData, HTTPException
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.async_base_view import AsyncBaseHTTPView

from handlers.cors import cors_headers
from handlers.http_rules import HttpRules
from handlers.metrics import MetricsPublisher
from infra.config import Settings
from infra.services import Services
from resolvers.context import Context
from resolvers.identity import Identity
from schema import schema

# Powertools' Logger owns the "livecoins" logger: every log line (the error policy's too) is
# structured JSON with the Lambda context and the API Gateway request id.
logger = Logger(service="livecoins")
Event = dict[str, Any]
LambdaResponse = dict[str, Any]


class ApiGatewayV2Request(AsyncHTTPRequestAdapter):
    """An API Gateway v2 event that `malformed` has checked, read as a plain dict (Powertools'
    event classes cost a cold start's import and CPU on every request for a few lookups)."""

    def __init__(self, event: Event) -> None:
        self.event = event
        self._headers = _headers(event)

    @property
    def method(self) -> Any:
        return _method(self.event)

    @property
    def query_params(self) -> Mapping[str, Any]:
        return self.event.get("queryStringParameters") or {}

    @property
    def path_params(self) -> Mapping[str, Any]:
        return self.event.get("pathParameters") or {}

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def content_type(self) -> str | None:
        return self._headers.get("content-type")

    async def get_body(self) -> bytes:
        body = self.event.get("body") or ""
        if self.event.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=True)
            except binascii.Error as error:
                raise HTTPException(400, "The request body is not valid base64.") from error
        return body.encode("utf-8", "surrogatepass")

    async def get_form_data(self) -> FormData:
        raise HTTPException(400, "Unsupported content type")

    @property
    def url(self) -> str:
        domain = self.event["requestContext"].get("domainName", "")
        return f"https://{domain}{self.event.get('rawPath', '')}"

    @property
    def cookies(self) -> Mapping[str, str]:
        return {}


class LambdaGraphQLView(
    HttpRules,
    AsyncBaseHTTPView[Event, LambdaResponse, LambdaResponse, Any, Any, Context, None],
):
    allow_queries_via_get = True
    request_adapter_class = ApiGatewayV2Request

    def __init__(self, services: Services) -> None:
        self.schema = schema
        self.services = services
        self.graphql_ide = None
        self.multipart_uploads_enabled = False
        self.protocols = ()
        self.allowed_origins = ()

    async def get_context(self, request: Event, response: LambdaResponse) -> Context:
        claims = _claims(request)
        identity = Identity.from_claims(claims) if claims else None
        if claims and identity is None:
            raise HTTPException(401, "The token has no usable sub claim.")
        context = Context(self.services, identity)
        context.introspection = self.services.settings.introspection is True
        return context

    async def get_root_value(self, request: Event) -> None:
        return None

    async def get_sub_response(self, request: Event) -> LambdaResponse:
        return {"statusCode": 200, "headers": {}}

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: LambdaResponse,
    ) -> LambdaResponse:
        return {
            "statusCode": sub_response["statusCode"],
            "headers": {**sub_response["headers"], "Content-Type": "application/json"},
            "body": json.dumps(response_data),
        }

    async def render_graphql_ide(self, request: Event) -> LambdaResponse:
        raise HTTPException(404, "Not Found")

    async def create_streaming_response(
        self,
        request: Event,
        stream: Callable[[], AsyncGenerator[str, None]],
        sub_response: LambdaResponse,
        headers: Mapping[str, str],
    ) -> LambdaResponse:
        raise HTTPException(400, "Streaming is not supported on this endpoint")

    def is_websocket_request(self, request: Event) -> TypeGuard[Any]:
        return False

    async def pick_websocket_subprotocol(self, request: Any) -> str | None:
        return None

    async def create_websocket_response(self, request: Any, subprotocol: str | None) -> Any:
        raise HTTPException(400, "WebSockets are not supported on this endpoint")

    def get_websocket_headers(self, request: Any) -> Mapping[str, str]:
        return {}

    async def reject_websocket(self, request: Any) -> LambdaResponse:
        raise HTTPException(403, "Forbidden")


def _headers(event: Event) -> dict[str, str]:
    return {k.lower(): v for k, v in (event.get("headers") or {}).items()}


def _method(event: Event) -> str:
    return str(event["requestContext"]["http"]["method"]).upper()


def _claims(event: Event) -> dict[str, Any]:
    """The JWT authorizer's claims ({} on routes without it); `malformed` has checked them."""
    authorizer = event["requestContext"].get("authorizer")
    jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
    claims = jwt.get("claims") if isinstance(jwt, dict) else None
    return claims or {}


def _is_str_map(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    )


def malformed(event: Any) -> str | None:
    """What is wrong with an event that is not an API Gateway v2 HTTP event, or None."""
    if not isinstance(event, dict):
        return "The event is not an object."
    context = event.get("requestContext")
    if not isinstance(context, dict) or not isinstance(context.get("http"), dict):
        return "The event has no requestContext.http."
    if not isinstance(context["http"].get("method"), str):
        return "The event has no requestContext.http.method."
    if not _is_str_map(event.get("headers")) or not _is_str_map(event.get("queryStringParameters")):
        return "The event's headers and query parameters must be maps of strings."
    if not isinstance(event.get("body") or "", str):
        return "The event's body must be a string."
    authorizer = context.get("authorizer")
    if authorizer is not None:
        jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
        claims = jwt.get("claims") if isinstance(jwt, dict) else None
        if not isinstance(claims, dict | None):
            return "The authorizer's claims must be an object."
    return None


def _error(status: int, message: str) -> LambdaResponse:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"errors": [{"message": message}]}),
    }


WEBHOOKS = ("/webhooks/stripe", "/webhooks/app-store", "/webhooks/play")


async def _webhook(
    services: Services, path: str, event: Event, headers: dict[str, str]
) -> LambdaResponse:
    """The payment processor's and the stores' webhooks (handlers/webhooks.py), imported on
    first use."""
    from handlers import webhooks

    if _method(event) != "POST":
        return _error(405, "Method not allowed")
    payload = _raw_body(event)
    if payload is None:
        return _error(400, "The body is not valid base64")
    if path == "/webhooks/stripe":
        answer = await webhooks.stripe_webhook(services, payload, headers.get("stripe-signature"))
    elif path == "/webhooks/app-store":
        answer = await webhooks.app_store_webhook(services, payload)
    else:
        answer = await webhooks.play_webhook(services, payload, headers.get("authorization"))
    return {
        "statusCode": answer[0],
        "headers": {"Content-Type": "application/json"},
        "body": webhooks.body(answer),
    }


def _raw_body(event: Event) -> bytes | None:
    """A webhook's body as sent (signatures are over these bytes); None if not valid base64."""
    raw = event.get("body") or ""
    try:
        return (
            base64.b64decode(raw, validate=True)
            if event.get("isBase64Encoded")
            else raw.encode("utf-8", "surrogatepass")
        )
    except (binascii.Error, ValueError):
        return None


async def _connect_webhook(services: Services, event: Event) -> LambdaResponse:
    """The payouts processor's webhook (Stripe Connect, its own signing secret)."""
    from handlers.webhooks import body, connect_webhook

    if _method(event) != "POST":
        return _error(405, "Method not allowed")
    payload = _raw_body(event)
    if payload is None:
        return _error(400, "The body is not valid base64")
    answer = await connect_webhook(services, payload, _headers(event).get("stripe-signature"))
    return {
        "statusCode": answer[0],
        "headers": {"Content-Type": "application/json"},
        "body": body(answer),
    }


def make_async_handler(services: Services) -> Callable[[Event], Awaitable[LambdaResponse]]:
    """The GraphQL handler as a coroutine function (one API Gateway v2 event -> response);
    `make_handler` runs it on the function's event loop, the fault simulator on its own."""
    view = LambdaGraphQLView(services)
    settings = services.settings

    async def respond(event: Event) -> LambdaResponse:
        if problem := malformed(event):
            return _error(400, problem)
        headers = _headers(event)
        method = _method(event)
        origin = headers.get("origin")
        raw_path = event.get("rawPath")
        if isinstance(raw_path, str) and raw_path.rstrip("/").endswith("/webhooks/stripe-connect"):
            return await _connect_webhook(services, event)
        if isinstance(raw_path, str):
            for path in WEBHOOKS:
                if raw_path.rstrip("/").endswith(path):
                    return await _webhook(services, path, event, headers)
        if isinstance(raw_path, str) and raw_path.rstrip("/").endswith("/health"):
            # Liveness of the function itself; DynamoDB's health is AWS's to report.
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"status": "ok"}),
            }
        if method == "OPTIONS":
            return {"statusCode": 204, "headers": cors_headers(origin, settings.cors_origins, True)}
        body = event.get("body") or ""
        size = (
            len(body) * 3 // 4
            if event.get("isBase64Encoded")
            else len(body.encode("utf-8", "surrogatepass"))
        )
        if size > settings.max_body_bytes:
            response = _error(413, "Request body is too large")
        else:
            try:
                response = await view.run(event)
            except HTTPException as error:
                response = _error(error.status_code, error.reason)
        response["headers"].update(cors_headers(origin, settings.cors_origins))
        return response

    async def handle(event: Event) -> LambdaResponse:
        try:
            return await respond(event)
        except Exception:
            logger.exception("unhandled error in the GraphQL handler")
            return _error(500, "Internal error.")

    return handle


def make_handler(services: Services) -> Callable[[Event, Any], LambdaResponse]:
    """A Lambda handler bound to `services`, with its own long-lived event loop; each
    invocation's metrics are published after its response is ready."""
    handle = make_async_handler(services)
    loop = asyncio.new_event_loop()
    metrics = MetricsPublisher(services)

    def handler(event: Event, context: Any) -> LambdaResponse:
        try:
            return loop.run_until_complete(handle(event))
        finally:
            metrics.publish()

    return handler


_default: Callable[[Event, Any], LambdaResponse] | None = None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event: Event, context: Any) -> LambdaResponse:
    """The function named in template.yaml; builds its services on the first invocation."""
    global _default
    if _default is None:
        _default = make_handler(Services.build(Settings.from_env()))
    return cast(LambdaResponse, _default(event, context))


gc.freeze()
gc.enable()
