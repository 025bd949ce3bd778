"""Benchmark (make bench): purchase latency on the local engine, empty vs 100,000 ledger rows.

Reported as a ratio measured in one run; no timing is asserted in `make test`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest

from infra.services import Services
from tests.clients import AiohttpClient, claims_for
from tests.test_purchases import buy

pytestmark = pytest.mark.benchmark
ROWS = 100_000


def fill_ledger(services: Services, rows: int) -> None:
    client = services.dynamo.client
    table = services.settings.table("ledger")
    for start in range(0, rows, 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "accountId": {"S": f"filler-{i % 1000}"},
                        "entryId": {"S": f"tx_{i:010d}"},
                        "kind": {"S": "PURCHASE"},
                        "coins": {"N": "0"},
                        "diamonds": {"N": "0"},
                        "referenceId": {"S": "x"},
                        "createdAt": {"S": "2026-01-01T00:00:00+00:00"},
                    }
                }
            }
            for i in range(start, min(start + 25, rows))
        ]
        client.batch_write_item(RequestItems={table: items})


async def median_purchase_ms(api: AiohttpClient, user: dict[str, Any], tag: str, n: int) -> float:
    timings = []
    for i in range(n):
        started = time.perf_counter()
        result = await buy(api, user, f"{tag}-{i}")
        timings.append((time.perf_counter() - started) * 1000)
        assert result["__typename"] == "CoinsPurchased"
    return statistics.median(timings)


async def test_purchase_latency_flat_with_ledger_size(
    engine_services: Services,
    aiohttp_client: Any,
) -> None:
    from handlers.server import make_app

    api = AiohttpClient(
        await aiohttp_client(make_app(engine_services)), engine_services.settings.jwt_secret
    )
    alice = claims_for("alice")
    await buy(api, alice, "warm")
    empty = await median_purchase_ms(api, alice, "empty", 50)
    started = time.perf_counter()
    await asyncio.to_thread(fill_ledger, engine_services, ROWS)
    fill_s = time.perf_counter() - started
    full = await median_purchase_ms(api, alice, "full", 50)
    print(
        f"\npurchase median: {empty:.2f} ms empty, {full:.2f} ms after {ROWS:,} ledger rows "
        f"(ratio {full / empty:.2f}); filling took {fill_s:.1f} s"
    )


async def test_gift_throughput_concurrency_ratio(
    engine_services: Services,
    aiohttp_client: Any,
) -> None:
    """Gifts a second to one stream through the local server: 1 client vs 16 at once."""
    from handlers.server import make_app
    from tests.gifting import go_live, send, top_up

    api = AiohttpClient(
        await aiohttp_client(make_app(engine_services)), engine_services.settings.jwt_secret
    )
    stream = await go_live(api, claims_for("star"))
    fans = [claims_for(f"fan{i:02d}") for i in range(16)]
    for fan in fans:
        await top_up(api, fan, 1, "coins-700")

    async def run(clients: list[dict[str, Any]], per_client: int, tag: str) -> float:
        async def one(fan: dict[str, Any]) -> None:
            for n in range(per_client):
                assert (await send(api, fan, f"{tag}{n}", stream=stream))["__typename"] == (
                    "GiftSent"
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(f) for f in clients))
        return len(clients) * per_client / (time.perf_counter() - started)

    serial = await run(fans[:1], 160, "s")
    parallel = await run(fans, 10, "p")
    print(
        f"\ngifts/s to one stream on the local engine: {serial:.0f} with 1 client, "
        f"{parallel:.0f} with 16 (ratio {parallel / serial:.2f})"
    )
