"""Creators paid for real (Stripe Connect, against a local fake of its API,
tests/stripe_connect_fake.py), through both entrypoints: onboarding, the payout account's
state following the processor, withdrawals gated on payouts enabled, paying as the transfer
exactly once under every failure mode and concurrent settlement, refusals, and reversed
transfers returning the diamonds exactly once under duplicate, concurrent and reordered
notifications; the audit of withdrawals against transfers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest

from infra.config import ConfigError, Settings
from infra.payouts import SandboxPayoutProvider
from infra.services import Services
from infra.stripe_connect import StripeConnectProvider
from tests.clients import Client, claims_for
from tests.conftest import CallCounter, scan
from tests.faults import Faults, error, timeout_after
from tests.stripe_connect_fake import CONNECT_WEBHOOK_SECRET, StripeConnectFake
from tests.stripe_fake import SECRET_KEY, WEBHOOK_SECRET
from tests.test_withdrawals import earn, request

ORIGIN = "https://app.livecoins.test"
RETURN = f"{ORIGIN}/app/#/creator?payouts=back"
REFRESH = f"{ORIGIN}/app/#/creator?payouts=again"
ONBOARD = """mutation O($i: StartPayoutOnboardingInput!) { startPayoutOnboarding(input: $i) {
  __typename
  ... on PayoutOnboardingStarted { url expiresAt payoutAccount { status requirementsDue } }
  ... on InvalidInput { field } ... on UserError { message } } }"""
PAYOUT = "{ me { payoutAccount { status requirementsDue } } }"
SETTLED = """mutation S($id: ID!, $outcome: WithdrawalOutcome!) {
  settleWithdrawal(input: {withdrawalId: $id, outcome: $outcome}) { __typename
  ... on WithdrawalSettled { withdrawal { id status payoutReference returnedDiamonds } }
  ... on UserError { message } } }"""
ME = """{ me { wallet { diamonds } transactions(first: 5) { edges { node { kind diamonds
  referenceId } } } withdrawals { edges { node { id status payoutReference returnedDiamonds
  } } } } }"""
CORA = claims_for("cora", name="Cora")


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    budget = 0.3 if request.node.get_closest_marker("short_budget") else 4.0
    return Settings(
        table_prefix="test-",
        catalog_cache_seconds=60,
        retry_budget_seconds=budget,
        payout_return_origins=(ORIGIN,),
        payout_refresh_seconds=0,
    )


@pytest.fixture
async def connect(services: Services, aiohttp_server: Any) -> StripeConnectFake:
    """Stripe Connect payouts on, against the local fake (one server, as api.stripe.com)."""
    fake = StripeConnectFake(delay=1.0)
    server = await aiohttp_server(fake.app())
    services.payouts = StripeConnectProvider(
        SECRET_KEY,
        CONNECT_WEBHOOK_SECRET,
        str(server.make_url("")).rstrip("/"),
        timeout=(0.5, 0.5),
    )
    return fake


async def onboard(
    api: Client, user: dict[str, Any], return_url: str = RETURN, refresh_url: str = REFRESH
) -> dict[str, Any]:
    variables = {"i": {"returnUrl": return_url, "refreshUrl": refresh_url}}
    result: dict[str, Any] = (await api.data(ONBOARD, variables, user))["startPayoutOnboarding"]
    return result


async def deliver(api: Client, delivery: tuple[bytes, str]) -> tuple[int, Any]:
    payload, signature = delivery
    response = await api.request(
        "POST", payload, headers={"Stripe-Signature": signature}, path="/webhooks/stripe-connect"
    )
    return response.status, response.json


async def status_of(api: Client, user: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = (await api.data(PAYOUT, user=user))["me"]["payoutAccount"]
    return found


def account_of(connect: StripeConnectFake, sub: str) -> str:
    return next(a for a, v in connect.accounts.items() if v["metadata"]["accountId"] == sub)


async def enabled(api: Client, connect: StripeConnectFake, user: dict[str, Any]) -> str:
    """The creator onboards and Stripe enables payouts (account.updated delivered)."""
    assert (await onboard(api, user))["__typename"] == "PayoutOnboardingStarted"
    account = account_of(connect, user["sub"])
    connect.complete_onboarding(account)
    status, _ = await deliver(
        api, connect.thin_event("v2.core.account[requirements].updated", account)
    )
    assert status == 200
    assert (await status_of(api, user))["status"] == "ENABLED"
    return account


async def pending(api: Client, connect: StripeConnectFake, user: dict[str, Any] = CORA) -> str:
    """An enabled creator with a $10.00 (2,000 diamonds) withdrawal PENDING."""
    await earn(api, user, [("galaxy", 2)], "coins-3500")
    await enabled(api, connect, user)
    result = await request(api, user, 2000, "w")
    assert result["__typename"] == "WithdrawalRequested", result
    withdrawal: str = result["withdrawal"]["id"]
    return withdrawal


async def settle(
    api: Client, withdrawal: str, outcome: str, admin: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = await api.gql(SETTLED, {"id": withdrawal, "outcome": outcome}, admin)
    return result


def settled(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("errors"), result
    payload: dict[str, Any] = result["data"]["settleWithdrawal"]
    return payload


def transfer_requests(connect: StripeConnectFake) -> list[dict[str, Any]]:
    return [r for r in connect.requests if (r["method"], r["path"]) == ("POST", "/v1/transfers")]


# --- onboarding ------------------------------------------------------------------------------


async def test_onboarding_creates_one_connected_account_and_resumes_it(
    api: Client, connect: StripeConnectFake
) -> None:
    # WHEN Cora starts onboarding
    first = await onboard(api, CORA)
    # THEN Stripe created her connected account (Accounts v2, recipient) and a hosted link
    assert first["__typename"] == "PayoutOnboardingStarted"
    (account,) = connect.accounts
    assert first["url"] == connect.links[0]["url"] and first["url"].startswith("https://")
    assert first["expiresAt"]
    assert first["payoutAccount"]["status"] == "ONBOARDING"
    assert "identity.individual.verification.document" in first["payoutAccount"]["requirementsDue"]
    create = next(r for r in connect.requests if r["path"] == "/v2/core/accounts")
    assert create["idempotency_key"] == "payout-account:cora"
    assert create["content_type"] == "application/json"
    assert create["authorization"] == f"Bearer {SECRET_KEY}"
    form = create["form"]
    assert form["configuration"] == {
        "recipient": {"capabilities": {"stripe_balance": {"stripe_transfers": {"requested": True}}}}
    }
    assert form["dashboard"] == "express" and form["metadata"] == {"accountId": "cora"}
    assert form["defaults"]["responsibilities"] == {
        "fees_collector": "application",
        "losses_collector": "application",
    }
    link = connect.links[0]
    assert (link["account"], link["_return_url"], link["_refresh_url"]) == (
        account,
        RETURN,
        REFRESH,
    )
    assert link["use_case"]["type"] == "account_onboarding"
    # WHEN she comes back later THEN the same account, a new link
    again = await onboard(api, CORA)
    assert again["__typename"] == "PayoutOnboardingStarted" and again["url"] != first["url"]
    assert list(connect.accounts) == [account] and len(connect.links) == 2
    assert (await status_of(api, CORA))["status"] == "ONBOARDING"


@pytest.mark.parametrize(
    ("return_url", "refresh_url", "field"),
    [
        ("https://evil.example/steal", REFRESH, "returnUrl"),
        (RETURN, "https://evil.example/steal", "refreshUrl"),
        ("http://app.livecoins.test/app/", REFRESH, "returnUrl"),  # not https
        ("https://app.livecoins.test@evil.example/", REFRESH, "returnUrl"),  # credentials trick
        ("https://app.livecoins.test.evil.example/", REFRESH, "returnUrl"),
        ("javascript:alert(1)", REFRESH, "returnUrl"),
        ("//evil.example/", REFRESH, "returnUrl"),
        ("https://app.livecoins.test:8443/", REFRESH, "returnUrl"),  # another origin
        (RETURN + "/" + "x" * 2100, REFRESH, "returnUrl"),
    ],
)
async def test_onboarding_sends_creators_back_to_allowed_origins_only(
    api: Client, connect: StripeConnectFake, return_url: str, refresh_url: str, field: str
) -> None:
    refused = await onboard(api, CORA, return_url, refresh_url)
    assert (refused["__typename"], refused["field"]) == ("InvalidInput", field)
    assert connect.accounts == {} and connect.requests == []


async def test_onboarding_is_for_adults_not_restricted(
    api: Client, connect: StripeConnectFake, minor: dict[str, Any], services: Services
) -> None:
    assert (await onboard(api, minor))["__typename"] == "AgeRestricted"
    await api.data(PAYOUT, user=CORA)  # the account exists
    await services.dynamo.update(
        "accounts", {"id": "cora"}, "ADD restrictedBy :r", values={":r": {"pur_disputed"}}
    )
    assert (await onboard(api, CORA))["__typename"] == "AccountRestricted"
    assert connect.accounts == {}


async def test_concurrent_onboarding_makes_one_account(
    api: Client, connect: StripeConnectFake
) -> None:
    await api.data(PAYOUT, user=CORA)
    started = await asyncio.gather(*(onboard(api, CORA) for _ in range(4)))
    assert {s["__typename"] for s in started} == {"PayoutOnboardingStarted"}
    assert len(connect.accounts) == 1


@pytest.mark.short_budget
async def test_a_lost_link_write_resumes_the_same_connected_account(
    api: Client, connect: StripeConnectFake, services: Services
) -> None:
    # GIVEN Stripe created the account but DynamoDB would not record it in time
    await api.data(PAYOUT, user=CORA)
    faults = Faults(services.dynamo)
    link = lambda kwargs: "payoutLinkedAt" in kwargs.get("UpdateExpression", "")  # noqa: E731
    faults.on("update_item", error("ThrottlingException"), times=10_000, when=link)
    variables = {"i": {"returnUrl": RETURN, "refreshUrl": REFRESH}}
    failed = await api.gql(ONBOARD, variables, CORA)
    assert failed["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert len(connect.accounts) == 1
    # WHEN she tries again THEN the same account (Stripe's key is per creator), linked once
    faults.clear()
    assert (await onboard(api, CORA))["__typename"] == "PayoutOnboardingStarted"
    assert len(connect.accounts) == 1
    assert (await status_of(api, CORA))["status"] == "ONBOARDING"


async def test_no_payouts_processor_pays_by_hand(api: Client, services: Services) -> None:
    services.payouts = None
    result = await api.gql(ONBOARD, {"i": {"returnUrl": RETURN, "refreshUrl": REFRESH}}, CORA)
    assert result["errors"][0]["extensions"]["code"] == "PAYOUTS_NOT_CONFIGURED"
    assert (await status_of(api, CORA)) == {"status": "NOT_CONNECTED", "requirementsDue": []}


# --- the account's state follows the processor ------------------------------------------------


async def test_the_payout_account_follows_the_processor(
    api: Client, connect: StripeConnectFake, services: Services
) -> None:
    services.settings = dataclasses.replace(services.settings, payout_refresh_seconds=3600)
    await onboard(api, CORA)
    account = account_of(connect, "cora")
    # WHEN Stripe enables payouts, and its notification arrives twice
    connect.complete_onboarding(account)
    updated = connect.thin_event("v2.core.account[requirements].updated", account)
    assert await deliver(api, updated) == (200, {"received": True})
    assert (await deliver(api, updated))[1]["duplicate"] is True
    assert await status_of(api, CORA) == {"status": "ENABLED", "requirementsDue": []}
    # WHEN payouts are disabled mid-review (information overdue) THEN RESTRICTED, with what is due
    connect.restrict(account)
    assert (await deliver(api, connect.thin_event("v2.core.account.updated", account)))[0] == 200
    assert await status_of(api, CORA) == {
        "status": "RESTRICTED",
        "requirementsDue": ["identity.individual.verification.document"],
    }
    # WHEN an older notification arrives late THEN the state is read again: still as it is now
    assert (await deliver(api, connect.thin_event("v2.core.account.updated", account)))[0] == 200
    assert (await status_of(api, CORA))["status"] == "RESTRICTED"
    # a classic Connect endpoint's snapshot event works the same way
    connect.reinstate(account)
    snapshot = connect.connect_event("account.updated", {"id": account, "object": "account"})
    assert (await deliver(api, snapshot))[0] == 200
    assert (await status_of(api, CORA))["status"] == "ENABLED"
    # a verification that fails for good is RESTRICTED
    connect.restrict(account, "rejected_fraud")
    assert (await deliver(api, connect.thin_event("v2.core.account.updated", account)))[0] == 200
    assert (await status_of(api, CORA)) == {"status": "RESTRICTED", "requirementsDue": []}


async def test_forged_and_foreign_deliveries_are_refused(
    api: Client, connect: StripeConnectFake
) -> None:
    await onboard(api, CORA)
    account = account_of(connect, "cora")
    connect.complete_onboarding(account)
    kind = "v2.core.account[requirements].updated"
    stale = connect.thin_event(kind, account, at=int(time.time()) - 3600)
    card_secret = connect.thin_event(
        kind, account, secret=WEBHOOK_SECRET
    )  # the payments endpoint's
    forged = connect.thin_event(kind, account, secret="whsec_attacker")
    for delivery in (stale, card_secret, forged, (forged[0], "")):
        assert (await deliver(api, delivery))[0] == 400
    tampered = connect.thin_event(kind, account)
    assert (await deliver(api, (tampered[0].replace(b"acct_", b"acct_9"), tampered[1])))[0] == 400
    assert (await status_of(api, CORA))["status"] == "ENABLED"  # read on demand, not by them
    unknown = connect.thin_event("v2.core.account.updated", "acct_nobody")
    assert (await deliver(api, unknown))[0] == 200  # nothing to apply, not to retry


async def test_a_creator_back_from_onboarding_sees_it_before_the_notification(
    api: Client, connect: StripeConnectFake
) -> None:
    await onboard(api, CORA)
    connect.pending_verification(account_of(connect, "cora"))
    assert await status_of(api, CORA) == {"status": "ONBOARDING", "requirementsDue": []}
    connect.complete_onboarding(account_of(connect, "cora"))
    assert (await status_of(api, CORA))["status"] == "ENABLED"


async def test_without_the_processor_the_stored_state_is_shown(
    api: Client, connect: StripeConnectFake
) -> None:
    await onboard(api, CORA)
    connect.fail("/v2/core/accounts/", "500", times=1000)
    assert (await status_of(api, CORA))["status"] == "ONBOARDING"


# --- withdrawals need payouts enabled ---------------------------------------------------------


async def test_withdrawals_need_payouts_enabled(
    api: Client, connect: StripeConnectFake, services: Services
) -> None:
    await earn(api, CORA, [("galaxy", 3)], "coins-3500")
    refused = await request(api, CORA, 2000, "a")
    assert refused["__typename"] == "PayoutAccountRequired"
    status = await api.data(
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "a"}) { '
        "__typename ... on PayoutAccountRequired { status } } }",
        user=CORA,
    )
    assert status["requestWithdrawal"]["status"] == "NOT_CONNECTED"  # remembered under the key
    await onboard(api, CORA)
    onboarding = await api.data(
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "b"}) { '
        "__typename ... on PayoutAccountRequired { status } } }",
        user=CORA,
    )
    assert onboarding["requestWithdrawal"] == {
        "__typename": "PayoutAccountRequired",
        "status": "ONBOARDING",
    }
    # WHEN Stripe enables payouts and the notification has not arrived yet THEN the request
    # reads the account and goes through
    connect.complete_onboarding(account_of(connect, "cora"))
    accepted = await request(api, CORA, 2000, "c")
    assert accepted["__typename"] == "WithdrawalRequested"
    stored = [w for w in scan(services, "withdrawals") if w["id"].startswith("wdr_")]
    assert stored[0]["payoutAccount"] == account_of(connect, "cora")
    # the rules that were there stay: the minimum, the balance
    assert (await request(api, CORA, 1999, "d"))["__typename"] == "BelowMinimum"
    assert (await request(api, CORA, 2000, "e"))["__typename"] == "InsufficientDiamonds"


async def test_an_enabled_request_costs_what_it_did(
    api: Client, connect: StripeConnectFake, calls: CallCounter
) -> None:
    await earn(api, CORA, [("galaxy", 3)], "coins-3500")
    await enabled(api, connect, CORA)
    calls.reset()
    asked = len(connect.requests)
    answer = await api.data(
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "c"}) '
        "{ __typename } }",
        user=CORA,
    )
    assert answer["requestWithdrawal"]["__typename"] == "WithdrawalRequested"
    # the balance read has the payout account: no extra read, no call to Stripe
    assert calls.counts() == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}
    assert len(connect.requests) == asked


# --- paying is the transfer -------------------------------------------------------------------


async def test_paying_is_one_transfer_to_the_connected_account(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], calls: CallCounter
) -> None:
    withdrawal = await pending(api, connect)
    account = account_of(connect, "cora")
    calls.reset()
    asked = len(connect.requests)
    done = settled(await settle(api, withdrawal, "PAID", admin))
    # THEN one transfer of $10.00 to Cora's connected account, keyed by the withdrawal
    assert done["__typename"] == "WithdrawalSettled"
    (transfer,) = connect.transfers.values()
    assert done["withdrawal"] == {
        "id": withdrawal,
        "status": "PAID",
        "payoutReference": transfer["id"],
        "returnedDiamonds": 0,
    }
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (
        1000,
        "usd",
        account,
    )
    assert transfer["transfer_group"] == withdrawal
    assert transfer["metadata"] == {"withdrawalId": withdrawal}
    (create,) = transfer_requests(connect)
    assert create["idempotency_key"] == withdrawal
    # the account read, then the transfer; the withdrawal read, marked, and PAID
    paths = [(r["method"], r["path"]) for r in connect.requests[asked:]]
    assert paths == [("GET", f"/v2/core/accounts/{account}"), ("POST", "/v1/transfers")]
    assert calls.counts() == {"GetItem": 1, "UpdateItem": 2}
    # WHEN settled again THEN the same answer and nothing moves; REJECTED is InvalidState
    again = settled(await settle(api, withdrawal, "PAID", admin))
    assert again == done and len(connect.transfers) == 1
    assert settled(await settle(api, withdrawal, "REJECTED", admin))["__typename"] == "InvalidState"
    mine = (await api.data(ME, user=CORA))["me"]["withdrawals"]["edges"][0]["node"]
    assert mine["payoutReference"] == transfer["id"]


async def test_payouts_disabled_refuse_and_the_withdrawal_stays_pending(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    withdrawal = await pending(api, connect)
    account = account_of(connect, "cora")
    # GIVEN Stripe restricted Cora's account mid-review (its notification not delivered yet)
    connect.restrict(account)
    refused = settled(await settle(api, withdrawal, "PAID", admin))
    assert refused["__typename"] == "PayoutRefused" and "RESTRICTED" in refused["message"]
    assert transfer_requests(connect) == []
    assert (await status_of(api, CORA))["status"] == "RESTRICTED"  # learnt on the way
    queue = await api.data(
        "{ pendingWithdrawals { edges { node { id payoutAccountStatus } } } }", user=admin
    )
    assert queue["pendingWithdrawals"]["edges"] == [
        {"node": {"id": withdrawal, "payoutAccountStatus": "RESTRICTED"}}
    ]
    # WHEN Cora fixes it THEN it is paid, once
    connect.reinstate(account)
    assert (
        settled(await settle(api, withdrawal, "PAID", admin))["__typename"] == "WithdrawalSettled"
    )
    assert len(connect.transfers) == 1


async def test_a_refused_transfer_is_paid_later_under_a_key_of_its_own(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any]
) -> None:
    withdrawal = await pending(api, connect)
    # GIVEN the platform's Stripe balance cannot cover it
    connect.balance = 0
    refused = settled(await settle(api, withdrawal, "PAID", admin))
    assert refused["__typename"] == "PayoutRefused" and "balance" in refused["message"]
    assert connect.transfers == {}
    # Stripe replays the refusal under its key: the next attempt has its own
    connect.balance = 10**6
    assert (
        settled(await settle(api, withdrawal, "PAID", admin))["__typename"] == "WithdrawalSettled"
    )
    keys = [r["idempotency_key"] for r in transfer_requests(connect)]
    assert keys == [withdrawal, f"{withdrawal}:2"] and len(connect.transfers) == 1


async def test_a_refused_withdrawal_can_be_rejected(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any]
) -> None:
    withdrawal = await pending(api, connect)
    connect.balance = 0
    assert settled(await settle(api, withdrawal, "PAID", admin))["__typename"] == "PayoutRefused"
    rejected = settled(await settle(api, withdrawal, "REJECTED", admin))
    assert rejected["withdrawal"]["status"] == "REJECTED"
    me = (await api.data(ME, user=CORA))["me"]
    assert me["wallet"]["diamonds"] == 2000


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/transfers", "500"),
        ("/v1/transfers", "429"),
        ("/v1/transfers", "timeout-before"),
        ("/v1/transfers", "timeout-after"),
        ("/v2/core/accounts/", "timeout-before"),
    ],
)
async def test_a_withdrawal_is_transferred_once_whatever_stripe_does(
    api: Client,
    connect: StripeConnectFake,
    admin: dict[str, Any],
    services: Services,
    path: str,
    kind: str,
) -> None:
    withdrawal = await pending(api, connect)
    connect.fail(path, kind)
    first = settled(await settle(api, withdrawal, "PAID", admin))
    again = settled(await settle(api, withdrawal, "PAID", admin))
    assert first["__typename"] == "WithdrawalSettled" and again == first
    assert len(connect.transfers) == 1
    assert {r["idempotency_key"] for r in transfer_requests(connect)} == {withdrawal}


@pytest.mark.short_budget
async def test_stripe_down_is_try_again_then_the_retry_finishes_the_same_transfer(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any]
) -> None:
    withdrawal = await pending(api, connect)
    # GIVEN the transfer was made but no answer came back for the whole request
    connect.fail("/v1/transfers", "timeout-after", times=1)
    connect.fail("/v1/transfers", "500", times=1000)
    result = await settle(api, withdrawal, "PAID", admin)
    assert result["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert len(connect.transfers) == 1
    # a transfer may exist: rejecting (returning the diamonds) is refused
    assert settled(await settle(api, withdrawal, "REJECTED", admin))["__typename"] == "InvalidState"
    # WHEN the admin retries a day later (Stripe forgot the key) THEN the same transfer is found
    connect.faults.clear()
    connect.forget_keys()
    done = settled(await settle(api, withdrawal, "PAID", admin))
    (transfer,) = connect.transfers
    assert done["withdrawal"]["payoutReference"] == transfer


async def died(real: Any, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The process dies at this call: nothing after it in the request happens."""
    raise RuntimeError("the Lambda container was killed")


