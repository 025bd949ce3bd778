"""Benchmark (make bench): CPU per request for a repeated document with the schema's parser and
validation caches, against the same schema with the same extensions but those two (the
limits, the error policy and the deadline kept, so the ratio is the caches' alone)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from strawberry.extensions import MaxTokensLimiter

import schema as api
from infra.services import Services
from resolvers.context import Context
from schema.limits import DocumentLimits
from tests.benchmarks.table import RUNS, Table

pytestmark = pytest.mark.benchmark
ROUNDS = 200

DOCUMENT = """query Catalog($withPackages: Boolean!) {
  coinPackages @include(if: $withPackages) { id coins price { amount currency formatted } }
  gifts { id name coins diamonds }
}"""


def cpu_per_request(
    target: api.LiveCoinsSchema, context: Context, loop: asyncio.AbstractEventLoop
) -> float:
    async def run() -> None:
        # the catalog is cached in memory: this measures the GraphQL work, not DynamoDB
        result = await target.execute(
            DOCUMENT, variable_values={"withPackages": True}, context_value=context
        )
        assert not result.errors

    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        for _ in range(ROUNDS):
            loop.run_until_complete(run())
        return (time.process_time() - started) / ROUNDS * 1000
    finally:
        gc.enable()


def test_parse_and_validation_cache_ratio(services: Services, bench: Table) -> None:
    uncached = api.LiveCoinsSchema(
        query=api.Query,
        mutation=api.Mutation,
        extensions=[
            api.ErrorPolicy,
            api.RequestDeadline,
            api.QueryLimits,
            DocumentLimits,
            lambda: MaxTokensLimiter(max_token_count=api.MAX_TOKENS),
        ],
    )
    context = Context(services, None)
    loop = asyncio.new_event_loop()
    try:
        for target in (api.schema, uncached):
            cpu_per_request(target, context, loop)
        without, with_caches = [], []
        for _ in range(RUNS + 2):
            without.append(cpu_per_request(uncached, context, loop))
            with_caches.append(cpu_per_request(api.schema, context, loop))
    finally:
        loop.close()
    bench.ratio(
        "repeated catalog document, CPU per request (schema.execute)",
        "the schema's extensions without the parser and validation caches",
        without,
        "with them",
        with_caches,
        "ms",
        digits=2,
        note=(
            "Both schemas have the limits, the error policy and the deadline; what is left with "
            "the caches is executing 17 catalog items (the handler row)."
        ),
    )
