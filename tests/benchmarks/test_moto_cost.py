"""Benchmark (make bench): what one gift costs a test on moto and on the local engine.

100 gifts to one stream through the Lambda handler (`make_async_handler`), one after another,
on fresh tables each run: wall time per gift. moto deep-copies every table a transaction
touches (FACTS.md), so its cost grows with what the test has written; this is why the tests
that send many gifts (tests/test_gifts_engine.py) run on the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
from moto import mock_aws

from handlers.lambda_api import make_async_handler
from infra.config import Settings
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed
from tests.benchmarks.table import RUNS, Table
from tests.clients import claims_for, lambda_event
from tests.gifting import SEND, START

pytestmark = pytest.mark.benchmark
GIFTS = 100
BUY = """mutation { purchaseCoins(input: {packageId: "coins-350", paymentToken: "tok_visa",
  idempotencyKey: "buy"}) { __typename } }"""


async def ms_per_gift(services: Services) -> float:
    ensure_tables(services.dynamo.client, services.settings)
    await seed(services.catalog)
    handle = make_async_handler(services)

    async def data(document: str, variables: dict[str, Any], sub: str) -> dict[str, Any]:
        body = json.dumps({"query": document, "variables": variables})
        answer = json.loads(
            (await handle(lambda_event("POST", body, claims=claims_for(sub))))["body"]
        )
        assert not answer.get("errors"), answer
        return answer["data"]  # type: ignore[no-any-return]

    stream = (await data(START, {"title": "t"}, "star"))["startLiveStream"]["stream"]["id"]
    await data(BUY, {}, "fan")
    started = time.perf_counter()
    for n in range(GIFTS):
        gift = {"giftId": "rose", "streamId": stream, "idempotencyKey": f"g{n}"}
        sent = (await data(SEND, {"input": gift}, "fan"))["sendGift"]
        assert sent["__typename"] == "GiftSent", sent
    return (time.perf_counter() - started) / GIFTS * 1000


def test_a_gift_on_moto_and_on_the_engine(engine: str, bench: Table) -> None:
    on_engine, on_moto = [], []
    for run in range(RUNS):
        settings = dataclasses.replace(
            Settings(), dynamodb_endpoint=engine, table_prefix=f"moto-cost-{run}-"
        )
        engine_services = Services.build(settings, payments=SandboxPaymentProvider())
        on_engine.append(asyncio.run(ms_per_gift(engine_services)))
        with mock_aws():
            moto_services = Services.build(
                Settings(table_prefix="moto-cost-"), payments=SandboxPaymentProvider()
            )
            on_moto.append(asyncio.run(ms_per_gift(moto_services)))
    bench.ratio(
        f"a test's sendGift, {GIFTS} gifts in a row through the Lambda handler",
        "local engine",
        on_engine,
        "moto (in process)",
        on_moto,
        "ms a gift",
        digits=1,
        aim="tests that send many gifts do not run on moto",
        note=(
            "Wall time per gift, fresh tables each run. The tests that send dozens of gifts "
            "at once run on the engine (tests/test_gifts_engine.py); the rest stay on moto, "
            "which needs no process and starts clean for every test."
        ),
    )
