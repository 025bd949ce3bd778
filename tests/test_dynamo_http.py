"""DynamoDB over aiohttp (infra/dynamo_http.py, the local server's transport) answers every
call as botocore's own HTTP stack does: results, failed conditions with the item they saw,
cancelled transactions with their reasons, the events the tests hook, and faults."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from infra.config import Settings
from infra.dynamo import Dynamo, TransactionCancelled, Unavailable, new_client
from infra.dynamo_http import AiohttpTransport
from infra.engine import free_port
from infra.tables import ensure_tables
from tests.conftest import CallCounter

pytestmark = pytest.mark.engine


@pytest.fixture
async def both(engine: str) -> AsyncIterator[tuple[Dynamo, Dynamo]]:
    """The same tables through botocore's threads and through aiohttp."""
    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine, table_prefix="http-")
    threads = Dynamo(settings)
    ensure_tables(threads.client, settings)
    http = Dynamo(settings, client=new_client(settings))
    async with aiohttp.ClientSession() as session:
        http.invoke = AiohttpTransport(http.client, session).invoke
        yield threads, http


def plain(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


async def test_every_call_answers_as_botocores_own(both: tuple[Dynamo, Dynamo]) -> None:
    threads, http = both
    for n, dynamo in enumerate((threads, http)):
        await dynamo.put("accounts", {"id": f"a{n}", "coins": 5, "tags": ["x"], "m": {"k": 1}})
    assert await http.get("accounts", {"id": "a0"}) == await threads.get("accounts", {"id": "a0"})
    assert await http.get("accounts", {"id": "a1"}, consistent=True) == {
        "id": "a1",
        "coins": 5,
        "tags": ["x"],
        "m": {"k": 1},
    }
    assert await http.get("accounts", {"id": "nobody"}) is None
    # a failed condition returns the item it saw (ALL_OLD)
    assert await http.put_if_absent("accounts", {"id": "a0", "coins": 9}, "id") == {
        "id": "a0",
        "coins": 5,
        "tags": ["x"],
        "m": {"k": 1},
    }
    assert await http.update(
        "accounts", {"id": "a0"}, "SET coins = :c", values={":c": 1}, condition="coins > :c"
    ) == {"id": "a0", "coins": 1, "tags": ["x"], "m": {"k": 1}}
    assert (
        await http.update(
            "accounts", {"id": "a0"}, "SET coins = :c", values={":c": 1}, condition="coins > :c"
        )
        is None
    )
    found = await http.batch_get("accounts", [{"id": "a0"}, {"id": "a1"}, {"id": "zz"}])
    assert sorted(i["id"] for i in found) == ["a0", "a1"]
    for n in range(5):
        item = {"accountId": "q", "entryId": f"tx_{n}", "kind": "PURCHASE", "coins": n}
        await http.put("ledger", item)
    page, more = await http.page(
        "ledger", key=("accountId", "q"), sort="entryId", first=2, after=None
    )
    assert [i["entryId"] for i in page] == ["tx_4", "tx_3"] and more
    kwargs = {
        "TableName": http.table("ledger"),
        "KeyConditionExpression": "accountId = :q",
        "ExpressionAttributeValues": {":q": {"S": "q"}},
    }
    assert plain(await http.invoke("query", kwargs)) == plain(await threads.invoke("query", kwargs))


async def test_a_cancelled_transaction_has_its_reasons_and_items(
    both: tuple[Dynamo, Dynamo],
) -> None:
    _, http = both
    await http.put("accounts", {"id": "poor", "coins": 1})
    with pytest.raises(TransactionCancelled) as cancelled:
        await http.transact(
            [
                http.put_action("accounts", {"id": "new"}, condition="attribute_not_exists(id)"),
                http.update_action(
                    "accounts",
                    {"id": "poor"},
                    "ADD coins :m",
                    condition="coins >= :n",
                    values={":m": -5, ":n": 5},
                ),
            ]
        )
    assert cancelled.value.reasons == ["None", "ConditionalCheckFailed"]
    assert cancelled.value.failed(1) and not cancelled.value.failed(0)
    assert cancelled.value.items == [None, {"id": "poor", "coins": 1}]
    await http.transact([http.put_action("accounts", {"id": "new"})])
    assert await http.get("accounts", {"id": "new"}) == {"id": "new"}


async def test_the_events_tests_hook_are_emitted(both: tuple[Dynamo, Dynamo]) -> None:
    _, http = both
    calls = CallCounter(http.client)
    seen: list[str] = []
    http.client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: seen.append("params")
    )
    await http.get("accounts", {"id": "x"})
    await http.batch_get("accounts", [{"id": "x"}])
    assert calls.counts() == {"GetItem": 1, "BatchGetItem": 1}
    assert seen == ["params"]


async def test_an_engine_that_does_not_answer_is_retried_until_the_deadline() -> None:
    settings = Settings(
        dynamodb_endpoint=f"http://127.0.0.1:{free_port()}", retry_budget_seconds=0.3
    )
    dynamo = Dynamo(settings)
    async with aiohttp.ClientSession() as session:
        dynamo.invoke = AiohttpTransport(dynamo.client, session).invoke
        with pytest.raises(Unavailable):
            await dynamo.get("accounts", {"id": "x"})
    assert dynamo.faults["EndpointConnectionError"] >= 2
