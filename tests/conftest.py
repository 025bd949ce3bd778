"""Shared fixtures: moto-backed services, the two entrypoint clients, DynamoDB call counts,
and the ledger promise checked after every test; the same on the local engine (`engine_api`,
`engine_calls`) for tests whose cost on moto is moto itself (many gifts: moto deep-copies the
tables in every transaction, FACTS.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
)

from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from infra import runtime
from infra.config import Settings
from infra.dynamo import from_item
from infra.earnings import shard_total
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed
from tests.clients import AiohttpClient, Client, LambdaClient, claims_for

# moto is not thread-safe (FACTS.md): serialise every call into it, as DynamoDB would.
_moto_lock = threading.Lock()
_original_call = BotocoreStubber.__call__


def _serialised_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    with _moto_lock:
        return _original_call(self, *args, **kwargs)


BotocoreStubber.__call__ = _serialised_call  # type: ignore[method-assign]


class CallCounter:
    """Counts DynamoDB operations through a botocore event hook."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def reset(self) -> None:
        self.calls.clear()

    def counts(self) -> Counter[str]:
        return Counter(self.calls)


ENGINE = Path(__file__).resolve().parent.parent / ".venv-engine" / "bin" / "ministack"


@pytest.fixture(scope="session")
def engine() -> Iterator[str]:
    """One local engine (ministack) for the session; each test uses its own table prefix."""
    from infra.engine import LocalEngine

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


@pytest.fixture
def settings() -> Settings:
    return Settings(table_prefix="test-", catalog_cache_seconds=60)


@pytest.fixture
def services(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Services]:
    with mock_aws():
        built = Services.build(settings, payments=SandboxPaymentProvider())
        ensure_tables(built.dynamo.client, settings)
        asyncio.run(seed(built.catalog))
        yield built
        if not request.node.get_closest_marker("corrupts"):  # audits planting differences
            assert_ledger_promise(built)


class Clock(runtime.Runtime):
    """The real clock, moved forward at will (an earnings hold passes in a test)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return super().time() + self.ahead


@pytest.fixture
def clock() -> Iterator[Clock]:
    moved = Clock()
    previous = runtime.install(moved)
    yield moved
    runtime.install(previous)


@pytest.fixture
async def stripe(services: Services, aiohttp_server: Any) -> Any:
    """The Stripe provider on, against a local fake of Stripe's API (tests/stripe_fake.py)."""
    from infra.stripe_payments import StripePaymentProvider
    from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, StripeFake

    fake = StripeFake(delay=1.0)
    server = await aiohttp_server(fake.app())
    services.payments = StripePaymentProvider(
        SECRET_KEY, WEBHOOK_SECRET, str(server.make_url("")).rstrip("/"), timeout=(0.5, 0.5)
    )
    return fake


@pytest.fixture
def calls(services: Services) -> CallCounter:
    return CallCounter(services.dynamo.client)


@pytest.fixture(params=["lambda", "aiohttp"])
async def api(
    request: pytest.FixtureRequest, services: Services, aiohttp_client: Any
) -> AsyncIterator[Client]:
    """The same behaviour tests run through the Lambda handler and the aiohttp server."""
    if request.param == "lambda":
        yield LambdaClient(services)
    else:
        from handlers.server import make_app

        test_client = await aiohttp_client(make_app(services))
        yield AiohttpClient(test_client, services.settings.jwt_secret)


@pytest.fixture(params=["lambda", "aiohttp"])
async def engine_api(
    request: pytest.FixtureRequest, engine_services: Services, aiohttp_client: Any
) -> AsyncIterator[Client]:
    """`api` on the local engine: the session's ministack, tables of the test's own. The
    local server sends its DynamoDB calls as `livecoins serve` does (infra/dynamo_http.py)."""
    if request.param == "lambda":
        yield LambdaClient(engine_services)
    else:
        from handlers.server import make_app
        from infra.dynamo_http import serve_dynamodb_over_aiohttp

        app = make_app(engine_services)
        serve_dynamodb_over_aiohttp(app, engine_services)
        test_client = await aiohttp_client(app)
        yield AiohttpClient(test_client, engine_services.settings.jwt_secret)
    assert_ledger_promise(engine_services)


@pytest.fixture
def engine_calls(engine_services: Services) -> CallCounter:
    return CallCounter(engine_services.dynamo.client)


def assert_ledger_promise(services: Services) -> None:
    """For every account: the ledger sums to the wallet, and nothing is negative."""
    accounts = scan(services, "accounts")
    earned: Counter[str] = Counter()
    for shard in scan(services, "earnings"):
        assert all(v >= 0 for k, v in shard.items() if isinstance(v, int)), shard
        earned[shard["accountId"]] += shard_total(shard)
    coins: Counter[str] = Counter()
    diamonds: Counter[str] = Counter()
    for entry in scan(services, "ledger"):
        owner = entry["accountId"].split("#")[0]  # "<id>#<kk>": a recipient's ledger shard
        coins[owner] += entry["coins"]
        diamonds[owner] += entry["diamonds"]
    known = {a["id"] for a in accounts}
    assert set(coins) <= known, "ledger entries for an account that does not exist"
    assert set(earned) <= known, "earnings for an account that does not exist"
    for account in accounts:
        assert account["coins"] >= 0 and account["diamonds"] >= 0, account
        assert account.get("heldCoins", 0) >= 0, account
        assert account["coins"] + account.get("heldCoins", 0) == coins[account["id"]], account
        assert account["diamonds"] + earned[account["id"]] == diamonds[account["id"]], account


def scan(services: Services, table: str) -> list[dict[str, Any]]:
    """Every item of a table (test audits only; no request path scans)."""
    client = services.dynamo.client
    pages = client.get_paginator("scan").paginate(TableName=services.settings.table(table))
    return [from_item(i) for page in pages for i in page["Items"]]


@pytest.fixture
def alice() -> dict[str, Any]:
    return claims_for("alice", name="Alice")


@pytest.fixture
def minor() -> dict[str, Any]:
    return claims_for("kid", birthdate="2015-06-01")


@pytest.fixture
def admin() -> dict[str, Any]:
    return claims_for("root", admin=True)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One `livecoins serve` for the README walkthroughs and the browser test."""
    from tests import local_server as server

    assert ENGINE.exists(), "run `make test` (it installs .venv-engine)"
    running = server.start(tmp_path_factory.mktemp("serve") / "data")
    try:
        yield running
    finally:
        server.stop(running)
