"""One GraphQL client per entrypoint, so each behaviour test is written once.

Like Strawberry's own tests/http/clients: `LambdaClient` sends API Gateway v2 events to the
Lambda handler (claims as the JWT authorizer would pass them); `AiohttpClient` sends HTTP to
the local aiohttp server with an HS256 token minted from the same claims.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt

from handlers.dev_tokens import user_claims
from handlers.lambda_api import make_handler

EVENTS = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def claims_for(
    sub: str, birthdate: str | None = "1990-01-01", name: str | None = None, admin: bool = False
) -> dict[str, Any]:
    return user_claims(sub, birthdate, name, admin)


_TEMPLATE = load_event("apiGatewayProxyEventV2")


def lambda_event(
    method: str = "POST",
    body: str | bytes | None = None,
    query: dict[str, str] | None = None,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/graphql",
) -> dict[str, Any]:
    """An API Gateway v2 event, with claims as the HTTP API's JWT authorizer passes them."""
    event = {**_TEMPLATE, "headers": {**_TEMPLATE["headers"]}}
    event["requestContext"] = {
        **_TEMPLATE["requestContext"],
        "http": {**_TEMPLATE["requestContext"]["http"], "method": method, "path": path},
    }
    event["rawPath"] = path
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = urlencode(query)
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body or ""
    if claims is not None:
        jwt_claims = dict(claims)
        groups = jwt_claims.get("cognito:groups")
        if isinstance(groups, list):  # the HTTP API flattens arrays like this
            jwt_claims["cognito:groups"] = "[" + " ".join(groups) + "]"
        event["requestContext"]["authorizer"] = {"jwt": {"claims": jwt_claims, "scopes": None}}
    return event


class Client:
    kind = ""

    async def request(
        self,
        method: str = "POST",
        body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/graphql",
    ) -> Response:
        raise NotImplementedError

    async def gql(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST a GraphQL document; returns the response JSON (asserting HTTP 200)."""
        body = json.dumps({"query": document, "variables": variables or {}})
        response = await self.request("POST", body, claims=user)
        assert response.status == 200, (response.status, response.body)
        result: dict[str, Any] = response.json
        return result

    async def data(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Like gql, asserting there are no GraphQL errors."""
        result = await self.gql(document, variables, user)
        assert not result.get("errors"), result["errors"]
        data: dict[str, Any] = result["data"]
        return data


class LambdaClient(Client):
    kind = "lambda"

    def __init__(self, services: Any) -> None:
        self.services = services
        self.idle: list[Any] = []  # warm "containers", each serving one request at a time

    async def _invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        handler = self.idle.pop() if self.idle else make_handler(self.services)
        try:
            result: dict[str, Any] = await asyncio.to_thread(handler, event, None)
            return result
        finally:
            self.idle.append(handler)

    async def request(
        self,
        method: str = "POST",
        body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/graphql",
    ) -> Response:
        event = lambda_event(method, body, query, claims, headers, path)
        # Lambda runs one request per container at a time; a container is a thread here.
        result = await self._invoke(event)
        return Response(result["statusCode"], result.get("headers", {}), result.get("body", ""))


class AiohttpClient(Client):
    kind = "aiohttp"

    def __init__(self, test_client: Any, secret: str) -> None:
        self.client = test_client
        self.secret = secret

    def token(self, claims: dict[str, Any], expires_in: int = 3600) -> str:
        payload = {**claims, "exp": int(time.time()) + expires_in}
        return jwt.encode(payload, self.secret, algorithm="HS256")

    async def request(
        self,
        method: str = "POST",
        body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/graphql",
    ) -> Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if claims is not None:
            all_headers["Authorization"] = f"Bearer {self.token(claims)}"
        response = await self.client.request(
            method, path, data=body, params=query, headers=all_headers
        )
        text = await response.text()
        return Response(response.status, dict(response.headers), text)
