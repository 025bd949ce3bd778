"""Real money through Stripe (against a local fake of its API, tests/stripe_fake.py): a
purchase credits exactly once under every failure mode; webhooks apply each event exactly once
under duplicate, out-of-order and forged deliveries; refunds and chargebacks take coins back,
restrict the buyer and reverse creators' pending diamonds, with the ledger promise holding."""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra.config import Settings
from infra.services import Services
from infra.stripe_payments import StripePaymentProvider
from tests.clients import Client, claims_for
from tests.conftest import scan
from tests.faults import Faults, error
from tests.gifting import go_live, send
from tests.stripe_fake import SECRET_KEY, StripeFake
from tests.test_events import JOIN, create
from tests.test_purchases import coins_of
from tests.test_withdrawals import request

HOLD = 7 * 24 * 3600
BUY = """mutation B($i: PurchaseCoinsInput!) { purchaseCoins(input: $i) { __typename
  ... on CoinsPurchased { purchase { id coins } wallet { coins } }
  ... on PaymentActionRequired { clientSecret purchaseId }
  ... on UserError { message } } }"""
ME = """{ me { restricted wallet { coins diamonds }
  earnings { diamonds availableDiamonds pendingDiamonds }
  transactions(first: 50) { edges { node { kind coins diamonds referenceId } } } } }"""


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    budget = 0.3 if request.node.get_closest_marker("short_budget") else 4.0
    return Settings(
        table_prefix="test-",
        catalog_cache_seconds=60,
        retry_budget_seconds=budget,
        earnings_hold_seconds=HOLD,
    )


async def buy(
    api: Client,
    user: dict[str, Any],
    key: str,
    method: str = "pm_card_visa",
    package: str = "coins-350",
) -> dict[str, Any]:
    variables = {"i": {"packageId": package, "paymentToken": method, "idempotencyKey": key}}
    result = await api.gql(BUY, variables, user)
    return result


def answer(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("errors"), result
    payload: dict[str, Any] = result["data"]["purchaseCoins"]
    return payload


async def deliver(api: Client, payload: bytes, signature: str) -> tuple[int, Any]:
    response = await api.request(
        "POST", payload, headers={"Stripe-Signature": signature}, path="/webhooks/stripe"
    )
    return response.status, response.json


# --- the provider's requests ----------------------------------------------------------------


async def test_requests_have_stripes_documented_shape(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    result = answer(await buy(api, alice, "k1"))
    assert result["__typename"] == "CoinsPurchased" and result["wallet"]["coins"] == 350
    create, confirm = stripe.requests
    purchase = result["purchase"]["id"]
    assert (create["method"], create["path"]) == ("POST", "/v1/payment_intents")
    assert create["authorization"] == f"Bearer {SECRET_KEY}"
    assert create["idempotency_key"] == f"{purchase}:create"
    assert create["form"] == {
        "amount": "499",
        "currency": "usd",
        "metadata[purchaseId]": purchase,
        "metadata[accountId]": "alice",
        "metadata[recordKey]": "alice#purchaseCoins#k1",
        "payment_method_types[0]": "card",
    }
    intent = next(iter(stripe.intents))
    assert (confirm["method"], confirm["path"]) == ("POST", f"/v1/payment_intents/{intent}/confirm")
    assert confirm["form"] == {"payment_method": "pm_card_visa"}
    assert confirm["idempotency_key"] == f"{purchase}:confirm"


# --- a purchase, exactly once under every failure mode ----------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/payment_intents", "500"),
        ("/confirm", "500"),
        ("/confirm", "429"),
        ("/v1/payment_intents", "timeout-before"),
        ("/v1/payment_intents", "timeout-after"),
        ("/confirm", "timeout-before"),
        ("/confirm", "timeout-after"),
    ],
)
async def test_a_purchase_credits_once_whatever_stripe_does(
    api: Client, alice: dict[str, Any], stripe: StripeFake, services: Services, path: str, kind: str
) -> None:
    stripe.fail(path, kind)
    first = answer(await buy(api, alice, "k"))
    again = answer(await buy(api, alice, "k"))
    assert first["__typename"] == "CoinsPurchased" and again == first
    assert await coins_of(api, alice) == 350
    assert len(stripe.intents) == 1 and len(stripe.charges) == 1  # one payment, charged once


