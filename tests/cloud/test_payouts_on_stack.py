"""Paying creators on the deployed stack: template.yaml with PayoutsProvider=stripe in the local
cloud (IAM enforced), the platform's key and the payouts endpoint's own secret in its Secrets
Manager, Stripe's API (card payments and Connect) played by tests/stripe_connect_fake.py.

A creator onboards through the API, Stripe's signed notification reaches the function through
the API Gateway route POST /webhooks/stripe-connect (verified with the secret the function read
under its own role), the withdrawal is paid as one transfer, and a reversal comes back as
diamonds. Sandbox card payments keep the coins free.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.local_cloud import TRIAL_PARAMETERS, LocalCloud
from tests.cloud.conftest import Cloud
from tests.cloud.test_stack import END, buy, gift, go_live, http_raw
from tests.stripe_connect_fake import CONNECT_WEBHOOK_SECRET, StripeConnectFake
from tests.stripe_fake import SECRET_KEY, served

ORIGIN = "https://app.livecoins.test"
ONBOARD = """mutation { startPayoutOnboarding(input: {
  returnUrl: "https://app.livecoins.test/app/#/creator?payouts=return",
  refreshUrl: "https://app.livecoins.test/app/#/creator?payouts=refresh"}) {
  __typename ... on PayoutOnboardingStarted { url payoutAccount { status requirementsDue } }
  ... on InvalidInput { field } } }"""
STATUS = "{ me { payoutAccount { status } wallet { diamonds } } }"


@pytest.fixture(scope="module")
def payouts(local_cloud: tuple[LocalCloud, Any]) -> Iterator[tuple[Cloud, StripeConnectFake]]:
    local, bundle = local_cloud
    fake = StripeConnectFake()
    with served(fake) as url:
        stripe_arn = local.secret("livecoins/payouts-stripe", {"apiKey": SECRET_KEY})
        connect_arn = local.secret(
            "livecoins/payouts-connect", {"webhookSecret": CONNECT_WEBHOOK_SECRET}
        )
        parameters = {
            **TRIAL_PARAMETERS,
            "PayoutsProvider": "stripe",
            "StripeSecretArn": stripe_arn,
            "StripeConnectSecretArn": connect_arn,
            "PayoutReturnOrigins": ORIGIN,
            "LocalStripeUrl": url,
        }
        stack = local.deploy(bundle, name="livecoins-payouts", parameters=parameters)
        local.seed_catalog(stack)
        local.warm(stack)
        deployed = Cloud(local, stack)
        for name, birthdate, admin in (
            ("cora", "1995-05-05", False),
            ("wen", "1988-08-08", False),
            ("root", "1980-01-01", True),
        ):
            deployed.sign_up(name, birthdate, admin)
        yield deployed, fake


def _connect_url(cloud: Cloud) -> str:
    return cloud.stack.webhook_url.replace("/webhooks/stripe", "/webhooks/stripe-connect")


def test_a_creator_onboards_is_paid_by_transfer_and_a_reversal_comes_back(
    payouts: tuple[Cloud, StripeConnectFake],
) -> None:
    cloud, fake = payouts
    # GIVEN Cora earns 2,000 diamonds
    stream = go_live(cloud, "cora")
    assert buy(cloud, "wen", "coins-3500", "p-buy", "tok_visa")["__typename"] == "CoinsPurchased"
    assert gift(cloud, "wen", stream, "galaxy", "p-g", quantity=2)["__typename"] == "GiftSent"
    # WHEN she asks to withdraw before setting up payouts THEN she must set them up
    request = """mutation R($k: String!) { requestWithdrawal(input: {diamonds: 2000,
      idempotencyKey: $k}) { __typename ... on WithdrawalRequested { withdrawal { id } }
      ... on PayoutAccountRequired { status } } }"""
    refused = cloud.data("cora", request, {"k": "p-w1"})["requestWithdrawal"]
    assert refused == {"__typename": "PayoutAccountRequired", "status": "NOT_CONNECTED"}
    # WHEN she starts onboarding THEN Stripe (read with the key from Secrets Manager) answers
    started = cloud.data("cora", ONBOARD)["startPayoutOnboarding"]
    assert started["__typename"] == "PayoutOnboardingStarted", started
    assert started["payoutAccount"]["status"] == "ONBOARDING"
    assert started["url"] == fake.links[-1]["url"]
    (account,) = fake.accounts
    assert {r["authorization"] for r in fake.requests} == {f"Bearer {SECRET_KEY}"}
    # a return URL on another origin is refused
    evil = ONBOARD.replace(
        "https://app.livecoins.test/app/#/creator?payouts=return", "https://evil.example/"
    )
    assert cloud.data("cora", evil)["startPayoutOnboarding"] == {
        "__typename": "InvalidInput",
        "field": "returnUrl",
    }
    # WHEN Stripe enables her payouts and notifies the payouts endpoint (a forged one first)
    fake.complete_onboarding(account)
    payload, signature = fake.thin_event("v2.core.account[requirements].updated", account)
    assert http_raw(_connect_url(cloud), payload, "t=1,v1=00") == 400
    assert http_raw(_connect_url(cloud), payload, signature) == 200
    assert cloud.data("cora", STATUS)["me"]["payoutAccount"]["status"] == "ENABLED"
    # THEN she withdraws, and the admin's PAID is one transfer to her connected account
    wdr = cloud.data("cora", request, {"k": "p-w2"})["requestWithdrawal"]["withdrawal"]["id"]
    settle = """mutation S($id: ID!) { settleWithdrawal(input: {withdrawalId: $id, outcome: PAID})
      { __typename ... on WithdrawalSettled { withdrawal { status payoutReference } } } }"""
    paid = cloud.data("root", settle, {"id": wdr})["settleWithdrawal"]["withdrawal"]
    (transfer,) = fake.transfers.values()
    assert paid == {"status": "PAID", "payoutReference": transfer["id"]}
    assert (transfer["amount"], transfer["destination"]) == (1000, account)
    assert cloud.data("root", settle, {"id": wdr})["settleWithdrawal"]["withdrawal"] == paid
    assert len(fake.transfers) == 1
    # WHEN Stripe reverses the transfer THEN her diamonds come back, once
    fake.reverse(transfer["id"], 1000)
    reversed_ = fake.thin_event("v1.transfer.reversed", transfer["id"])
    assert [http_raw(_connect_url(cloud), *reversed_) for _ in range(2)] == [200, 200]
    assert cloud.data("cora", STATUS)["me"]["wallet"]["diamonds"] == 2000
    assert cloud.data("cora", END, {"id": stream})["endLiveStream"]["__typename"] == (
        "LiveStreamEnded"
    )