@pytest.mark.short_budget
@pytest.mark.parametrize("crash", ["busy past the budget", "the process died"])
async def test_a_crash_between_the_transfer_and_the_status_write(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services, crash: str
) -> None:
    withdrawal = await pending(api, connect)
    # GIVEN the PAID write never happens after the transfer: DynamoDB refuses it past the
    # request's budget, or the process dies there
    faults = Faults(services.dynamo)
    paid_write = lambda kwargs: "payoutReference" in kwargs.get("UpdateExpression", "")  # noqa: E731
    if crash == "the process died":
        faults.on("update_item", died, times=1, when=paid_write)
    else:
        faults.on("update_item", error("ThrottlingException"), times=10_000, when=paid_write)
    result = await settle(api, withdrawal, "PAID", admin)
    code = "INTERNAL_SERVER_ERROR" if crash == "the process died" else "TRY_AGAIN"
    assert result["errors"][0]["extensions"]["code"] == code
    (transfer,) = connect.transfers
    faults.clear()
    # WHEN Stripe's transfer.created arrives first THEN it finishes the settlement
    created = connect.thin_event("v1.transfer.created", transfer)
    assert (await deliver(api, created))[0] == 200
    mine = (await api.data(ME, user=CORA))["me"]["withdrawals"]["edges"][0]["node"]
    assert (mine["status"], mine["payoutReference"]) == ("PAID", transfer)
    # AND the admin's retry answers the same, with no second transfer
    done = settled(await settle(api, withdrawal, "PAID", admin))
    assert done["withdrawal"]["payoutReference"] == transfer and len(connect.transfers) == 1


