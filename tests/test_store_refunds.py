"""Refunds that follow the store: App Store Server Notifications V2 (REFUND, REFUND_REVERSED),
Google Play's real-time developer notifications (Pub/Sub push, OIDC verified) and the scheduled
catch-up reads (Apple's notification history, Google's voided purchases) all lead to the same
state convergence as Stripe's refunds (resolvers/money_back.py): exactly what the store says
is taken back, whatever the order, the duplicates or the forgeries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from infra.ids import iso, now
from infra.services import Services
from infra.stores import account_token
from resolvers.errors import TryAgain
from resolvers.store_purchases import catch_up, follow_store_transaction
from tests import test_store_purchases as bought
from tests.app_store_fake import AppStoreFake, make_chain
from tests.clients import Client, claims_for
from tests.gifting import go_live, send
from tests.play_store_fake import PUSH_AUDIENCE, PlayStoreFake
from tests.test_purchases import coins_of
from tests.test_store_purchases import (
    APPLE_PRODUCT,
    apple_buy,
    play_buy,
    redeem,
    redeem_play,
    store_items,
)

# the stores against their fakes, as in the redeem tests
settings, apple, google = bought.settings, bought.apple, bought.google

ME = "{ me { restricted wallet { coins } } }"


async def deliver_apple(api: Client, signed_payload: str) -> int:
    response = await api.request(
        "POST", AppStoreFake.deliver(signed_payload), path="/webhooks/app-store"
    )
    return response.status


async def deliver_google(api: Client, delivery: tuple[str, bytes]) -> int:
    authorization, body = delivery
    response = await api.request(
        "POST", body, headers={"Authorization": authorization}, path="/webhooks/play"
    )
    return response.status


def purchase_item(services: Services) -> dict[str, Any]:
    (found,) = store_items(services, "pur_")
    return found


# --- the App Store ----------------------------------------------------------------------------


async def test_apples_refund_takes_the_coins_back_and_its_reversal_gives_them_back(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT, account_token=account_token("alice"))
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    # WHEN Apple refunds it and notifies (twice: Apple delivers at least once)
    refund = apple.refund(tid)
    assert await deliver_apple(api, refund) == 200
    assert await deliver_apple(api, refund) == 200
    # THEN every coin is taken back, once; the purchase says so
    assert await coins_of(api, alice) == 0
    stored = purchase_item(services)
    assert (stored["status"], stored["takenBack"], stored["refunded"]) == ("REFUNDED", 350, 499)
    # WHEN Apple reverses the refund THEN the coins come back
    assert await deliver_apple(api, apple.reverse_refund(tid)) == 200
    assert await coins_of(api, alice) == 350
    assert purchase_item(services)["status"] == "COMPLETED"


async def test_notifications_out_of_order_leave_what_apple_says_now(
    api: Client, alice: dict[str, Any], apple: AppStoreFake
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    refund = apple.refund(tid)
    reversed_ = apple.reverse_refund(tid)
    # the reversal arrives first, the refund days later: Apple's record says not refunded
    assert await deliver_apple(api, reversed_) == 200
    assert await deliver_apple(api, refund) == 200
    assert await coins_of(api, alice) == 350


async def test_a_prorated_refund_takes_back_its_share_rounded_up(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    # 33.333 % of $4.99 is 166.33 cents: 167 cents back, ceil(350 x 167 / 499) = 118 coins
    assert await deliver_apple(api, apple.refund(tid, prorated_millipercent=33333)) == 200
    assert await coins_of(api, alice) == 350 - 118
    assert purchase_item(services)["refunded"] == 167


async def test_forged_and_foreign_notifications_change_nothing(
    api: Client, alice: dict[str, Any], apple: AppStoreFake
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    forged = apple.notify("REFUND", tid, chain=make_chain("Attacker"))
    other_app = apple.notify("REFUND", tid, bundleId="com.other.app")
    for signed in (forged, other_app, "not-a-jws"):
        assert await deliver_apple(api, signed) == 400
    response = await api.request("POST", b'{"nope": 1}', path="/webhooks/app-store")
    assert response.status == 400
    assert await coins_of(api, alice) == 350


async def test_spent_coins_refunded_restrict_the_buyer_and_reverse_the_gift(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    stream = await go_live(api, claims_for("cora", name="Cora"))
    sent = await send(api, alice, "g1", gift="love-bang", stream=stream, quantity=10)  # 250 coins
    assert sent["__typename"] == "GiftSent", sent
    assert await deliver_apple(api, apple.refund(tid)) == 200
    me = (await api.data(ME, user=alice))["me"]
    assert me["restricted"] is True and me["wallet"]["coins"] == 0
    stored = purchase_item(services)
    assert (stored["fromWallet"], stored["spent"], stored["covered"]) == (100, 250, 250)


async def test_a_refund_noted_while_a_redemption_is_about_to_credit_makes_it_ask_again(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN Apple refunds the purchase (and notifies) right after the redemption read it
    tid = apple.buy(APPLE_PRODUCT)
    store = services.app_store
    assert store is not None
    real = store.transaction_info
    raced: list[int] = []

    async def read_then_refund(transaction_id: str, environment: str = "production") -> Any:
        found = await real(transaction_id, environment)
        if not raced:
            raced.append(1)
            apple.refund(tid)
            await follow_store_transaction(services, "APP_STORE", transaction_id)
        return found

    monkeypatch.setattr(store, "transaction_info", read_then_refund)
    # WHEN it is redeemed THEN the credit sees the note, asks Apple again, and refuses
    refused = await redeem(api, alice, "k", apple.signed_transaction(tid))
    assert refused["__typename"] == "ReceiptInvalid"
    assert await coins_of(api, alice) == 0 and store_items(services, "pur_") == []


async def test_the_catch_up_finds_refunds_whose_notifications_were_lost(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tids = [apple.buy(APPLE_PRODUCT) for _ in range(3)]
    for n, tid in enumerate(tids):
        await redeem(api, alice, f"k{n}", apple.signed_transaction(tid))
    apple.page_size = 1  # pages of Apple's notification history
    apple.refund(tids[0], delivered=False)
    apple.refund(tids[1], delivered=False)
    apple.reverse_refund(tids[1], delivered=False)
    sandbox = apple_buy(apple, environment="Sandbox")  # a refund in the other environment
    tester = claims_for("app-review")
    await redeem(api, tester, "k", sandbox)
    apple.refund(next(t for t, r in apple.transactions.items() if r["environment"] == "Sandbox"))
    # WHEN the scheduled catch-up runs THEN each refund is taken back as the stores say now
    report = await catch_up(services)
    assert report.failed == [] and report.followed["APP_STORE"] == 3
    assert report.followed["APP_STORE_SANDBOX"] == 1
    assert await coins_of(api, alice) == 700 and await coins_of(api, tester) == 0
    # AND a second run changes nothing (and reads from where the first ended)
    assert (await catch_up(services)).failed == []
    assert await coins_of(api, alice) == 700


async def test_a_refund_of_a_purchase_never_redeemed_is_only_noted(
    api: Client, apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    assert await deliver_apple(api, apple.refund(tid)) == 200
    (note,) = store_items(services, "store#")
    assert note["notes"] == 1 and "accountId" not in note


# --- Google Play ------------------------------------------------------------------------------


async def test_googles_partial_and_full_voids_take_back_their_share(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    token = play_buy(google, alice, quantity=3)
    await redeem_play(api, alice, "k", token)
    assert await coins_of(api, alice) == 1050
    # WHEN Google refunds one unit of three and notifies (twice) THEN a third is taken back
    google.void(token, 1)
    partial = google.push(google.notification("voided", token, partial=True))
    assert await deliver_google(api, partial) == 200
    assert await deliver_google(api, partial) == 200
    assert await coins_of(api, alice) == 700
    assert purchase_item(services)["refunded"] == 499
    # WHEN the rest is voided (a full void) THEN every coin is back
    google.void(token)
    assert await deliver_google(api, google.push(google.notification("voided", token))) == 200
    assert await coins_of(api, alice) == 0
    assert purchase_item(services)["status"] == "REFUNDED"


async def test_forged_pushes_change_nothing(
    api: Client, alice: dict[str, Any], google: PlayStoreFake
) -> None:
    token = play_buy(google, alice)
    await redeem_play(api, alice, "k", token)
    google.void(token)
    note = google.notification("voided", token)
    assert await deliver_google(api, google.push(note, audience="https://attacker")) == 401
    assert await deliver_google(api, google.push(note, email="x@evil.example")) == 401
    assert await deliver_google(api, ("", google.push(note)[1])) == 401
    assert await deliver_google(api, (google.push(note)[0], b"{}")) == 400
    other = google.push(google.notification("test", package="com.other.app"))
    assert await deliver_google(api, other) == 200  # ours, about another app: acknowledged
    assert await coins_of(api, alice) == 350
    # the genuine one applies
    assert await deliver_google(api, google.push(note, audience=PUSH_AUDIENCE)) == 200
    assert await coins_of(api, alice) == 0


async def test_the_catch_up_reads_googles_voided_purchases(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    tokens = [play_buy(google, alice, quantity=2) for _ in range(2)]
    for n, token in enumerate(tokens):
        await redeem_play(api, alice, f"k{n}", token)
    google.void(tokens[0], 1)
    google.void(tokens[1])
    google.page_size = 1
    report = await catch_up(services)
    assert report.failed == [] and report.followed["PLAY_STORE"] == 2
    assert await coins_of(api, alice) == 350


async def test_a_catch_up_that_fails_late_in_its_window_keeps_the_days_it_finished(
    api: Client,
    alice: dict[str, Any],
    google: PlayStoreFake,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a purchase voided just now whose notification was lost, and a catch-up window of
    # five days whose third day Google does not answer (once)
    token = play_buy(google, alice)
    await redeem_play(api, alice, "k", token)
    google.void(token)
    store = services.play_store
    assert store is not None
    real, asked, refused = store.voided_page, [], []
    end = now()

    async def third_day_fails(start: datetime, until: datetime | None = None, *a: Any) -> Any:
        asked.append(start)
        if len(asked) == 3 and not refused:
            refused.append(start)
            raise TryAgain("Google did not answer")
        return await real(start, until, *a)

    monkeypatch.setattr(store, "voided_page", third_day_fails)
    # WHEN the catch-up runs THEN it stops at the third day and checkpoints the two before it
    report = await catch_up(services, since=end - timedelta(days=5), until=end)
    assert len(asked) == 3 and report.failed and await coins_of(api, alice) == 350
    mark = await services.purchases.mark("catchup#PLAY_STORE")
    assert mark is not None and mark["until"] == iso(end - timedelta(days=3))
    # WHEN it runs again THEN it reads on from there (an hour before it), and finds the void
    asked.clear()
    report = await catch_up(services, until=end)
    assert report.failed == [] and iso(asked[0]) == iso(end - timedelta(days=3, hours=1))
    assert len(asked) == 4 and await coins_of(api, alice) == 0


async def test_a_void_followed_while_a_redemption_is_about_to_bind_makes_it_ask_again(
    api: Client,
    alice: dict[str, Any],
    google: PlayStoreFake,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN Google voids the purchase right after the redemption read it, and the void is
    # followed before the redemption binds it (nothing credited yet: nothing to take back)
    token = play_buy(google, alice)
    store = services.play_store
    assert store is not None
    real = store.purchase
    raced: list[int] = []

    async def read_then_void(product_id: str, purchase_token: str) -> Any:
        found = await real(product_id, purchase_token)
        if not raced:
            raced.append(1)
            google.void(token)
            await follow_store_transaction(services, "PLAY_STORE", found.transaction_id)
        return found

    monkeypatch.setattr(store, "purchase", read_then_void)
    # WHEN it is redeemed THEN the binding carries the note, Google is asked again, and the
    # void is refused rather than credited over (its only notification is already spent)
    refused = await redeem_play(api, alice, "k", token)
    assert refused["__typename"] == "ReceiptInvalid"
    assert await coins_of(api, alice) == 0 and store_items(services, "pur_") == []


async def test_a_purchase_voided_before_it_is_redeemed_is_refused(
    api: Client, alice: dict[str, Any], google: PlayStoreFake
) -> None:
    token = play_buy(google, alice)
    google.void(token)
    assert await deliver_google(api, google.push(google.notification("voided", token))) == 200
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "ReceiptInvalid"


# --- deliveries that change nothing, or not yet ------------------------------------------------


async def test_test_notifications_are_acknowledged_and_change_nothing(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, google: PlayStoreFake
) -> None:
    await redeem(api, alice, "k", apple_buy(apple, alice))
    assert await deliver_apple(api, apple.notify("TEST")) == 200
    assert await deliver_google(api, google.push(google.notification("test"))) == 200
    assert await coins_of(api, alice) == 350


@pytest.mark.short_budget
async def test_a_store_that_does_not_answer_is_503_then_the_redelivery_applies_once(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    refund = apple.refund(tid)
    apple.fail("/inApps/v1/transactions", "500", times=1000)
    assert await deliver_apple(api, refund) == 503
    assert await coins_of(api, alice) == 350
    apple.faults.clear()
    for _ in range(2):  # Apple delivers it again
        assert await deliver_apple(api, refund) == 200
    assert await coins_of(api, alice) == 0
    assert purchase_item(services)["takenBack"] == 350


async def test_the_scheduled_function_runs_the_catch_up(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    google: PlayStoreFake,
    services: Services,
) -> None:
    import asyncio

    from handlers.store_catch_up import make_handler

    tid = apple.buy(APPLE_PRODUCT)
    await redeem(api, alice, "k", apple.signed_transaction(tid))
    apple.refund(tid, delivered=False)
    summary = await asyncio.to_thread(make_handler(services), {}, None)
    assert summary["followed"] == {"APP_STORE": 1} and summary["failed"] == 0
    assert await coins_of(api, alice) == 0
