"""The earnings hold: diamonds become withdrawable `LIVECOINS_EARNINGS_HOLD_SECONDS` after they
were earned; exact at every moment, under concurrency, with no job."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from infra.config import Settings
from infra.earnings import bucket_seconds
from infra.services import Services
from tests.clients import Client, claims_for
from tests.conftest import Clock, scan
from tests.gifting import go_live, send, top_up
from tests.test_withdrawals import request

HOLD = 7 * 24 * 3600
EARNINGS = """{ me { wallet { diamonds } earnings { diamonds availableDiamonds pendingDiamonds
  nextAvailableAt } } }"""


@pytest.fixture
def settings() -> Settings:
    return Settings(table_prefix="test-", catalog_cache_seconds=60, earnings_hold_seconds=HOLD)


async def earnings(api: Client, user: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(EARNINGS, user=user))["me"]
    return result


async def test_gift_diamonds_wait_for_the_hold(api: Client, clock: Clock) -> None:
    creator, fan = claims_for("cora"), claims_for("fan")
    stream = await go_live(api, creator)
    await top_up(api, fan, 1, "coins-3500")
    sent_at = clock.time()
    await send(api, fan, "g1", gift="galaxy", stream=stream, quantity=3)
    # GIVEN 3,000 diamonds earned just now
    now = await earnings(api, creator)
    assert now["wallet"] == {"diamonds": 3000}
    assert (now["earnings"]["diamonds"], now["earnings"]["availableDiamonds"]) == (3000, 0)
    assert now["earnings"]["pendingDiamonds"] == 3000
    size = bucket_seconds(HOLD)
    matures = int(sent_at) // size * size + size + HOLD
    next_at = datetime.fromisoformat(now["earnings"]["nextAvailableAt"]).timestamp()
    assert next_at == matures and HOLD <= matures - sent_at <= HOLD + size
    # THEN nothing may be withdrawn, and the answer says what is available
    refused = await request(api, creator, 2000, "early")
    assert (refused["__typename"], refused["available"]) == ("InsufficientDiamonds", 0)
    # WHEN the hold has passed (one second before it has not)
    clock.ahead = matures - clock.time() - 1
    assert (await earnings(api, creator))["earnings"]["availableDiamonds"] == 0
    clock.ahead += 2
    later = await earnings(api, creator)
    assert later["earnings"]["availableDiamonds"] == 3000
    assert (
        later["earnings"]["pendingDiamonds"] == 0 and later["earnings"]["nextAvailableAt"] is None
    )
    # THEN they may be withdrawn; the shard's matured bucket is folded by the withdrawal
    assert (await request(api, creator, 2000, "later"))["__typename"] == "WithdrawalRequested"
    assert (await earnings(api, creator))["earnings"]["availableDiamonds"] == 1000


async def test_available_is_exact_while_gifts_land_and_withdrawals_race(
    api: Client, clock: Clock, services: Services
) -> None:
    creator = claims_for("cora")
    stream = await go_live(api, creator)
    fans = [claims_for(f"fan{i}") for i in range(4)]
    for fan in fans:
        await top_up(api, fan, 1, "coins-17500")
    # GIVEN 20,000 matured diamonds (4 fans x 5,000, a week ago) ...
    for i, fan in enumerate(fans):
        await send(api, fan, f"old{i}", gift="drama-queen", stream=stream)
    clock.ahead = HOLD + 2 * bucket_seconds(HOLD)
    # WHEN 14 requests of 2,000 race gifts that keep landing (pending, not withdrawable)
    withdrawals = [request(api, creator, 2000, f"w{i}") for i in range(14)]
    gifts = [send(api, fans[i % 4], f"new{i}", gift="galaxy", stream=stream) for i in range(12)]
    results = await asyncio.gather(*withdrawals, *gifts)
    # THEN exactly 10 land (20,000 / 2,000); the rest are refused, with none available
    answers = [r["__typename"] for r in results[:14]]
    assert answers.count("WithdrawalRequested") == 10, answers
    refused = [r for r in results[:14] if r["__typename"] != "WithdrawalRequested"]
    assert {(r["__typename"], r["available"]) for r in refused} == {("InsufficientDiamonds", 0)}
    assert {r["__typename"] for r in results[14:]} == {"GiftSent"}
    final = (await earnings(api, creator))["earnings"]
    assert (final["availableDiamonds"], final["pendingDiamonds"]) == (0, 12_000)
    # AND no shard went below zero or lost a pending diamond (the ledger promise: conftest)
    for shard in scan(services, "earnings"):
        assert all(v >= 0 for k, v in shard.items() if isinstance(v, int))


async def test_without_a_hold_diamonds_are_available_at_once(
    api: Client, services: Services
) -> None:
    services.settings = Settings(table_prefix="test-", earnings_hold_seconds=0)
    creator, fan = claims_for("cora"), claims_for("fan")
    stream = await go_live(api, creator)
    await top_up(api, fan, 1, "coins-3500")
    await send(api, fan, "g", gift="galaxy", stream=stream, quantity=2)
    now = (await earnings(api, creator))["earnings"]
    assert (now["availableDiamonds"], now["pendingDiamonds"], now["nextAvailableAt"]) == (
        2000,
        0,
        None,
    )
