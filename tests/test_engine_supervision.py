"""The local engine dying: /health reports it, the server restarts it, its saves survive.

Each test starts its own engine (ministack under handlers/engine_launcher.py) on a temporary
data dir, saving every SAVE seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import Settings
from infra.engine import LocalEngine
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed
from tests.clients import AiohttpClient, claims_for
from tests.conftest import assert_ledger_promise
from tests.test_purchases import PURCHASE, buy, coins_of

ENGINE = Path(__file__).resolve().parent.parent / ".venv-engine" / "bin" / "ministack"
SAVE = 0.3
pytestmark = pytest.mark.engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[LocalEngine]:
    assert ENGINE.exists(), "run `make test` (it installs .venv-engine)"
    local = LocalEngine(str(ENGINE), str(tmp_path / "data"), save_seconds=SAVE)
    local.start()
    try:
        yield local
    finally:
        local.stop()


async def services_on(engine: LocalEngine) -> Services:
    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine.endpoint)
    services = Services.build(settings, payments=SandboxPaymentProvider())
    ensure_tables(services.dynamo.client, settings)
    await seed(services.catalog)
    return services


def kill(engine: LocalEngine) -> None:
    assert engine.process is not None
    engine.process.kill()
    engine.process.wait()


async def saved(engine: LocalEngine, text: str) -> None:
    """Wait for a periodic save holding `text` (within a few save periods)."""
    state = Path(engine.data_dir or "") / "dynamodb.json"
    deadline = time.monotonic() + 20 * SAVE
    while not (state.exists() and text in state.read_text()):
        assert time.monotonic() < deadline, f"no save holds {text}"
        await asyncio.sleep(SAVE / 10)


def purchase(key: str) -> dict[str, Any]:
    return {"input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": key}}


async def health(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/health")
    return response.status, await response.json()


async def test_a_killed_engine_is_restarted_with_its_saved_writes(
    engine: LocalEngine, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from handlers.server import make_app

    services = await services_on(engine)
    client = await aiohttp_client(make_app(services, engine))
    api = AiohttpClient(client, services.settings.jwt_secret)
    assert await health(client) == (200, {"status": "ok", "engine": "up"})
    alice = claims_for("alice")
    await buy(api, alice, "before-the-kill")
    await saved(engine, '"alice"')

    caplog.set_level(logging.WARNING, "livecoins.engine")
    load = [
        asyncio.create_task(api.gql(PURCHASE, purchase(f"k{i}"), claims_for(f"u{i % 6}")))
        for i in range(24)
    ]
    await asyncio.sleep(0.05)
    kill(engine)
    killed = time.monotonic()
    status, body = await health(client)
    assert status == 503 and body["engine"] in {"down", "restarting"}, body
    while (await health(client))[0] != 200:
        assert time.monotonic() - killed < 15, "the engine was not restarted"
        await asyncio.sleep(0.05)
    print(f"healthy again {time.monotonic() - killed:.2f} s after the kill")
    assert "stopped (exit code -9): restarting it on port" in caplog.text
    await asyncio.gather(*load)  # each answered, landed or not
    assert_ledger_promise(services)  # the restarted engine holds one consistent moment

    # same port, same data: the boto3 client's endpoint still works and the purchase is there
    assert await coins_of(api, alice) == 70
    await buy(api, alice, "after-the-restart")
    assert await coins_of(api, alice) == 140
    assert_ledger_promise(services)


async def test_a_clean_stop_saves(tmp_path: Path, aiohttp_client: Any) -> None:
    from handlers.server import make_app

    # no periodic save in this test's time: only the clean stop can save the purchase
    engine = LocalEngine(str(ENGINE), str(tmp_path / "data"), save_seconds=3600)
    engine.start()
    try:
        services = await services_on(engine)
        api = AiohttpClient(await aiohttp_client(make_app(services)), Settings().jwt_secret)
        bob = claims_for("bob")
        await buy(api, bob, "k")
        engine.stop()
        engine.start()
        assert await coins_of(api, bob) == 70
        assert_ledger_promise(services)
    finally:
        engine.stop()


def test_killing_the_engine_during_saves_loses_no_saved_state(engine: LocalEngine) -> None:
    """Writes go one at a time, so every consistent save holds writes 0..k-1 for some k."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=engine.endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    client.create_table(
        TableName="writes",
        KeySchema=[{"AttributeName": "n", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "n", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # ballast so that a save takes a while (~0.1 s here) and can be caught in progress
    for start in range(0, 1500, 25):
        ballast = [
            {"PutRequest": {"Item": {"n": {"N": str(-start - i - 1)}, "pad": {"S": "x" * 200}}}}
            for i in range(25)
        ]
        client.batch_write_item(RequestItems={"writes": ballast})
    engine.stop()  # the ballast, saved
    engine.start()
    temp = Path(engine.data_dir or "") / "dynamodb.json.tmp"
    written = 0
    for round_ in range(4):
        loaded = written
        stop = threading.Event()

        def write_in_order(stop: threading.Event = stop) -> None:
            nonlocal written
            while not stop.is_set():
                try:
                    client.put_item(TableName="writes", Item={"n": {"N": str(written)}})
                except (BotoCoreError, ClientError):
                    return
                written += 1

        temp.unlink(missing_ok=True)  # left by the previous round's kill
        writer = threading.Thread(target=write_in_order)
        writer.start()
        deadline = time.monotonic() + 5
        if round_ % 2 == 0:  # kill while a save is being written
            while not temp.exists():
                assert time.monotonic() < deadline, "no save started"
                time.sleep(0.001)
        else:  # kill at a random moment
            time.sleep(random.uniform(0.2, 4 * SAVE))
        kill(engine)
        stop.set()
        writer.join()
        engine.start()  # refuses to start on a state it cannot load
        pages = client.get_paginator("scan").paginate(TableName="writes")
        found = {int(item["n"]["N"]) for page in pages for item in page["Items"]}
        saved = {n for n in found if n >= 0}
        assert saved == set(range(len(saved))), "a save that is not a snapshot"
        assert len(found - saved) == 1500
        assert len(saved) >= loaded, "a save lost writes that an earlier save had"
        written = len(saved)  # go on from what was saved


def test_the_engine_refuses_a_state_it_cannot_load(engine: LocalEngine) -> None:
    # it would start empty, and its next save would replace the state with nothing
    engine.stop()
    state = Path(engine.data_dir or "") / "dynamodb.json"
    state.write_text('{"__ministack_format__": 2, "payload": {"tables": ')
    with pytest.raises(RuntimeError, match="exited at start"):
        engine.start()
    assert state.read_text().endswith('"tables": ')


async def test_requests_while_the_engine_is_down_get_try_again(
    engine: LocalEngine, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    services = await services_on(engine)
    api = AiohttpClient(await aiohttp_client(make_app(services)), services.settings.jwt_secret)
    kill(engine)  # and no supervisor to restart it
    started = time.monotonic()
    variables = {
        "input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": "k"}
    }
    result = await api.gql(PURCHASE, variables, claims_for("carol"))
    print(f"a purchase failed {time.monotonic() - started:.2f} s after it was sent")
    assert [e["extensions"]["code"] for e in result["errors"]] == ["TRY_AGAIN"]


async def test_supervise_gives_up_after_failed_restarts(
    engine: LocalEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "livecoins.engine")
    kill(engine)
    engine.command = str(Path(engine.command).with_name("missing") / "ministack")
    started = time.monotonic()
    await asyncio.wait_for(engine.supervise(every=0.05, attempts=2), 10)
    assert engine.lost and engine.status() == "down"
    assert time.monotonic() - started < 2
    assert "could not be restarted" in caplog.text
