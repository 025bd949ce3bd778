"""The local server on the embedded engine (ministack), under concurrent clients."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import Settings
from infra.engine import LocalEngine
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed
from tests.clients import AiohttpClient, claims_for
from tests.conftest import assert_ledger_promise
from tests.test_purchases import buy, coins_of

ENGINE = Path(__file__).resolve().parent.parent / ".venv-engine" / "bin" / "ministack"
pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    # `make test` installs the engine; a missing one is a failure, not a skip.
    assert ENGINE.exists(), "run `make test` (it installs .venv-engine)"
    local = LocalEngine(str(ENGINE), data_dir=None)
    try:
        yield local.start()
    finally:
        local.stop()


@pytest.fixture
def engine_services(engine: str, request: pytest.FixtureRequest) -> Services:
    prefix = f"t{abs(hash(request.node.name)) % 10**8}-"
    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine, table_prefix=prefix)
    services = Services.build(settings, payments=SandboxPaymentProvider())
    ensure_tables(services.dynamo.client, settings)
    asyncio.run(seed(services.catalog))
    return services


async def test_concurrent_purchases_on_the_local_engine(
    engine_services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    api = AiohttpClient(
        await aiohttp_client(make_app(engine_services)), engine_services.settings.jwt_secret
    )
    alice = claims_for("alice")
    # 32 distinct keys and 16 repeats of one key, all at once, through real HTTP
    distinct = [buy(api, alice, f"k-{i}") for i in range(32)]
    repeated = [buy(api, alice, "same") for _ in range(16)]
    results = await asyncio.gather(*distinct, *repeated)
    assert {r["__typename"] for r in results} == {"CoinsPurchased"}
    assert len({r["purchase"]["id"] for r in results[32:]}) == 1
    assert await coins_of(api, alice) == 33 * 70
    assert len(engine_services.payments.charges) == 33  # type: ignore[attr-defined]
    assert_ledger_promise(engine_services)
