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
from tests.test_local_engine import engine, engine_services  # noqa: F401 - fixtures
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
    engine_services: Services,  # noqa: F811
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
