"""The local server on the embedded engine (ministack), under concurrent clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from infra.services import Services
from tests.clients import AiohttpClient, claims_for
from tests.conftest import assert_ledger_promise
from tests.test_purchases import buy, coins_of

ENGINE = Path(__file__).resolve().parent.parent / ".venv-engine" / "bin" / "ministack"
pytestmark = pytest.mark.engine


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


async def test_gifting_on_the_local_engine(engine_services: Services, aiohttp_client: Any) -> None:
    from handlers.server import make_app
    from tests.gifting import go_live, send, top_up
    from tests.test_gift_feed import next_gift, subscribe, wait_for_subscribers

    client = await aiohttp_client(make_app(engine_services))
    api = AiohttpClient(client, engine_services.settings.jwt_secret)
    stream = await go_live(api, claims_for("star"))
    watcher = await subscribe(client, stream)
    await wait_for_subscribers(engine_services, stream, 1)
    viewers = [claims_for(f"v{i:02d}") for i in range(12)]
    for viewer in viewers:
        await top_up(api, viewer)
    # each viewer tries 10 Love Bangs (25 coins) at once with 70 coins: two land each
    results = await asyncio.gather(
        *(
            send(api, v, f"g{n}", gift="love-bang", stream=stream)
            for n in range(10)
            for v in viewers
        )
    )
    landed = [r for r in results if r["__typename"] == "GiftSent"]
    assert len(landed) == 24
    ranking = await api.data(
        "query R($id: ID!) { liveStream(id: $id) { coinsReceived topGifters(first: 3) { "
        "rank coins user { id } } gifts(first: 50) { edges { node { id } } } } }",
        {"id": stream},
    )
    found = ranking["liveStream"]
    assert found["coinsReceived"] == 24 * 25
    assert [(g["user"]["id"], g["coins"]) for g in found["topGifters"]] == [
        ("v00", 50),
        ("v01", 50),
        ("v02", 50),
    ]
    assert {e["node"]["id"] for e in found["gifts"]["edges"]} == {
        r["transfer"]["id"] for r in landed
    }
    assert {(await next_gift(watcher))["id"] for _ in landed} == {
        r["transfer"]["id"] for r in landed
    }
    await watcher.close()
    assert_ledger_promise(engine_services)


async def test_money_out_on_the_local_engine(
    engine_services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app
    from tests.test_refunds import refund
    from tests.test_withdrawals import SETTLE, earn, request

    api = AiohttpClient(
        await aiohttp_client(make_app(engine_services)), engine_services.settings.jwt_secret
    )
    creator, admin = claims_for("cora"), claims_for("root", admin=True)
    await earn(api, creator, [("galaxy", 5)], "coins-17500")
    results = await asyncio.gather(*(request(api, creator, 2000, f"w{i}") for i in range(4)))
    # 5,000 diamonds: two requests of 2,000 land, two find too few left
    assert (
        sorted(r["__typename"] for r in results)
        == ["InsufficientDiamonds"] * 2 + ["WithdrawalRequested"] * 2
    )
    landed = [r["withdrawal"]["id"] for r in results if r["__typename"] == "WithdrawalRequested"]
    settled = await api.data(SETTLE, {"id": landed[0], "outcome": "REJECTED"}, admin)
    assert settled["settleWithdrawal"]["withdrawal"]["status"] == "REJECTED"
    wallet = await api.data("{ me { wallet { diamonds } } }", user=creator)
    assert wallet["me"]["wallet"] == {"diamonds": 5000 - 2000}
    buyer = claims_for("buyer")
    purchase = (await buy(api, buyer, "b"))["purchase"]["id"]
    assert (await refund(api, admin, purchase))["purchase"]["status"] == "REFUNDED"
    assert await coins_of(api, buyer) == 0
    assert_ledger_promise(engine_services)


def test_cli_seed_and_token(engine: str) -> None:
    import os
    import subprocess
    import sys

    import jwt

    cli = [sys.executable, "-m", "handlers.cli"]
    env = {
        **os.environ,
        "LIVECOINS_DYNAMODB_ENDPOINT": engine,
        "LIVECOINS_TABLE_PREFIX": "clitest-",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    root = Path(__file__).resolve().parent.parent
    first = subprocess.run(
        [*cli, "seed"], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    again = subprocess.run(
        [*cli, "seed"], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    assert first.stdout.strip() == "17 default catalog items added"
    assert again.stdout.strip() == "0 default catalog items added"
    token = subprocess.run(
        [
            *cli,
            "token",
            "--sub",
            "alice",
            "--birthdate",
            "1990-01-01",
            "--admin",
            "--name",
            "Alice",
        ],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(token, "livecoins-local-secret", algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["birthdate"] == "1990-01-01"
    assert claims["cognito:groups"] == ["admin"] and claims["name"] == "Alice"
    assert claims["exp"] > claims["iat"]
