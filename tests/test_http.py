"""HTTP behaviour of both entrypoints: methods, bodies, limits, CORS, errors, tokens."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from infra.services import Services
from tests.clients import AiohttpClient, Client

GIFTS = json.dumps({"query": "{ gifts { id } }"})


async def test_get_query_works(api: Client) -> None:
    response = await api.request("GET", query={"query": "{ gifts { id } }"})
    assert response.status == 200
    assert len(response.json["data"]["gifts"]) == 10


async def test_lambda_base64_body(services: Services) -> None:
    from tests.clients import LambdaClient

    # API Gateway base64-encodes bodies it considers binary
    response = await LambdaClient(services).request("POST", GIFTS.encode())
    assert response.status == 200 and len(response.json["data"]["gifts"]) == 10


async def test_get_mutation_is_refused(api: Client, alice: dict[str, Any]) -> None:
    doc = 'mutation { updateProfile(input: {displayName: "x"}) { __typename } }'
    response = await api.request("GET", query={"query": doc}, claims=alice)
    assert response.status in (400, 405)


@pytest.mark.parametrize("body", ["{not json", json.dumps({"variables": {}}), "[]x"])
async def test_malformed_body_is_400(api: Client, body: str) -> None:
    response = await api.request("POST", body)
    assert response.status == 400


async def test_other_methods_are_405(api: Client) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        assert (await api.request(method, GIFTS)).status == 405


async def test_oversized_body_is_413(api: Client) -> None:
    padding = " " * (64 * 1024)
    response = await api.request("POST", json.dumps({"query": "{ gifts { id } }" + padding}))
    assert response.status == 413


async def test_internal_errors_are_masked(
    api: Client, alice: dict[str, Any], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret table name test-accounts")

    monkeypatch.setattr(services.accounts, "get", broken)
    response = await api.request("POST", json.dumps({"query": "{ me { id } }"}), claims=alice)
    assert response.status == 200
    error = response.json["errors"][0]
    assert error["message"] == "Internal error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in response.body and "Traceback" not in response.body


async def test_validation_errors_are_shown(api: Client) -> None:
    result = await api.gql("{ gifts { nope } }")
    assert "nope" in result["errors"][0]["message"]


async def test_depth_is_limited(api: Client, alice: dict[str, Any]) -> None:
    deep = "{ me " + "{ wallet " * 12 + "}" * 13
    result = await api.gql(deep, user=alice)
    assert result["errors"]


async def test_cors(services: Services, aiohttp_client: Any) -> None:
    import dataclasses

    from handlers.server import make_app
    from tests.clients import LambdaClient

    services.settings = dataclasses.replace(
        services.settings, cors_origins=("https://app.example",)
    )
    clients: list[Client] = [
        LambdaClient(services),
        AiohttpClient(await aiohttp_client(make_app(services)), ""),
    ]
    for client in clients:
        good = await client.request("POST", GIFTS, headers={"Origin": "https://app.example"})
        assert good.headers.get("Access-Control-Allow-Origin") == "https://app.example"
        bad = await client.request("POST", GIFTS, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in bad.headers
        pre = await client.request("OPTIONS", headers={"Origin": "https://app.example"})
        assert pre.status == 204
        assert "authorization" in pre.headers["Access-Control-Allow-Headers"]


async def test_local_server_rejects_bad_tokens(services: Services, aiohttp_client: Any) -> None:
    from handlers.server import make_app

    client = AiohttpClient(await aiohttp_client(make_app(services)), services.settings.jwt_secret)
    forged = AiohttpClient(client.client, "another-secret-of-enough-length-000")
    expired = client.token({"sub": "alice"}, expires_in=-10)
    for header in (
        f"Bearer {forged.token({'sub': 'alice'})}",
        f"Bearer {expired}",
        "Bearer not.a.jwt",
        "Basic abc",
    ):
        response = await client.request("POST", GIFTS, headers={"Authorization": header})
        assert response.status == 401, header
    ok = await client.request(
        "POST", GIFTS, headers={"Authorization": f"Bearer {client.token({'sub': 'alice'})}"}
    )
    assert ok.status == 200


async def test_graphiql_is_served_offline(services: Services, aiohttp_client: Any) -> None:
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services))
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    html = await page.text()
    assert page.status == 200 and "graphiql.min.js" in html and "unpkg" not in html
    asset = await client.get("/static/graphiql/graphiql.min.js")
    assert asset.status == 200


async def test_admin_groups_as_flattened_string(services: Services) -> None:
    from tests.clients import LambdaClient, claims_for

    client = LambdaClient(services)  # sends cognito:groups as "[admin]" like the HTTP API
    doc = 'mutation { upsertGift(input: {id: "x", name: "X", coins: 1, diamonds: 1}) { id } }'
    assert (await client.data(doc, user=claims_for("root", admin=True)))["upsertGift"]["id"] == "x"


def test_deployed_handler_logs_structured_json(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function named in template.yaml: built from the environment, logging JSON lines
    with the request's correlation id, and masking what went wrong from the client."""
    from types import SimpleNamespace

    import handlers.lambda_api as lambda_api
    from tests.clients import load_event

    monkeypatch.setenv("LIVECOINS_TABLE_PREFIX", services.settings.table_prefix)
    monkeypatch.setattr(lambda_api, "_default", None)
    context = SimpleNamespace(
        function_name="GraphQLFunction",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:1:function:f",
        aws_request_id="req-1",
    )
    event = load_event("apiGatewayProxyEventV2")
    event["body"] = json.dumps({"query": "{ gifts { id } }"})
    ok = lambda_api.handler(event, context)
    assert ok["statusCode"] == 200 and len(json.loads(ok["body"])["data"]["gifts"]) == 10

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(Services, "build", lambda *a, **k: services)
    monkeypatch.setattr(services.accounts, "get", broken)
    monkeypatch.setattr(lambda_api, "_default", None)
    event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "alice"}}}
    event["body"] = json.dumps({"query": "{ me { id } }"})
    stream = io.StringIO()
    previous = lambda_api.logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        failed = json.loads(lambda_api.handler(event, context)["body"])
    finally:
        lambda_api.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    assert failed["errors"][0]["message"] == "Internal error."
    assert "secret" not in json.dumps(failed)
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    error = next(line for line in logged if line["level"] == "ERROR")
    assert error["correlation_id"] == "id" and "secret detail" in error["exception"]