async def test_a_paid_write_whose_answer_was_lost(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    withdrawal = await pending(api, connect)
    faults = Faults(services.dynamo)
    paid_write = lambda kwargs: "payoutReference" in kwargs.get("UpdateExpression", "")  # noqa: E731
    faults.on("update_item", timeout_after, times=1, when=paid_write)
    done = settled(await settle(api, withdrawal, "PAID", admin))
    assert done["withdrawal"]["status"] == "PAID" and len(connect.transfers) == 1


@pytest.mark.parametrize("outcomes", [("PAID", "PAID"), ("PAID", "REJECTED")])
async def test_two_admins_settling_one_withdrawal_at_once(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], outcomes: tuple[str, str]
) -> None:
    withdrawal = await pending(api, connect)
    other = claims_for("root2", admin=True)
    results = await asyncio.gather(
        *(
            settle(api, withdrawal, outcome, admin if n % 2 else other)
            for n, outcome in enumerate(outcomes * 3)
        )
    )
    answers = [settled(r) for r in results]
    won = {a["withdrawal"]["status"] for a in answers if a["__typename"] == "WithdrawalSettled"}
    assert len(won) == 1  # one outcome, however they interleave
    me = (await api.data(ME, user=CORA))["me"]
    if won == {"PAID"}:
        (transfer,) = connect.transfers
        assert {
            a["withdrawal"]["payoutReference"]
            for a in answers
            if a["__typename"] == "WithdrawalSettled"
        } == {transfer}
        assert me["wallet"]["diamonds"] == 0
    else:
        assert connect.transfers == {} and me["wallet"]["diamonds"] == 2000
    for outcome, answer in zip(outcomes * 3, answers, strict=True):
        expected = "WithdrawalSettled" if {outcome} == won else "InvalidState"
        assert answer["__typename"] == expected, answers


