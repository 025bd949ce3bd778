"""`livecoins audit` and the stores: store purchases against their bindings, and against each
store's records of the window (Apple's transactions and refund notifications, Google's
purchases and voided list); clean after money moved every way, each planted difference
reported, the store reads capped."""

from __future__ import annotations

from typing import Any

import pytest

from infra.dynamo import to_item
from infra.services import Services
from infra.stores import account_token
from resolvers.audit import audit
from tests import test_store_purchases as bought
from tests.app_store_fake import AppStoreFake
from tests.clients import Client
from tests.conftest import Clock
from tests.play_store_fake import PlayStoreFake
from tests.test_store_purchases import APPLE_PRODUCT, play_buy, redeem, redeem_play, store_items
from tests.test_store_refunds import deliver_apple, deliver_google

settings, apple, google = bought.settings, bought.apple, bought.google
WINDOW = (0, 2**40)


async def story(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, google: PlayStoreFake
) -> dict[str, Any]:
    """Two App Store purchases (one refunded), a Google one of 3 (one unit voided)."""
    tids = [apple.buy(APPLE_PRODUCT, account_token=account_token("alice")) for _ in range(2)]
    for n, tid in enumerate(tids):
        await redeem(api, alice, f"a{n}", apple.signed_transaction(tid))
    token = play_buy(google, alice, quantity=3)
    await redeem_play(api, alice, "g", token)
    assert await deliver_apple(api, apple.refund(tids[0])) == 200
    google.void(token, 1)
    assert await deliver_google(api, google.push(google.notification("voided", token))) == 200
    return {"tids": tids, "token": token}


def _put(services: Services, item: dict[str, Any]) -> None:
    services.dynamo.client.put_item(
        TableName=services.settings.table("purchases"), Item=to_item(item)
    )


async def test_the_audit_is_clean_after_store_money_moved_every_way(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
) -> None:
    await story(api, alice, apple, google)
    report = await audit(services, *WINDOW, segments=2)
    assert report.findings == [] and report.open == []
    assert report.counts["store purchases compared"] == 3
    assert report.counts["store purchases not compared"] == 0


async def test_a_refund_nobody_followed_is_reported(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
) -> None:
    told = await story(api, alice, apple, google)
    apple.refund(told["tids"][1], delivered=False)  # lost, and no catch-up ran yet
    google.void(told["token"], 1)  # no notification either
    findings = (await audit(services, *WINDOW, segments=2)).findings
    assert sorted(f.kind for f in findings) == [
        "money back differs",  # the App Store purchase: all of it
        "money back differs",  # the Google one: a second unit
        "status differs",  # the App Store one is REFUNDED at Apple
    ]
    # the catch-up then follows both, and the audit is clean again
    from resolvers.store_purchases import catch_up

    assert (await catch_up(services)).failed == []
    assert (await audit(services, *WINDOW, segments=2)).findings == []


@pytest.mark.corrupts
async def test_store_purchases_that_differ_from_their_bindings_are_reported(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
) -> None:
    await story(api, alice, apple, google)
    purchases = sorted(store_items(services, "pur_"), key=lambda p: p["createdAt"])
    # a second purchase crediting the Google transaction again
    _put(services, {**purchases[2], "id": "pur_01ARZ3NDEKTSV4RRFFQ69G5FAV"})
    # an App Store purchase whose refund was not taken back
    _put(services, {**purchases[0], "takenBack": 0, "fromWallet": 0})
    kinds = sorted(f.kind for f in (await audit(services, *WINDOW, segments=2)).findings)
    assert "store transaction credited" in kinds and "store purchase unbound" in kinds
    assert "money back differs" in kinds


async def test_store_reads_are_capped(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
) -> None:
    await story(api, alice, apple, google)
    report = await audit(services, *WINDOW, segments=2, store_reads=1)
    assert report.findings == []
    assert report.counts["store purchases compared"] == 1
    assert report.counts["store purchases not compared"] == 2


async def test_a_clean_audit_of_the_stores_moves_its_mark(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
    clock: Clock,
) -> None:
    await story(api, alice, apple, google)
    clock.ahead = 2  # the window ends at a whole second: past the story
    assert (await audit(services, segments=2)).counts["store purchases compared"] == 3
    mark = await services.dynamo.get("purchases", {"id": "audit#stores"}, consistent=True)
    assert mark is not None
    # the next audit starts where this one ended: nothing new in its window
    assert (await audit(services, segments=2)).counts["store purchases compared"] == 0
