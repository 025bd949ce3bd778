"""Issue 9 on the local server's WebSocket (graphql-transport-ws): giftFeed's ends, and the
limits: connection_init deadline (4408), operations per connection, message size (1009)."""

from __future__ import annotations

import dataclasses
from typing import Any

from infra.services import Services
from tests.clients import AiohttpClient, claims_for
from tests.gifting import END, go_live
from tests.test_gift_feed import FEED, wait_for_subscribers


async def _client(services: Services, aiohttp_client: Any, **limits: Any) -> Any:
    from handlers.server import make_app

    services.settings = dataclasses.replace(services.settings, **limits)
    return await aiohttp_client(make_app(services))


async def _connect(client: Any) -> Any:
    ws = await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    await ws.send_json({"type": "connection_init"})
    assert (await ws.receive_json(timeout=2))["type"] == "connection_ack"
    return ws


async def _subscribe(ws: Any, op: str, stream: str) -> None:
    payload = {"query": FEED, "variables": {"id": stream}}
    await ws.send_json({"id": op, "type": "subscribe", "payload": payload})


async def _until(ws: Any, op: str, *types: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=2)
        if message.get("id") == op and message["type"] in types:
            return message
        assert message["type"] in ("ping", "pong"), message


async def test_a_feed_for_a_stream_that_does_not_exist_ends_with_an_error(
    services: Services, aiohttp_client: Any
) -> None:
    ws = await _connect(await _client(services, aiohttp_client))
    for op, stream in (("1", "str_01HZZZZZZZZZZZZZZZZZZZZZZZ"), ("2", "x" * 500)):
        await _subscribe(ws, op, stream)
        message = await _until(ws, op, "next", "error")
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND", errors
        assert "Internal" not in errors[0]["message"]
        if message["type"] == "next":
            await _until(ws, op, "complete")
    await ws.close()


async def test_a_feed_completes_when_its_stream_ends(
    services: Services, aiohttp_client: Any
) -> None:
    client = await _client(services, aiohttp_client)
    http = AiohttpClient(client, services.settings.jwt_secret)
    creator = claims_for("creator")
    stream = await go_live(http, creator)
    ws = await _connect(client)
    await _subscribe(ws, "live", stream)
    await wait_for_subscribers(services, stream, 1)
    ended = (await http.data(END, {"id": stream}, creator))["endLiveStream"]
    assert ended["__typename"] == "LiveStreamEnded"
    await _until(ws, "live", "complete")
    await wait_for_subscribers(services, stream, 0)
    # and a feed asked for after the end completes at once
    await _subscribe(ws, "late", stream)
    await _until(ws, "late", "complete")
    await ws.close()


async def test_a_feed_notices_an_end_it_was_not_told_about(
    services: Services, aiohttp_client: Any, monkeypatch: Any
) -> None:
    import resolvers.feed

    monkeypatch.setattr(resolvers.feed, "RECHECK_SECONDS", 0.1)
    client = await _client(services, aiohttp_client)
    http = AiohttpClient(client, services.settings.jwt_secret)
    stream = await go_live(http, claims_for("creator"))
    ws = await _connect(client)
    await _subscribe(ws, "live", stream)
    await wait_for_subscribers(services, stream, 1)
    monkeypatch.setattr(services.feed, "end", lambda stream_id: None)  # another process ended it
    await http.data(END, {"id": stream}, claims_for("creator"))
    await _until(ws, "live", "complete")
    await ws.close()


async def test_connection_init_has_a_deadline(services: Services, aiohttp_client: Any) -> None:
    client = await _client(services, aiohttp_client, ws_init_timeout_seconds=0.2)
    ws = await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    message = await ws.receive(timeout=3)
    assert message.type.name == "CLOSE" and message.data == 4408, message


async def test_operations_per_connection_are_capped(
    services: Services, aiohttp_client: Any
) -> None:
    client = await _client(services, aiohttp_client, ws_max_operations=2)
    http = AiohttpClient(client, services.settings.jwt_secret)
    stream = await go_live(http, claims_for("creator"))
    ws = await _connect(client)
    await _subscribe(ws, "a", stream)
    await _subscribe(ws, "b", stream)
    await wait_for_subscribers(services, stream, 2)
    await _subscribe(ws, "c", stream)
    refused = await _until(ws, "c", "error")
    assert "limit" in refused["payload"][0]["message"]
    # the connection stays usable: completing one frees a place
    await ws.send_json({"id": "a", "type": "complete"})
    await wait_for_subscribers(services, stream, 1)
    await _subscribe(ws, "d", stream)
    await wait_for_subscribers(services, stream, 2)
    await ws.close()


async def test_messages_over_the_size_limit_close_the_connection(
    services: Services, aiohttp_client: Any
) -> None:
    client = await _client(services, aiohttp_client, max_body_bytes=4096)
    ws = await _connect(client)
    await ws.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": "{ gifts { id } }" + " " * 5000}}
    )
    message = await ws.receive(timeout=3)
    assert message.type.name == "CLOSE" and message.data == 1009, message


async def test_over_cost_documents_are_refused_over_websockets_too(
    services: Services, aiohttp_client: Any
) -> None:
    from tests.test_hostile_limits import ALIASES_20

    ws = await _connect(await _client(services, aiohttp_client))
    await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": ALIASES_20}})
    message = await _until(ws, "1", "error", "next")
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    await ws.close()
