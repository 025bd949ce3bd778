"""DynamoDB calls sent by aiohttp on the local server's event loop.

`Dynamo` runs each botocore call in a worker thread (infra/dynamo.py). The local server serves
many clients at once on one event loop, and there that costs more than the call itself: 32
threads taking turns at the GIL, and urllib3 and http.client around each exchange. Here
botocore still builds, signs and parses every request, with the same events (`before-call`,
`provide-client-params`, `before-send`, `after-call`, which the tests hook), but the HTTP
exchange is aiohttp's, awaited on the loop: no thread. `make bench` (the local server rows)
has what it buys.

Only for an endpoint of our own (the local engine): against AWS the server keeps botocore's
own HTTP stack, whose requests are the ones AWS's signature checks are known to accept.
aiohttp is the local server's dependency: the Lambda never imports this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.endpoint import convert_to_response_dict
from botocore.exceptions import (
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.httpchecksum import apply_request_checksum, resolve_checksum_context

from infra.services import Services

SESSION = web.AppKey("dynamodb_http_session", aiohttp.ClientSession)


class _Body:
    """The raw body botocore's AWSResponse reads from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, *_: Any, **__: Any) -> bytes:
        return self.data

    def stream(self, **_: Any) -> Any:
        yield self.data


class AiohttpTransport:
    """`Dynamo.invoke` for one botocore DynamoDB client: botocore's `_make_api_call`, step by
    step, with aiohttp in place of its HTTP session (no retries: `Dynamo` retries)."""

    def __init__(self, client: Any, session: aiohttp.ClientSession) -> None:
        self.client = client
        self.session = session
        model = client.meta.service_model
        self.service_id = model.service_id.hyphenize()
        factory = client._endpoint._response_parser_factory
        self.parser = factory.create_parser(model.resolved_protocol)

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        client = self.client
        name = client.meta.method_to_api_mapping[operation]
        model = client.meta.service_model.operation_model(name)
        context: dict[str, Any] = {
            "client_region": client.meta.region_name,
            "client_config": client.meta.config,
            "has_streaming_input": model.has_streaming_input,
            "auth_type": model.resolved_auth_type,
            "unsigned_payload": model.unsigned_payload,
            "auth_options": client.meta.service_model.metadata.get("auth"),
        }
        params = client._emit_api_params(api_params=kwargs, operation_model=model, context=context)
        url, headers, properties = client._resolve_endpoint_ruleset(model, params, context)
        if properties:
            context["endpoint_properties"] = properties
        request_dict = client._convert_to_request_dict(
            api_params=params,
            operation_model=model,
            endpoint_url=url,
            context=context,
            headers=headers,
        )
        resolve_checksum_context(request_dict, model, params)
        events = client.meta.events
        _, answered = events.emit_until_response(
            f"before-call.{self.service_id}.{name}",
            model=model,
            params=request_dict,
            request_signer=client._request_signer,
            context=context,
        )
        if answered is not None:
            http, parsed = answered
        else:
            apply_request_checksum(request_dict)
            request = client._endpoint.create_request(request_dict, model)  # signed
            _, http = events.emit_until_response(
                f"before-send.{self.service_id}.{name}", request=request
            )
            if http is None:
                http = await self._send(request)
            parsed = self._parse(http, model)
        events.emit(
            f"after-call.{self.service_id}.{name}",
            http_response=http,
            parsed=parsed,
            model=model,
            context=context,
        )
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            raise client.exceptions.from_code(code)(parsed, name)
        return parsed

    def _parse(self, http: AWSResponse, model: Any) -> dict[str, Any]:
        """As botocore's Endpoint._do_get_response: the reply, then an error's modeled fields
        (a cancelled transaction's CancellationReasons)."""
        response = convert_to_response_dict(http, model)
        customized: dict[str, Any] = {}
        self.client.meta.events.emit(
            f"before-parse.{self.service_id}.{model.name}",
            operation_model=model,
            response_dict=response,
            customized_response_dict=customized,
        )
        parsed: dict[str, Any] = self.parser.parse(response, model.output_shape)
        parsed.update(customized)
        if http.status_code >= 300:
            self.client._endpoint._add_modeled_error_fields(response, parsed, model, self.parser)
        return parsed

    async def _send(self, request: Any) -> AWSResponse:
        headers = {
            key: value.decode("utf-8") if isinstance(value, bytes) else value
            for key, value in request.headers.items()
        }
        try:
            async with self.session.request(
                request.method, request.url, data=request.body, headers=headers
            ) as response:
                body = await response.read()
                status, received = response.status, HeadersDict(response.headers)
        except TimeoutError as error:  # botocore's own read timeout: transient in `Dynamo`
            raise ReadTimeoutError(endpoint_url=request.url, error=error) from error
        except aiohttp.ClientConnectorError as error:
            raise EndpointConnectionError(endpoint_url=request.url, error=error) from error
        except aiohttp.ClientError as error:  # a dropped connection, a bad reply
            raise HTTPClientError(error=error) from error
        return AWSResponse(request.url, status, received, _Body(body))


def serve_dynamodb_over_aiohttp(app: web.Application, services: Services) -> None:
    """While `app` runs, `services`' DynamoDB calls go through aiohttp on its loop (an endpoint
    of our own only, see above); at cleanup they go back to botocore's threads."""
    settings = services.settings
    dynamo = services.dynamo
    if settings.dynamodb_endpoint is None:
        return
    threads = dynamo.invoke

    async def start(app: web.Application) -> None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32),
            timeout=aiohttp.ClientTimeout(
                sock_connect=settings.dynamodb_connect_timeout,
                sock_read=settings.dynamodb_read_timeout,
            ),
        )
        app[SESSION] = session
        dynamo.invoke = AiohttpTransport(dynamo.client, session).invoke

    async def stop(app: web.Application) -> None:
        dynamo.invoke = threads
        await app[SESSION].close()
        await asyncio.sleep(0)  # let the connector close its transports

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
