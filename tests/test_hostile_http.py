"""Issue 9, hostile clients at the HTTP edge: bodies, API Gateway events, the caller's own
variable mistakes and subscriptions over HTTP, through both entrypoints."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from infra.services import Services
from tests.clients import AiohttpClient, Client, LambdaClient, lambda_event

GIFTS = json.dumps({"query": "{ gifts { id } }"})


BAD_BODIES: list[str | bytes] = ['"hello"', "42", "null", "true", b"\xff\xfe{}", "[" * 30_000]


async def test_bodies_that_are_not_a_json_object_are_400(api: Client) -> None:
    for body in BAD_BODIES:
        # GIVEN a body that is not a JSON object WHEN it is posted THEN a 400 says what is wrong
        response = await api.request("POST", body)  # bytes reach the Lambda base64-encoded
        assert response.status == 400, (body[:20], response.body)
        message = response.json["errors"][0]["message"]
        assert message and "Internal" not in message and "Traceback" not in response.body


async def test_local_server_errors_are_json_like_the_lambdas(
    services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    client = AiohttpClient(await aiohttp_client(make_app(services)), "")
    response = await client.request("POST", "42")
    assert response.status == 400
    assert response.json == {"errors": [{"message": response.json["errors"][0]["message"]}]}


def _no_request_context(event: dict[str, Any]) -> None:
    del event["requestContext"]


def _no_http(event: dict[str, Any]) -> None:
    del event["requestContext"]["http"]


def _claims(value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": value}}

    return change


def _garbage_base64(event: dict[str, Any]) -> None:
    event["body"], event["isBase64Encoded"] = "!!not base64!!", True


def _headers(value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        event["headers"] = value

    return change


def _body(value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        event["body"] = value

    return change


MALFORMED_EVENTS = [
    _no_request_context,
    _no_http,
    _claims("sub=alice"),
    _claims(["alice"]),
    _garbage_base64,
    _headers("x"),
    _headers({"content-type": 7}),
    _body({"query": "{ gifts { id } }"}),
]


async def test_malformed_api_gateway_events_are_400(services: Services) -> None:
    from handlers.lambda_api import make_async_handler

    handle = make_async_handler(services)
    for change in MALFORMED_EVENTS:
        event = lambda_event("POST", GIFTS)
        change(event)
        response = await handle(event)
        assert response["statusCode"] == 400, (change, response)
        assert "Internal" not in response["body"]


def test_deployed_handler_refuses_events_that_are_not_objects(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function named in template.yaml, decorator included, given a list and a string."""
    from types import SimpleNamespace

    import handlers.lambda_api as lambda_api

    monkeypatch.setattr(lambda_api, "_default", lambda_api.make_handler(services))
    context = SimpleNamespace(
        function_name="f", memory_limit_in_mb=1, invoked_function_arn="a", aws_request_id="r"
    )
    for event in ([], "x", {"requestContext": "x"}):
        assert lambda_api.handler(event, context)["statusCode"] == 400


async def test_variable_mistakes_are_the_callers_not_internal(
    api: Client, alice: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    doc = "query T($d: Int!) { me { transactions(first: $d) { edges { cursor } } } }"
    for value in (2**53, 1.5, "ten", [[1]], None, {"a": 1}):
        # GIVEN an Int! variable given a value that is not a 32-bit integer
        with caplog.at_level(logging.WARNING, logger="livecoins"):
            result = await api.gql(doc, {"d": value}, alice)
        # THEN graphql-core's own message comes back, unmasked, and nothing is logged as an error
        message = result["errors"][0]["message"]
        assert message.startswith("Variable '$d'"), message
        assert "Internal error." not in json.dumps(result)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_subscription_over_http_is_400_saying_it_needs_a_websocket(api: Client) -> None:
    doc = 'subscription { giftFeed(streamId: "str_x") { id } }'
    for method, kwargs in (
        ("POST", {"body": json.dumps({"query": doc})}),
        ("GET", {"query": {"query": doc}}),
    ):
        response = await api.request(method, **kwargs)
        assert response.status == 400, (method, response.body)
        assert "WebSocket" in response.json["errors"][0]["message"]


async def test_lambda_refuses_a_token_without_a_usable_sub(services: Services) -> None:
    response = await LambdaClient(services).request("POST", GIFTS, claims={"sub": "a#b"})
    assert response.status == 401


async def test_local_rate_limit_per_client(services: Services, aiohttp_client: Any) -> None:
    import dataclasses

    from handlers.server import make_app

    services.settings = dataclasses.replace(
        services.settings, rate_limit_per_second=1, rate_limit_burst=3
    )
    client = AiohttpClient(await aiohttp_client(make_app(services)), "")
    statuses = [(await client.request("POST", GIFTS)).status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