async def test_a_decline_names_stripes_code_and_is_remembered(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    declined = answer(await buy(api, alice, "k", "pm_card_chargeDeclined"))
    assert declined["__typename"] == "PaymentDeclined" and "generic_decline" in declined["message"]
    assert answer(await buy(api, alice, "k", "pm_card_chargeDeclined")) == declined
    assert await coins_of(api, alice) == 0 and stripe.charges == {}


@pytest.mark.short_budget
async def test_stripe_down_is_try_again_then_the_retry_charges_once(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    stripe.fail("/confirm", "429", times=1000)
    result = await buy(api, alice, "k")
    assert result["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert await coins_of(api, alice) == 0
    stripe.faults.clear()
    assert answer(await buy(api, alice, "k"))["__typename"] == "CoinsPurchased"
    assert len(stripe.intents) == 1 and len(stripe.charges) == 1


@pytest.mark.short_budget
async def test_a_retry_after_stripe_forgot_the_key_resumes_the_same_payment(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    # GIVEN the confirmation charged the card but no answer came back for the whole request
    stripe.fail("/confirm", "timeout-after", times=1)
    stripe.fail("/confirm", "500", times=1000)
    assert (await buy(api, alice, "k"))["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    # WHEN the buyer retries days later (Stripe kept idempotency keys for 24 hours)
    stripe.faults.clear()
    stripe.forget_keys()
    result = answer(await buy(api, alice, "k"))
    # THEN the stored PaymentIntent is resumed, not a second one created: charged once
    assert result["__typename"] == "CoinsPurchased"
    assert len(stripe.intents) == 1 and len(stripe.charges) == 1
    assert await coins_of(api, alice) == 350


async def test_authentication_then_the_webhook_credits_exactly_once(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    # GIVEN a card that needs 3-D Secure
    action = answer(await buy(api, alice, "k", "pm_card_threeDSecure2Required"))
    assert action["__typename"] == "PaymentActionRequired"
    intent = next(iter(stripe.intents))
    assert action["clientSecret"] == stripe.intents[intent]["client_secret"]
    assert await coins_of(api, alice) == 0
    # WHEN the buyer authenticates and Stripe sends payment_intent.succeeded (twice)
    succeeded = stripe.authenticate(intent)
    payload, signature = stripe.event("payment_intent.succeeded", succeeded)
    assert await deliver(api, payload, signature) == (200, {"received": True})
    assert (await deliver(api, payload, signature))[1]["duplicate"] is True
    # THEN the coins arrive once, and the buyer's retry with the key answers the purchase
    assert await coins_of(api, alice) == 350
    retried = answer(await buy(api, alice, "k", "pm_card_threeDSecure2Required"))
    assert retried["__typename"] == "CoinsPurchased"
    assert retried["purchase"]["id"] == action["purchaseId"]
    assert await coins_of(api, alice) == 350


# --- webhooks -------------------------------------------------------------------------------


async def test_forged_and_replayed_deliveries_are_refused(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    action = answer(await buy(api, alice, "k", "pm_card_threeDSecure2Required"))
    succeeded = stripe.authenticate(next(iter(stripe.intents)))
    forged = stripe.event("payment_intent.succeeded", succeeded, secret="whsec_attacker")
    stale = stripe.event("payment_intent.succeeded", succeeded, at=int(time.time()) - 3600)
    for payload, signature in (forged, stale, (forged[0], "")):
        status, _ = await deliver(api, payload, signature)
        assert status == 400
    tampered = stripe.event("payment_intent.succeeded", succeeded)
    assert (await deliver(api, tampered[0].replace(b"pi_", b"px_"), tampered[1]))[0] == 400
    assert await coins_of(api, alice) == 0 and action["__typename"] == "PaymentActionRequired"


async def test_a_dashboard_refund_takes_coins_back_in_proportion(
    api: Client, alice: dict[str, Any], stripe: StripeFake, services: Services
) -> None:
    answer(await buy(api, alice, "k"))  # 350 coins for $4.99
    charge = next(iter(stripe.charges))
    # a partial refund of $1.00 takes back ceil(350 x 100 / 499) = 71 coins
    stripe.refund(charge, 100)
    partial = stripe.event("charge.refunded", stripe.charges[charge])
    assert (await deliver(api, *partial))[0] == 200
    assert await coins_of(api, alice) == 350 - 71
    # the rest, delivered twice and then the partial one again, late: nothing counted twice
    stripe.refund(charge, 399)
    full = stripe.event("charge.refunded", stripe.charges[charge])
    for delivery in (full, full, partial):
        assert (await deliver(api, *delivery))[0] == 200
    assert await coins_of(api, alice) == 0
    me = (await api.data(ME, user=alice))["me"]
    assert [
        e["node"]["coins"] for e in me["transactions"]["edges"] if e["node"]["kind"] == "REFUND"
    ] == [-279, -71]
    assert not me["restricted"]
    stored = [p for p in scan(services, "purchases") if p["id"].startswith("pur_")]
    assert stored[0]["status"] == "REFUNDED"


@pytest.mark.short_budget
async def test_a_delivery_while_dynamodb_is_busy_is_503_then_applies_once(
    api: Client, alice: dict[str, Any], stripe: StripeFake, services: Services
) -> None:
    answer(await buy(api, alice, "k"))
    charge = next(iter(stripe.charges))
    stripe.refund(charge, 100)
    partial = stripe.event("charge.refunded", stripe.charges[charge])
    # every DynamoDB write throttled past the request's retry budget
    faults = Faults(services.dynamo)
    for operation in ("transact_write_items", "put_item", "update_item"):
        faults.on(operation, error("ThrottlingException"), times=10_000)
    status, body = await deliver(api, *partial)
    assert (status, body) == (503, {"error": "busy; deliver this event again"})
    assert await coins_of(api, alice) == 350
    # Stripe delivers it again once DynamoDB has room: applied once
    faults.clear()
    for _ in range(2):
        assert (await deliver(api, *partial))[0] == 200
    assert await coins_of(api, alice) == 350 - 71


async def _fan_spends(
    api: Client, stripe: StripeFake
) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """A fan buys 350 coins and gifts 300 of them to a creator's stream (pending diamonds)."""
    creator, fan = claims_for("cora"), claims_for("fan")
    stream = await go_live(api, creator)
    answer(await buy(api, fan, "k"))
    await send(api, fan, "g1", gift="rainbow-puke", stream=stream, quantity=2)  # 200
    await send(api, fan, "g2", gift="rainbow-puke", stream=stream)  # 100, the newest
    return next(iter(stripe.charges)), creator, fan, stream


async def test_a_chargeback_of_spent_coins_restricts_and_reverses_pending_diamonds(
    api: Client, stripe: StripeFake, services: Services, admin: dict[str, Any]
) -> None:
    charge, creator, fan, stream = await _fan_spends(api, stripe)
    dispute = stripe.dispute(charge)
    opened = stripe.event("charge.dispute.created", dispute)
    assert (await deliver(api, *opened))[0] == 200
    assert (await deliver(api, *opened))[0] == 200  # a duplicate changes nothing
    # THEN the 50 unspent coins are taken back (CHARGEBACK), and for the 300 spent the buyer is
    # restricted and the creator's pending diamonds are reversed
    fan_now = (await api.data(ME, user=fan))["me"]
    assert fan_now["restricted"] and fan_now["wallet"]["coins"] == 0
    kinds = [(e["node"]["kind"], e["node"]["coins"]) for e in fan_now["transactions"]["edges"]]
    assert ("CHARGEBACK", -50) in kinds
    cora = (await api.data(ME, user=creator))["me"]
    assert cora["earnings"]["pendingDiamonds"] == 0 and cora["wallet"]["diamonds"] == 0
    reversed_ = [
        e["node"]["diamonds"]
        for e in cora["transactions"]["edges"]
        if e["node"]["kind"] == "GIFT_REVERSED"
    ]
    assert sorted(reversed_) == [-200, -100]
    signals = sum(s.get("fromRestricted", 0) for s in scan(services, "earnings"))
    assert signals == 300  # the creator's review signal: diamonds from a disputed payer
    # AND the restricted buyer can no longer buy, gift or join
    assert answer(await buy(api, fan, "k2"))["__typename"] == "AccountRestricted"
    gift = await send(api, fan, "g3", gift="rose", stream=stream)
    assert gift["__typename"] == "AccountRestricted"
    event = await create(api, creator, coins=1)
    joined = (await api.data(JOIN, {"id": event, "key": "j"}, fan))["joinEvent"]
    assert joined["__typename"] == "AccountRestricted"
    # WHEN the dispute is won: coins back, diamonds back, restriction lifted
    closed = stripe.event("charge.dispute.closed", stripe.update_dispute(dispute["id"], "won"))
    assert (await deliver(api, *closed))[0] == 200
    assert (await deliver(api, *closed))[0] == 200
    fan_after = (await api.data(ME, user=fan))["me"]
    assert not fan_after["restricted"] and fan_after["wallet"]["coins"] == 50
    cora_after = (await api.data(ME, user=creator))["me"]
    assert cora_after["earnings"]["pendingDiamonds"] == 300


async def test_a_lost_dispute_keeps_the_restriction_until_an_admin_clears_it(
    api: Client, stripe: StripeFake, admin: dict[str, Any]
) -> None:
    charge, _creator, fan, _stream = await _fan_spends(api, stripe)
    dispute = stripe.dispute(charge)
    for delivery in (
        stripe.event("charge.dispute.created", dispute),
        stripe.event("charge.dispute.closed", stripe.update_dispute(dispute["id"], "lost")),
    ):
        assert (await deliver(api, *delivery))[0] == 200
    assert (await api.data(ME, user=fan))["me"]["restricted"]
    cleared = await api.data(
        'mutation { clearRestriction(input: {accountId: "fan"}) { __typename } }', user=admin
    )
    assert cleared["clearRestriction"]["__typename"] == "RestrictionCleared"
    assert not (await api.data(ME, user=fan))["me"]["restricted"]


async def test_a_dispute_closed_before_it_was_opened_changes_nothing(
    api: Client, alice: dict[str, Any], stripe: StripeFake
) -> None:
    answer(await buy(api, alice, "k"))
    dispute = stripe.dispute(next(iter(stripe.charges)))
    opened = stripe.event("charge.dispute.created", dispute)
    closed = stripe.event("charge.dispute.closed", stripe.update_dispute(dispute["id"], "won"))
    for delivery in (closed, opened):  # out of order
        assert (await deliver(api, *delivery))[0] == 200
    assert await coins_of(api, alice) == 350
    assert not (await api.data(ME, user=alice))["me"]["restricted"]


async def test_a_withdrawal_cannot_take_diamonds_a_chargeback_may_reverse(
    api: Client, stripe: StripeFake
) -> None:
    _charge, creator, _fan, _stream = await _fan_spends(api, stripe)
    refused = await request(api, creator, 2000, "w")  # pending: held for the hold period
    assert (refused["__typename"], refused["available"]) == ("InsufficientDiamonds", 0)


async def test_the_audit_lists_every_difference_with_the_processor(
    api: Client, alice: dict[str, Any], stripe: StripeFake, services: Services
) -> None:
    from resolvers.audit import audit

    window = (0, 2**40)
    answer(await buy(api, alice, "k1"))
    answer(await buy(api, alice, "k2", package="coins-70"))
    assert (await audit(services, *window)).findings == []
    # GIVEN a refund made in the dashboard whose webhook has not arrived, and a payment that
    # succeeded after authentication, also without its webhook
    first = next(iter(stripe.charges))
    stripe.refund(first, 100)
    answer(await buy(api, alice, "k3", "pm_card_threeDSecure2Required"))
    pending = next(i for i, v in stripe.intents.items() if v["status"] == "requires_action")
    stripe.authenticate(pending)
    found = (await audit(services, *window)).findings
    assert sorted(d.kind for d in found) == ["charged, never credited", "money back differs"]
    # WHEN the webhooks arrive THEN nothing differs
    refunded = stripe.event("charge.refunded", stripe.charges[first])
    succeeded = stripe.event("payment_intent.succeeded", stripe.intents[pending])
    for delivery in (refunded, succeeded):
        assert (await deliver(api, *delivery))[0] == 200
    assert (await audit(services, *window)).findings == []


def test_the_keys_come_from_a_secrets_manager_secret_on_aws() -> None:
    import json as jsonlib

    import boto3
    from moto import mock_aws

    with mock_aws():
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="livecoins/stripe",
            SecretString=jsonlib.dumps({"apiKey": "sk_live_x", "webhookSecret": "whsec_y"}),
        )
        settings = Settings(payment_provider="stripe", stripe_secret_arn=secret["ARN"])
        provider = StripePaymentProvider.from_settings(settings)
    assert provider.webhook_secret == "whsec_y"
    assert provider.client._requestor.api_key == "sk_live_x"
    assert "sk_live_x" not in repr(settings)
