"""`livecoins audit`: clean after money moved every way, and each kind of difference planted
in the tables or at the processor is reported."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from infra.services import Services
from resolvers.audit import Report, audit
from tests.clients import Client, claims_for
from tests.conftest import Clock, scan
from tests.gifting import send
from tests.stripe_fake import StripeFake
from tests.test_money_back import fan_spends, settings  # noqa: F401 - a fixture
from tests.test_stripe import answer, buy, deliver
from tests.test_withdrawals import request

WINDOW = (0, 2**40)


async def audited(services: Services) -> Report:
    return await audit(services, *WINDOW, segments=2)


async def story(api: Client, stripe: StripeFake, services: Services) -> dict[str, Any]:
    """Money moved every way: purchases, gifts, a partial refund, a dispute of spent coins."""
    charge, creator, fan, stream = await fan_spends(api, stripe, spend=300)
    alice = claims_for("alice")
    answer(await buy(api, alice, "a"))
    await send(api, alice, "a1", gift="rose", stream=stream, quantity=3)
    stripe.refund(list(stripe.charges)[-1], 100)
    refunded = stripe.event("charge.refunded", dict(stripe.charges[list(stripe.charges)[-1]]))
    assert (await deliver(api, *refunded))[0] == 200
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    return {"charge": charge, "creator": creator, "fan": fan, "stream": stream}


async def test_the_audit_is_clean_after_money_moved_every_way(
    api: Client, stripe: StripeFake, services: Services
) -> None:
    await story(api, stripe, services)
    report = await audited(services)
    assert report.findings == [] and report.open == []
    assert report.counts["charges"] == 2 and report.counts["purchases"] > 2
    assert (report.lost_diamonds, report.lost_coins) == (0, 0)


def _put(services: Services, table: str, item: dict[str, Any]) -> None:
    from infra.dynamo import to_item

    services.dynamo.client.put_item(TableName=services.settings.table(table), Item=to_item(item))


def _one(services: Services, table: str, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(i for i in scan(services, table) if test(i))


def _account(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda item: item["id"] == name


def _purchase(item: dict[str, Any]) -> bool:
    return item["id"].startswith("pur_") and item.get("spent", 0) > 0


PLANTS: dict[str, Callable[[Services, StripeFake, dict[str, Any]], Awaitable[None] | None]] = {}


def plant(kind: str) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        PLANTS[kind] = fn
        return fn

    return register


@plant("ledger differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    alice = _one(services, "accounts", _account("alice"))
    _put(services, "accounts", {**alice, "coins": alice["coins"] + 1})


@plant("taken back differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(services, "purchases", _purchase)
    _put(services, "purchases", {**purchase, "fromWallet": purchase["fromWallet"] + 1})


@plant("reversals differ")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(services, "purchases", _purchase)
    _put(services, "purchases", {**purchase, "covered": purchase["covered"] - 100})


@plant("reversal differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    gift = _one(services, "transfers", lambda t: t.get("reversedCoins", 0) > 0)
    _put(services, "transfers", {**gift, "reversedCoins": gift["reversedCoins"] - 1})


@plant("refund stuck")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(
        services, "purchases", lambda p: p["id"].startswith("pur_") and p["accountId"] == "alice"
    )
    _put(services, "purchases", {**purchase, "status": "REFUNDING"})


@plant("coins left held")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    alice = _one(services, "accounts", _account("alice"))
    _put(services, "accounts", {**alice, "coins": alice["coins"] - 5, "heldCoins": 5})


@plant("restricted for nothing")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    alice = _one(services, "accounts", _account("alice"))
    _put(services, "accounts", {**alice, "restrictedBy": {"pur_nothing"}})


@plant("not restricted")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    fan = _one(services, "accounts", _account("fan"))
    _put(services, "accounts", {k: v for k, v in fan.items() if k != "restrictedBy"})


@plant("owed differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    cora = _one(services, "accounts", _account("cora"))
    _put(services, "accounts", {**cora, "owedDiamonds": 7})


@plant("coins differ")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    gift = _one(services, "transfers", lambda t: t["senderId"] == "alice")
    _put(services, "transfers", {**gift, "coins": gift["coins"] + 1})


@plant("diamonds differ")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    gift = _one(services, "transfers", lambda t: t["senderId"] == "alice")
    _put(services, "transfers", {**gift, "diamonds": gift["diamonds"] + 1})


@plant("money back differs")
async def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    stripe.refund(list(stripe.charges)[-1], 50)  # a refund whose webhook never came


@plant("status differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(services, "purchases", _purchase)
    _put(services, "purchases", {**purchase, "status": "COMPLETED"})


@plant("charged, never credited")
async def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    intent = {"id": "pi_x", "amount": 99, "currency": "usd", "metadata": {}, "status": "x"}
    stripe.intents["pi_x"] = intent
    stripe._succeed(intent)


@plant("amount differs")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(
        services, "purchases", lambda p: p["id"].startswith("pur_") and p["accountId"] == "alice"
    )
    _put(services, "purchases", {**purchase, "currency": "EUR"})


@plant("credited, no charge")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    purchase = _one(
        services, "purchases", lambda p: p["id"].startswith("pur_") and p["accountId"] == "alice"
    )
    _put(services, "purchases", {**purchase, "id": "pur_ghost", "chargeId": "ch_ghost"})
    _put(services, "purchases", {"id": "charge#ch_ghost", "purchaseId": "pur_ghost"})


@plant("negative balance")
def _(services: Services, stripe: StripeFake, seen: dict[str, Any]) -> None:
    cora = _one(services, "accounts", _account("cora"))
    _put(services, "accounts", {**cora, "owedDiamonds": -1})


@pytest.mark.corrupts
@pytest.mark.parametrize("kind", sorted(PLANTS))
async def test_each_planted_difference_is_reported(
    api: Client, stripe: StripeFake, services: Services, kind: str
) -> None:
    seen = await story(api, stripe, services)
    assert (await audited(services)).findings == []
    planted = PLANTS[kind](services, stripe, seen)
    if planted is not None:
        await planted
    kinds = {f.kind for f in (await audited(services)).findings}
    assert kind in kinds, kinds


async def test_the_loss_is_reported(
    api: Client, stripe: StripeFake, services: Services, clock: Clock
) -> None:
    from infra.earnings import bucket_seconds
    from tests.test_stripe import HOLD

    charge, creator, _fan, stream = await fan_spends(api, stripe, spend=300)
    other = claims_for("other")
    answer(await buy(api, other, "o", package="coins-3500"))
    await send(api, other, "o", gift="galaxy", stream=stream, quantity=2)
    clock.ahead = HOLD + 2 * bucket_seconds(HOLD)
    assert (await request(api, creator, 2300, "w"))["__typename"] == "WithdrawalRequested"
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    report = await audited(services)
    assert report.findings == [] and report.lost_diamonds == 300


async def test_a_clean_audit_moves_its_mark_and_the_next_starts_there(
    api: Client, stripe: StripeFake, services: Services
) -> None:
    answer(await buy(api, claims_for("alice"), "a"))
    first = await audit(services, segments=2)
    assert first.findings == [] and first.window is not None and first.window[0] == 0
    mark = first.window[1]
    assert mark <= time.time() + 1
    second = await audit(services, segments=2)
    assert second.window is not None and second.window[0] == mark
