"""Benchmark (make bench): CPU per request for a repeated document, with and without the
schema's ParserCache/ValidationCache. Reported as a ratio from one run."""

from __future__ import annotations

import asyncio
import time

import pytest
import strawberry

from infra.services import Services
from resolvers.context import Context
from schema import schema

pytestmark = pytest.mark.benchmark

DOCUMENT = """query Catalog($withPackages: Boolean!) {
  coinPackages @include(if: $withPackages) { id coins price { amount currency formatted } }
  gifts { id name coins diamonds }
}"""


def cpu_per_request(target: strawberry.Schema, context: Context, rounds: int = 300) -> float:
    async def run() -> None:
        # the catalog is cached in memory: this measures the GraphQL work, not DynamoDB
        result = await target.execute(
            DOCUMENT, variable_values={"withPackages": True}, context_value=context
        )
        assert not result.errors

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run())
    started = time.process_time()
    for _ in range(rounds):
        loop.run_until_complete(run())
    loop.close()
    return (time.process_time() - started) / rounds


def test_parse_and_validation_cache_ratio(services: Services) -> None:
    uncached = strawberry.Schema(query=schema.query, mutation=schema.mutation)  # type: ignore[arg-type]
    context = Context(services, None)
    cached_ms = cpu_per_request(schema, context) * 1000
    uncached_ms = cpu_per_request(uncached, context) * 1000
    print(
        f"\nrepeated document: {uncached_ms:.2f} ms CPU uncached, {cached_ms:.2f} ms cached "
        f"(ratio {uncached_ms / cached_ms:.1f}x)"
    )