# --- a reversed transfer returns the diamonds -------------------------------------------------


async def test_a_reversed_transfer_returns_the_diamonds_once(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    withdrawal = await pending(api, connect)
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    # WHEN Stripe reverses $2.50 of the $10.00 and the notification comes three times at once
    connect.reverse(transfer, 250)
    partial = connect.thin_event("v1.transfer.reversed", transfer)
    answers = await asyncio.gather(*(deliver(api, partial) for _ in range(3)))
    assert {status for status, _ in answers} == {200}
    me = (await api.data(ME, user=CORA))["me"]
    assert me["wallet"]["diamonds"] == 500  # 2,000 x 250 / 1,000
    # WHEN the rest is reversed and both notifications arrive, the later one first, then again
    connect.reverse(transfer, 10**6)
    full = connect.thin_event("v1.transfer.reversed", transfer)
    for delivery in (full, partial, full):
        assert (await deliver(api, delivery))[0] == 200
    me = (await api.data(ME, user=CORA))["me"]
    assert me["wallet"]["diamonds"] == 2000
    returned = [
        e["node"]["diamonds"]
        for e in me["transactions"]["edges"]
        if e["node"]["kind"] == "WITHDRAWAL_RETURNED"
    ]
    assert returned == [1500, 500]
    node = me["withdrawals"]["edges"][0]["node"]
    assert (node["status"], node["returnedDiamonds"]) == ("PAID", 2000)


async def test_concurrent_reversal_notifications_on_a_busy_table(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    from tests.faults import Overlaps

    withdrawal = await pending(api, connect)
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    Overlaps(services.dynamo)  # DynamoDB's own contention between overlapping transactions
    deliveries = []
    for amount in (100, 300, 600):
        connect.reverse(transfer, amount)
        deliveries.append(connect.thin_event("v1.transfer.reversed", transfer))
    answers = await asyncio.gather(*(deliver(api, d) for d in deliveries * 2))
    assert {status for status, _ in answers} <= {200, 503}
    for delivery in deliveries:  # Stripe delivers again what had no 2xx
        assert (await deliver(api, delivery))[0] == 200
    assert (await api.data(ME, user=CORA))["me"]["wallet"]["diamonds"] == 2000


@pytest.mark.short_budget
async def test_a_reversal_while_dynamodb_is_busy_is_503_then_applies_once(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    withdrawal = await pending(api, connect)
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    connect.reverse(transfer, 1000)
    delivery = connect.thin_event("v1.transfer.reversed", transfer)
    faults = Faults(services.dynamo)
    faults.on("transact_write_items", error("ThrottlingException"), times=10_000)
    assert await deliver(api, delivery) == (503, {"error": "busy; deliver this event again"})
    faults.clear()
    for _ in range(2):
        assert (await deliver(api, delivery))[0] == 200
    assert (await api.data(ME, user=CORA))["me"]["wallet"]["diamonds"] == 2000


async def test_stripe_down_during_a_notification_is_503(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    services.settings = dataclasses.replace(services.settings, retry_budget_seconds=0.3)
    withdrawal = await pending(api, connect)
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    connect.reverse(transfer, 1000)
    delivery = connect.thin_event("v1.transfer.reversed", transfer)
    connect.fail(f"/v1/transfers/{transfer}", "500", times=1000)
    assert (await deliver(api, delivery))[0] == 503
    connect.faults.clear()
    assert (await deliver(api, delivery))[0] == 200
    assert (await api.data(ME, user=CORA))["me"]["wallet"]["diamonds"] == 2000


# --- the audit ----------------------------------------------------------------------------------


async def test_the_audit_reconciles_withdrawals_with_transfers(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], services: Services
) -> None:
    from resolvers.audit import audit

    window = (0, 2**40)
    withdrawal = await pending(api, connect)
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    report = await audit(services, *window)
    assert report.findings == [] and report.counts["transfers"] == 1
    # GIVEN a reversal whose notification has not arrived
    connect.reverse(transfer, 500)
    found = (await audit(services, *window)).findings
    assert [f.kind for f in found] == ["reversal not returned"]
    # WHEN the notification arrives THEN nothing differs
    assert (await deliver(api, connect.thin_event("v1.transfer.reversed", transfer)))[0] == 200
    assert (await audit(services, *window)).findings == []
    # a transfer of no withdrawal, and one that pays a withdrawal twice, are differences
    connect.transfers["tr_dashboard"] = {
        **connect.transfers[transfer],
        "id": "tr_dashboard",
        "metadata": {"withdrawalId": withdrawal},
    }
    kinds = sorted(f.kind for f in (await audit(services, *window)).findings)
    assert kinds == ["paid twice", "transferred, not paid"]


# --- the local sandbox ----------------------------------------------------------------------


async def test_the_sandbox_onboards_at_once_and_pays(
    api: Client, services: Services, admin: dict[str, Any]
) -> None:
    sandbox = SandboxPayoutProvider()
    services.payouts = sandbox
    await earn(api, CORA, [("galaxy", 2)], "coins-3500")
    started = await onboard(api, CORA)
    assert started["url"] == RETURN  # nothing to fill in: straight back
    assert started["payoutAccount"] == {"status": "ENABLED", "requirementsDue": []}
    withdrawal = (await request(api, CORA, 2000, "w"))["withdrawal"]["id"]
    done = settled(await settle(api, withdrawal, "PAID", admin))
    (transfer,) = sandbox.transfers.values()
    assert done["withdrawal"]["payoutReference"] == transfer.id and transfer.amount == 1000
    sandbox.reverse(transfer.id, 1000)
    from resolvers.payouts import follow_transfer

    await follow_transfer(services, transfer.id)
    assert (await api.data(ME, user=CORA))["me"]["wallet"]["diamonds"] == 2000


async def test_the_payouts_endpoint_is_absent_without_stripe(
    api: Client, services: Services
) -> None:
    services.payouts = SandboxPayoutProvider()
    response = await api.request("POST", b"{}", path="/webhooks/stripe-connect")
    assert response.status == 404


# --- configuration ------------------------------------------------------------------------------


def test_return_origins_are_origins() -> None:
    good = Settings.from_env(
        {"LIVECOINS_PAYOUT_RETURN_ORIGINS": "https://app.example.com, http://127.0.0.1:8000"}
    )
    assert good.payout_origins == ("https://app.example.com", "http://127.0.0.1:8000")
    assert Settings.from_env({"LIVECOINS_CORS_ORIGINS": "https://a.example"}).payout_origins == (
        "https://a.example",
    )
    for bad in ("http://app.example.com", "https://app.example.com/path", "app.example.com"):
        with pytest.raises(ConfigError, match="LIVECOINS_PAYOUT_RETURN_ORIGINS"):
            Settings.from_env({"LIVECOINS_PAYOUT_RETURN_ORIGINS": bad})


def test_stripe_payouts_need_a_key_and_their_own_webhook_secret() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"LIVECOINS_PAYOUTS_PROVIDER": "stripe"})
    assert "LIVECOINS_STRIPE_SECRET_KEY" in str(refused.value)
    assert "LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET" in str(refused.value)
    fine = Settings.from_env(
        {
            "LIVECOINS_PAYOUTS_PROVIDER": "stripe",
            "LIVECOINS_STRIPE_SECRET_KEY": "sk_test_x",
            "LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_y",
        }
    )
    provider = StripeConnectProvider.from_settings(fine)
    assert provider.webhook_secret == "whsec_y" and "whsec_y" not in repr(fine)


def test_the_connect_secret_comes_from_secrets_manager_on_aws() -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        stripe_arn = sm.create_secret(
            Name="livecoins/stripe", SecretString=json.dumps({"apiKey": "sk_live_x"})
        )["ARN"]
        connect_arn = sm.create_secret(
            Name="livecoins/stripe-connect", SecretString=json.dumps({"webhookSecret": "whsec_c"})
        )["ARN"]
        settings = Settings(
            payouts_provider="stripe",
            stripe_secret_arn=stripe_arn,
            stripe_connect_secret_arn=connect_arn,
        )
        provider = StripeConnectProvider.from_settings(settings)
    assert provider.webhook_secret == "whsec_c"
    assert provider.client._requestor.api_key == "sk_live_x"


# --- what each costs ---------------------------------------------------------------------------


async def test_onboarding_and_notifications_cost_what_docs_architecture_says(
    api: Client, connect: StripeConnectFake, admin: dict[str, Any], calls: CallCounter
) -> None:
    await api.data(PAYOUT, user=CORA)  # the account exists
    calls.reset()
    assert (await onboard(api, CORA))["__typename"] == "PayoutOnboardingStarted"
    # the account read, the link recorded, the state stored; Stripe: create, link
    assert calls.counts() == {"GetItem": 1, "UpdateItem": 2}
    calls.reset()
    await onboard(api, CORA)  # later: the account read, its state stored; Stripe: read, link
    assert calls.counts() == {"GetItem": 1, "UpdateItem": 1}
    account = account_of(connect, "cora")
    connect.complete_onboarding(account)
    calls.reset()
    updated = connect.thin_event("v2.core.account[requirements].updated", account)
    assert (await deliver(api, updated))[0] == 200
    # the event seen?, the account (consistent), its state, the event remembered
    assert calls.counts() == {"GetItem": 2, "UpdateItem": 1, "PutItem": 1}
    await earn(api, CORA, [("galaxy", 2)], "coins-3500")
    withdrawal = (await request(api, CORA, 2000, "w"))["withdrawal"]["id"]
    transfer = settled(await settle(api, withdrawal, "PAID", admin))["withdrawal"][
        "payoutReference"
    ]
    connect.reverse(transfer, 500)
    calls.reset()
    assert (await deliver(api, connect.thin_event("v1.transfer.reversed", transfer)))[0] == 200
    # the event seen?, the withdrawal, one reversal step, the event remembered
    assert calls.counts() == {"GetItem": 2, "TransactWriteItems": 1, "PutItem": 1}
