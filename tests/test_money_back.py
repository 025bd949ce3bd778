"""Money back, exactly (issue "Money back"): what a purchase's coins are taken back for follows
the charge as Stripe holds it now (tests/stripe_fake.py), whatever the notifications said, in
whatever order, however often; reversals are accounted per gift and entry, exactly once; what
cannot be reversed is owed and repaid. One regression test per defect the issue lists, each
through both entrypoints (the `api` fixture), each failing on the code before it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.config import Settings
from infra.dynamo import TransactionCancelled
from infra.earnings import bucket_seconds
from infra.services import Services
from tests.clients import Client, claims_for
from tests.conftest import Clock, scan
from tests.faults import Faults, error
from tests.gifting import go_live, send
from tests.stripe_fake import StripeFake
from tests.test_events import create, join
from tests.test_refunds import REFUND
from tests.test_stripe import HOLD, answer, buy, deliver
from tests.test_withdrawals import request

PURCHASE = """mutation B($i: PurchaseCoinsInput!) { purchaseCoins(input: $i) { __typename
  ... on CoinsPurchased { purchase { id coins status refunded { amount } coinsTakenBack } } } }"""
ME = """{ me { restricted wallet { coins diamonds }
  earnings { diamonds availableDiamonds pendingDiamonds owedDiamonds }
  transactions(first: 100) { edges { node { kind coins diamonds referenceId } } } } }"""


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    budget = 0.3 if request.node.get_closest_marker("short_budget") else 4.0
    return Settings(
        table_prefix="test-",
        catalog_cache_seconds=60,
        retry_budget_seconds=budget,
        earnings_hold_seconds=HOLD,
    )


async def me(api: Client, user: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = (await api.data(ME, user=user))["me"]
    return found


async def purchase(api: Client, user: dict[str, Any], key: str = "k") -> dict[str, Any]:
    """The purchase as it is now (a replay of its key answers it)."""
    variables = {
        "i": {"packageId": "coins-350", "paymentToken": "pm_card_visa", "idempotencyKey": key}
    }
    result = (await api.data(PURCHASE, variables, user))["purchaseCoins"]
    found: dict[str, Any] = result["purchase"]
    return found


def kinds(account: dict[str, Any], kind: str, field: str = "coins") -> list[int]:
    return [e["node"][field] for e in account["transactions"]["edges"] if e["node"]["kind"] == kind]


async def refund_in_dashboard(
    api: Client, stripe: StripeFake, charge: str, amount: int
) -> tuple[bytes, str]:
    stripe.refund(charge, amount)
    return stripe.event("charge.refunded", dict(stripe.charges[charge]))


async def fan_spends(
    api: Client, stripe: StripeFake, spend: int = 300, key: str = "k"
) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """A fan buys 350 coins ($4.99) and gifts `spend` of them to Cora's stream, 100 at a time
    (the newest last); Cora's diamonds are pending (a 7-day hold)."""
    creator, fan = claims_for("cora"), claims_for("fan")
    stream = await go_live(api, creator)
    answer(await buy(api, fan, key))
    for n in range(spend // 100):
        assert (await send(api, fan, f"g{n}", gift="rainbow-puke", stream=stream))[
            "__typename"
        ] == "GiftSent"
    return list(stripe.charges)[-1], creator, fan, stream


# --- 1. partial refunds are cumulative -------------------------------------------------------


@pytest.mark.parametrize("order", ["in order", "reordered"])
async def test_two_partial_refunds_take_what_their_total_implies(
    api: Client, stripe: StripeFake, order: str
) -> None:
    charge, creator, fan, _ = await fan_spends(api, stripe, spend=300)
    first = await refund_in_dashboard(api, stripe, charge, 100)
    second = await refund_in_dashboard(api, stripe, charge, 100)
    for delivery in (first, second) if order == "in order" else (second, first, second):
        assert (await deliver(api, *delivery))[0] == 200
    # 200 of 499 cents: ceil(350 x 200 / 499) = 141 coins, 50 from the wallet, 91 spent
    bought = await purchase(api, fan)
    assert (bought["refunded"]["amount"], bought["coinsTakenBack"]) == (200, 141)
    fan_now = await me(api, fan)
    assert fan_now["wallet"]["coins"] == 0 and fan_now["restricted"]
    assert sum(kinds(fan_now, "REFUND")) == -50
    cora = await me(api, creator)
    assert cora["earnings"]["pendingDiamonds"] == 300 - 91


# --- 2. a lost dispute closed before it was opened --------------------------------------------


async def test_a_lost_dispute_delivered_closed_first_takes_every_coin(
    api: Client, stripe: StripeFake
) -> None:
    charge, creator, fan, _ = await fan_spends(api, stripe, spend=100)
    dispute = stripe.dispute(charge)
    opened = stripe.event("charge.dispute.created", dispute)
    closed = stripe.event("charge.dispute.closed", stripe.update_dispute(dispute["id"], "lost"))
    for delivery in (closed, opened):  # out of order
        assert (await deliver(api, *delivery))[0] == 200
    fan_now = await me(api, fan)
    assert fan_now["wallet"]["coins"] == 0 and fan_now["restricted"]
    assert (await purchase(api, fan))["coinsTakenBack"] == 350
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 0


# --- 3. an inquiry moves no money -------------------------------------------------------------


async def test_an_inquiry_closed_as_warning_closed_takes_nothing(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    answer(await buy(api, alice, "k"))
    inquiry = stripe.dispute(next(iter(stripe.charges)), status="warning_needs_response")
    for delivery in (
        stripe.event("charge.dispute.created", inquiry),
        stripe.event(
            "charge.dispute.closed", stripe.update_dispute(inquiry["id"], "warning_closed")
        ),
    ):
        assert (await deliver(api, *delivery))[0] == 200
    alice_now = await me(api, alice)
    assert alice_now["wallet"]["coins"] == 350 and not alice_now["restricted"]
    assert (await purchase(api, alice))["coinsTakenBack"] == 0


# --- 4. a won dispute gives back everything it took -------------------------------------------


async def test_after_a_won_dispute_a_full_refund_takes_the_spent_coins_again(
    api: Client, stripe: StripeFake
) -> None:
    charge, creator, fan, _ = await fan_spends(api, stripe, spend=300)
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    won = stripe.update_dispute(dispute["id"], "won")
    assert (await deliver(api, *stripe.event("charge.dispute.closed", won)))[0] == 200
    assert (await purchase(api, fan))["coinsTakenBack"] == 0
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 300
    # WHEN the whole charge is then refunded in the dashboard
    assert (await deliver(api, *await refund_in_dashboard(api, stripe, charge, 499)))[0] == 200
    # THEN all 350 coins are taken back: 50 from the wallet, 300 found spent
    fan_now = await me(api, fan)
    assert fan_now["restricted"] and fan_now["wallet"]["coins"] == 0
    assert (await purchase(api, fan))["coinsTakenBack"] == 350
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 0


async def test_refund_purchase_after_a_won_dispute_refuses_spent_coins(
    api: Client, stripe: StripeFake, admin: dict[str, Any]
) -> None:
    charge, _creator, fan, _ = await fan_spends(api, stripe, spend=300)
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    won = stripe.update_dispute(dispute["id"], "won")
    assert (await deliver(api, *stripe.event("charge.dispute.closed", won)))[0] == 200
    bought = await purchase(api, fan)
    refused = (await api.data(REFUND, {"id": bought["id"]}, admin))["refundPurchase"]
    assert (refused["__typename"], refused["required"], refused["available"]) == (
        "InsufficientCoins",
        350,
        50,
    )
    assert stripe.charges[charge]["amount_refunded"] == 0


# --- 5 and 6. an admin's refund and refunds made in the dashboard ------------------------------


@pytest.mark.short_budget
async def test_a_dashboard_refund_during_a_stuck_admin_refund_takes_only_its_part(
    api: Client, alice: dict[str, Any], stripe: StripeFake, admin: dict[str, Any]
) -> None:
    answer(await buy(api, alice, "k"))
    bought = await purchase(api, alice)
    stripe.fail("/v1/refunds", "500", times=1000)  # the admin's refund gets no answer
    stuck = await api.gql(REFUND, {"id": bought["id"]}, admin)
    assert stuck["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    stripe.faults.clear()
    # WHEN 100 of 499 cents are refunded in the dashboard meanwhile
    assert (
        await deliver(api, *await refund_in_dashboard(api, stripe, next(iter(stripe.charges)), 100))
    )[0] == 200
    # THEN only its 71 coins are taken (from those the admin's refund holds)
    partial = await purchase(api, alice)
    assert (partial["status"], partial["coinsTakenBack"]) == ("COMPLETED", 71)
    # AND the admin's retry refunds the other 399 cents and takes the rest
    done = (await api.data(REFUND, {"id": bought["id"]}, admin))["refundPurchase"]
    assert done["purchase"]["status"] == "REFUNDED"
    charge = next(iter(stripe.charges.values()))
    assert charge["amount_refunded"] == 499
    assert sorted(r["amount"] for r in stripe.refunds.values()) == [100, 399]
    alice_now = await me(api, alice)
    assert alice_now["wallet"]["coins"] == 0 and sum(kinds(alice_now, "REFUND")) == -350


async def test_an_admin_refund_racing_a_dashboard_refund_takes_the_coins_once(
    api: Client, alice: dict[str, Any], stripe: StripeFake, admin: dict[str, Any]
) -> None:
    answer(await buy(api, alice, "k"))
    answer(await buy(api, alice, "k2", package="coins-70"))  # coins that must stay
    bought = await purchase(api, alice)
    dashboard = await refund_in_dashboard(api, stripe, next(iter(stripe.charges)), 100)
    results = await asyncio.gather(
        api.data(REFUND, {"id": bought["id"]}, admin), deliver(api, *dashboard)
    )
    assert results[1][0] == 200
    assert (await purchase(api, alice))["coinsTakenBack"] == 350
    alice_now = await me(api, alice)
    assert alice_now["wallet"]["coins"] == 70
    assert sum(kinds(alice_now, "REFUND")) == -350


# --- 7. every gift reversed at most once ------------------------------------------------------


async def test_two_refunds_never_reverse_one_gift_twice(
    api: Client, stripe: StripeFake, services: Services
) -> None:
    # GIVEN a fan's 700 coins: 300 to Ava, then 300 to Bea (the newest); another fan's gift
    # to Bea lands in the same hold bucket
    ava, bea, fan, other = (claims_for(n) for n in ("ava", "bea", "fan", "other"))
    ava_stream, bea_stream = await go_live(api, ava), await go_live(api, bea)
    answer(await buy(api, fan, "k", package="coins-700"))
    charge = list(stripe.charges)[-1]
    assert (await send(api, fan, "a", gift="rainbow-puke", stream=ava_stream, quantity=3))[
        "__typename"
    ] == "GiftSent"
    assert (await send(api, fan, "b", gift="rainbow-puke", stream=bea_stream, quantity=3))[
        "__typename"
    ] == "GiftSent"
    answer(await buy(api, other, "o"))
    assert (await send(api, other, "o", gift="rainbow-puke", stream=bea_stream, quantity=3))[
        "__typename"
    ] == "GiftSent"
    # WHEN the charge ($9.99) is refunded in two halves
    for amount in (500, 499):
        assert (await deliver(api, *await refund_in_dashboard(api, stripe, charge, amount)))[
            0
        ] == 200
    # THEN the fan's 600 spent coins reverse each gift once: Bea keeps the other fan's 300
    assert (await me(api, bea))["earnings"]["pendingDiamonds"] == 300
    assert (await me(api, ava))["earnings"]["pendingDiamonds"] == 0
    reversed_ = {t["id"]: t.get("reversedCoins", 0) for t in scan(services, "transfers")}
    assert sorted(reversed_.values()) == [0, 300, 300]


# --- 8. event entries paid with charged-back coins ---------------------------------------------


async def test_an_event_entry_paid_with_disputed_coins_is_reversed(
    api: Client, stripe: StripeFake
) -> None:
    host, fan = claims_for("alt"), claims_for("fan")
    event = await create(api, host, coins=300)
    answer(await buy(api, fan, "k"))
    assert (await join(api, fan, event, "j"))["__typename"] == "EventJoined"
    dispute = stripe.dispute(list(stripe.charges)[-1])
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    alt = await me(api, host)
    assert alt["earnings"]["pendingDiamonds"] == 0 and alt["wallet"]["diamonds"] == 0
    assert (await me(api, fan))["restricted"]


# --- 9. a verdict that lands while a reversal runs --------------------------------------------


async def test_a_won_verdict_racing_the_reversal_walk_ends_restored(
    api: Client, stripe: StripeFake, services: Services
) -> None:
    charge, creator, fan, _ = await fan_spends(api, stripe, spend=300)
    dispute = stripe.dispute(charge)
    opened = stripe.event("charge.dispute.created", dispute)
    # WHEN the dispute is won at the processor while the first delivery is reversing gifts
    verdict: list[Any] = []
    test_loop = asyncio.get_running_loop()  # the handler may run on a loop of its own

    async def win_meanwhile(real: Any, operation: str, kwargs: dict[str, Any]) -> Any:
        answer_ = await real(operation, kwargs)
        if not verdict:
            won = stripe.update_dispute(dispute["id"], "won")
            closing = deliver(api, *stripe.event("charge.dispute.closed", won))
            verdict.append(asyncio.run_coroutine_threadsafe(closing, test_loop))
        return answer_

    faults = Faults(services.dynamo)
    faults.on("transact_write_items", win_meanwhile, times=1, after=1)
    first = await deliver(api, *opened)
    faults.clear()
    assert (await asyncio.wrap_future(verdict[0]))[0] == 200
    if first[0] != 200:  # superseded and not settled in its budget: Stripe delivers it again
        assert (await deliver(api, *opened))[0] == 200
    # THEN everything is back: coins, diamonds, no restriction
    fan_now = await me(api, fan)
    assert not fan_now["restricted"] and fan_now["wallet"]["coins"] == 50
    assert (await purchase(api, fan))["coinsTakenBack"] == 0
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 300


# --- 10. payment_intent.succeeded is read, not trusted -----------------------------------------


async def test_a_succeeded_payment_credits_the_purchase_it_paid_for_only(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    bob = claims_for("bob")
    # GIVEN Alice's $99.99 purchase waits for 3-D Secure, and Bob pays $0.99
    waiting = answer(await buy(api, alice, "k", "pm_card_threeDSecure2Required", "coins-7000"))
    assert waiting["__typename"] == "PaymentActionRequired"
    answer(await buy(api, bob, "k", package="coins-70"))
    cheap = next(i for i, v in stripe.intents.items() if v["amount"] == 99)
    # WHEN an event names Bob's payment with Alice's record in its metadata
    forged_meta = {**stripe.intents[cheap], "metadata": {"recordKey": "alice#purchaseCoins#k"}}
    assert (await deliver(api, *stripe.event("payment_intent.succeeded", forged_meta)))[0] == 200
    # THEN the payment is read from Stripe: Bob's, credited already; Alice gets nothing
    assert (await me(api, alice))["wallet"]["coins"] == 0
    assert (await me(api, bob))["wallet"]["coins"] == 70


async def test_a_charge_never_names_two_purchases(services: Services) -> None:
    await services.dynamo.transact([services.purchases.alias_action("ch_1", "pur_a")])
    with pytest.raises(TransactionCancelled):
        await services.dynamo.transact([services.purchases.alias_action("ch_1", "pur_b")])
    await services.dynamo.transact([services.purchases.alias_action("ch_1", "pur_a")])


# --- also seen ---------------------------------------------------------------------------------


@pytest.mark.short_budget
async def test_a_dispute_during_a_stuck_admin_refund_is_applied_at_once(
    api: Client, stripe: StripeFake, admin: dict[str, Any]
) -> None:
    charge, _creator, fan, _ = await fan_spends(api, stripe, spend=0)
    bought = await purchase(api, fan)
    stripe.fail("/v1/refunds", "500", times=1000)
    stuck = await api.gql(REFUND, {"id": bought["id"]}, admin)
    assert stuck["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    stripe.faults.clear()  # Stripe answers again; the admin has not retried
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    assert (await purchase(api, fan))["coinsTakenBack"] == 350
    assert (await me(api, fan))["wallet"]["coins"] == 0


async def test_a_partial_dispute_takes_its_part(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    answer(await buy(api, alice, "k"))
    dispute = stripe.dispute(next(iter(stripe.charges)), amount=200)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    assert (await me(api, alice))["wallet"]["coins"] == 350 - 141
    lost = stripe.update_dispute(dispute["id"], "lost")
    assert (await deliver(api, *stripe.event("charge.dispute.closed", lost)))[0] == 200
    assert (await purchase(api, alice))["refunded"]["amount"] == 200


async def test_a_refund_that_fails_gives_the_coins_back(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    answer(await buy(api, alice, "k"))
    charge = next(iter(stripe.charges))
    assert (await deliver(api, *await refund_in_dashboard(api, stripe, charge, 499)))[0] == 200
    assert (await purchase(api, alice))["status"] == "REFUNDED"
    failed = stripe.fail_refund(next(iter(stripe.refunds)))
    assert (await deliver(api, *stripe.event("charge.refund.updated", failed)))[0] == 200
    bought = await purchase(api, alice)
    assert (bought["status"], bought["coinsTakenBack"], bought["refunded"]["amount"]) == (
        "COMPLETED",
        0,
        0,
    )
    assert (await me(api, alice))["wallet"]["coins"] == 350


async def test_funds_reinstated_give_the_coins_back(api: Client, stripe: StripeFake) -> None:
    charge, creator, fan, _ = await fan_spends(api, stripe, spend=100)
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    assert (await me(api, fan))["restricted"]
    won = stripe.update_dispute(dispute["id"], "won")
    assert (await deliver(api, *stripe.event("charge.dispute.funds_reinstated", won)))[0] == 200
    fan_now = await me(api, fan)
    assert not fan_now["restricted"] and fan_now["wallet"]["coins"] == 250
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 100


async def test_a_payment_that_succeeds_after_its_purchase_failed_is_refunded(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    declined = answer(await buy(api, alice, "k", "pm_card_chargeDeclined"))
    assert declined["__typename"] == "PaymentDeclined"
    intent = next(iter(stripe.intents))
    # WHEN the buyer pays that intent another way at Stripe, and its event comes
    succeeded = stripe.authenticate(intent)
    assert (await deliver(api, *stripe.event("payment_intent.succeeded", succeeded)))[0] == 200
    # THEN the money goes back; the buyer was told it failed, and still is
    charge = stripe.charges[succeeded["latest_charge"]]
    assert charge["amount_refunded"] == charge["amount"]
    assert answer(await buy(api, alice, "k", "pm_card_chargeDeclined")) == declined
    assert (await me(api, alice))["wallet"]["coins"] == 0


async def test_a_lagging_sender_index_cannot_hide_a_gift(
    api: Client, stripe: StripeFake, services: Services
) -> None:
    charge, creator, _fan, _ = await fan_spends(api, stripe, spend=300)
    # GIVEN the bySender index has not caught up with the fan's gifts (it never does here)
    lagging = services.dynamo.query

    async def query(table: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("index") == "bySender":
            return [], None
        return await lagging(table, *args, **kwargs)

    services.dynamo.query = query  # type: ignore[method-assign]
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    assert (await me(api, creator))["earnings"]["pendingDiamonds"] == 0


@pytest.mark.short_budget
async def test_a_walk_resumed_after_the_hold_makes_matured_diamonds_owed(
    api: Client, stripe: StripeFake, services: Services, clock: Clock
) -> None:
    charge, creator, _fan, _ = await fan_spends(api, stripe, spend=300)
    dispute = stripe.dispute(charge)
    opened = stripe.event("charge.dispute.created", dispute)
    # GIVEN the delivery stops after its first reversal (DynamoDB busy), and is retried after
    # the diamonds matured
    faults = Faults(services.dynamo)
    faults.on("transact_write_items", error("ThrottlingException"), times=10_000, after=2)
    status, _ = await deliver(api, *opened)
    assert status == 503
    faults.clear()
    clock.ahead = HOLD + 2 * bucket_seconds(HOLD)
    assert (await deliver(api, *opened))[0] == 200
    cora = await me(api, creator)
    # THEN what had matured was not taken from a bucket as if pending: it is owed, and repaid
    # at once from the available diamonds (CLAWBACK)
    assert cora["earnings"]["pendingDiamonds"] == 0
    assert cora["earnings"]["availableDiamonds"] == 0 and cora["earnings"]["owedDiamonds"] == 0
    assert (
        kinds(cora, "CLAWBACK", "diamonds")
        and sum(kinds(cora, "CLAWBACK", "diamonds") + kinds(cora, "GIFT_REVERSED", "diamonds"))
        == -300
    )


async def test_withdrawn_diamonds_are_owed_and_repaid_from_new_earnings(
    api: Client, stripe: StripeFake, clock: Clock
) -> None:
    charge, creator, _fan, stream = await fan_spends(api, stripe, spend=300, key="k")
    # GIVEN the hold passed and Cora withdrew her 300 diamonds... she needs 2,000 at least:
    # give her more from a second fan, then withdraw it all
    other = claims_for("other")
    answer(await buy(api, other, "o", package="coins-3500"))
    await send(api, other, "o", gift="galaxy", stream=stream, quantity=2)  # 2,000 coins
    clock.ahead = HOLD + 2 * bucket_seconds(HOLD)
    assert (await request(api, creator, 2300, "w"))["__typename"] == "WithdrawalRequested"
    # WHEN the fan's payment is disputed
    dispute = stripe.dispute(charge)
    assert (await deliver(api, *stripe.event("charge.dispute.created", dispute)))[0] == 200
    # THEN the 300 diamonds are owed: nothing is available, nothing to withdraw
    cora = (await me(api, creator))["earnings"]
    assert (cora["owedDiamonds"], cora["availableDiamonds"]) == (300, 0)
    # AND new earnings repay the debt before anything is withdrawable
    await send(api, other, "o2", gift="galaxy", stream=stream, quantity=1)  # 1,000
    clock.ahead += HOLD + 2 * bucket_seconds(HOLD)
    cora = (await me(api, creator))["earnings"]
    assert (cora["owedDiamonds"], cora["availableDiamonds"]) == (0, 700)
    refused = await request(api, creator, 2000, "w2")
    assert (refused["__typename"], refused["available"]) == ("InsufficientDiamonds", 700)
    assert sum(kinds(await me(api, creator), "CLAWBACK", "diamonds")) == -300


async def test_an_admin_refund_that_fails_at_the_processor_gives_the_coins_back(
    api: Client, alice: dict[str, Any], stripe: StripeFake, admin: dict[str, Any]
) -> None:
    answer(await buy(api, alice, "k"))
    bought = await purchase(api, alice)
    stripe.api_refunds_fail = True
    failed = (await api.data(REFUND, {"id": bought["id"]}, admin))["refundPurchase"]
    assert failed["__typename"] == "InvalidState" and "failed" in failed["message"]
    assert (await purchase(api, alice))["status"] == "COMPLETED"
    assert (await me(api, alice))["wallet"]["coins"] == 350
    stream = await go_live(api, claims_for("cora"))
    assert (await send(api, alice, "g", gift="rainbow-puke", stream=stream))["__typename"] == (
        "GiftSent"  # the coins are spendable again
    )


async def test_a_clear_lifts_only_the_restrictions_it_read(services: Services) -> None:
    """An admin's clear retried after a new restriction landed (its first write timed out
    after applying) lifts what it read, never the new one."""
    await services.accounts.create("fan", "Fan", "1990-01-01")
    await services.dynamo.transact([services.accounts.take_back_action("fan", 0, 0, "pur_a")])
    read = services.accounts.get

    async def stale(account_id: str, consistent: bool = False) -> Any:
        found = await read(account_id, consistent)
        return {**found, "restrictedBy": {"pur_a"}}  # as the first try read it

    await services.accounts.clear_restriction("fan", "root", "t1")
    await services.dynamo.transact([services.accounts.take_back_action("fan", 0, 0, "pur_b")])
    services.accounts.get = stale  # type: ignore[method-assign]
    await services.accounts.clear_restriction("fan", "root", "t1")  # the retry
    services.accounts.get = read  # type: ignore[method-assign]
    assert (await read("fan", True) or {})["restrictedBy"] == {"pur_b"}
