"""redeemStorePurchase against local fakes of Apple and Google (tests/app_store_fake.py,
tests/play_store_fake.py), through both entrypoints: a store purchase credits exactly once per
store transaction across all accounts under every failure mode the Stripe tests cover; forged,
wrong-app, wrong-environment, wrong-product, other-account and revoked proofs are refused;
sandbox and test purchases only for allow-listed accounts; Google's pending purchases, its
consumption after the credit, and purchases that cannot be credited (never lost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.app_store import AppStore, AppStoreKey
from infra.config import Settings
from infra.play_store import PlayStore
from infra.services import Services
from infra.stores import PRODUCTION, SANDBOX, account_token, play_transaction_id
from tests.app_store_fake import APP_APPLE_ID, BUNDLE_ID, ISSUER_ID, KEY_ID, AppStoreFake
from tests.clients import Client, claims_for
from tests.conftest import scan
from tests.play_store_fake import PACKAGE, PUSH_ACCOUNT, PUSH_AUDIENCE, PlayStoreFake
from tests.test_purchases import coins_of

APPLE_PRODUCT, PLAY_PRODUCT = "com.livecoins.coins350", "coins_350"
TESTER = "app-review"
REDEEM = """mutation R($i: RedeemStorePurchaseInput!) { redeemStorePurchase(input: $i) {
  __typename
  ... on CoinsPurchased { purchase { id coins status store price { amount currency formatted }
      refunded { amount } coinsTakenBack
      package { id coins storeProducts { store productId } } } wallet { coins } }
  ... on UserError { message }
  ... on InvalidInput { field } } }"""


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    budget = 0.3 if request.node.get_closest_marker("short_budget") else 4.0
    return Settings(
        table_prefix="test-",
        catalog_cache_seconds=60,
        retry_budget_seconds=budget,
        store_test_accounts=frozenset({TESTER}),
    )


@pytest.fixture
async def apple(services: Services, aiohttp_server: Any) -> AppStoreFake:
    """The App Store on, against the fake of Apple (Production and Sandbox hosts)."""
    fake = AppStoreFake(delay=1.0)
    production = await aiohttp_server(fake.app("Production"))
    sandbox = await aiohttp_server(fake.app("Sandbox"))
    services.app_store = AppStore(
        root_certificates=[fake.chain.root_der],
        bundle_id=BUNDLE_ID,
        app_apple_id=APP_APPLE_ID,
        key=AppStoreKey(KEY_ID, ISSUER_ID, fake.private_key_pem),
        api_bases={
            PRODUCTION: str(production.make_url("")),
            SANDBOX: str(sandbox.make_url("")),
        },
        timeout=(0.5, 0.5),
        deadline=3.0,
    )
    await sell_as_store_products(services)
    return fake


@pytest.fixture
async def google(services: Services, aiohttp_server: Any) -> PlayStoreFake:
    """Google Play on, against the fake of Google (the API, its tokens and certificates)."""
    fake = PlayStoreFake(delay=1.0)
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    services.play_store = PlayStore(
        package_name=PACKAGE,
        service_account_info=fake.service_account_info(f"{base}/token"),
        api_base=base,
        push_audience=PUSH_AUDIENCE,
        push_service_account=PUSH_ACCOUNT,
        certs_url=f"{base}/oauth2/v1/certs",
        timeout=(0.5, 0.5),
        deadline=3.0,
    )
    await sell_as_store_products(services)
    return fake


async def sell_as_store_products(services: Services) -> None:
    """coins-350 ($4.99) is sold as a product in each store."""
    package = await services.catalog.package("coins-350")
    assert package is not None
    await services.catalog.put_package(
        {**package, "appStoreProductId": APPLE_PRODUCT, "playStoreProductId": PLAY_PRODUCT},
        package,
    )


async def redeem(
    api: Client,
    user: dict[str, Any],
    key: str,
    receipt: str,
    store: str = "APP_STORE",
    product: str | None = None,
) -> dict[str, Any]:
    variables = {
        "i": {"store": store, "receipt": receipt, "productId": product, "idempotencyKey": key}
    }
    result = await api.gql(REDEEM, variables, user)
    assert not result.get("errors"), result
    payload: dict[str, Any] = result["data"]["redeemStorePurchase"]
    return payload


def apple_buy(apple: AppStoreFake, user: dict[str, Any] | None = None, **options: Any) -> str:
    """A purchase of the 350-coin product: its signed transaction, for `user`'s account token."""
    if user is not None:
        options.setdefault("account_token", account_token(user["sub"]))
    return apple.signed_transaction(apple.buy(APPLE_PRODUCT, **options))


def store_items(services: Services, prefix: str) -> list[dict[str, Any]]:
    return [p for p in scan(services, "purchases") if p["id"].startswith(prefix)]


# --- the App Store ----------------------------------------------------------------------------


async def test_an_app_store_purchase_credits_its_package_at_apples_price(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    # GIVEN 350 coins bought in the App Store for $4.99 by the app signed in as Alice
    receipt = apple_buy(apple, alice, price=4990)
    # WHEN the app redeems the signed transaction
    result = await redeem(api, alice, "k1", receipt)
    # THEN the coins are credited once, at Apple's price, marked as an App Store purchase
    assert result["__typename"] == "CoinsPurchased", result
    purchase = result["purchase"]
    assert (purchase["coins"], purchase["status"], purchase["store"]) == (
        350,
        "COMPLETED",
        "APP_STORE",
    )
    assert purchase["price"] == {"amount": 499, "currency": "USD", "formatted": "$4.99"}
    assert purchase["package"] == {
        "id": "coins-350",
        "coins": 350,
        "storeProducts": [{"store": "APP_STORE", "productId": APPLE_PRODUCT}],
    }
    assert result["wallet"]["coins"] == 350
    (stored,) = store_items(services, "pur_")
    assert stored["priceSource"] == "store" and stored["environment"] == PRODUCTION
    # AND Apple was asked for the transaction as it is now (a refund may postdate the JWS)
    assert [r["path"] for r in apple.requests] == [
        f"/inApps/v1/transactions/{stored['storeTransactionId']}"
    ]


async def test_without_a_price_from_apple_the_package_list_price_is_recorded_as_such(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT, quantity=2)
    receipt = apple.signed_transaction(tid, price=None, currency=None)
    apple.transactions[tid].pop("price")  # Apple's own record has none either
    apple.transactions[tid].pop("currency")
    result = await redeem(api, alice, "k1", receipt)
    assert result["purchase"]["coins"] == 700
    assert result["purchase"]["price"] == {"amount": 998, "currency": "USD", "formatted": "$9.98"}
    (stored,) = store_items(services, "pur_")
    assert stored["priceSource"] == "list"


async def test_a_currency_the_catalog_does_not_know_is_recorded_and_shown(
    api: Client, alice: dict[str, Any], apple: AppStoreFake
) -> None:
    result = await redeem(api, alice, "k1", apple_buy(apple, price=449000, currency="INR"))
    assert result["purchase"]["price"] == {
        "amount": 44900,
        "currency": "INR",
        "formatted": "INR 449.00",
    }


async def test_keys_follow_purchase_coins_rules(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    tid = apple.buy(APPLE_PRODUCT)
    first = await redeem(api, alice, "k1", apple.signed_transaction(tid))
    # the same key with the same transaction, even signed anew by Apple: the same answer
    assert await redeem(api, alice, "k1", apple.signed_transaction(tid)) == first
    # the same key with another purchase: a conflict, nothing credited
    other = await redeem(api, alice, "k1", apple_buy(apple))
    assert other["__typename"] == "IdempotencyConflict"
    # a new key for the same transaction: its original purchase, credited once
    again = await redeem(api, alice, "k2", apple.signed_transaction(tid))
    assert again["purchase"]["id"] == first["purchase"]["id"]
    assert await coins_of(api, alice) == 350
    assert len(store_items(services, "pur_")) == 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/inApps/v1/transactions", "500"),
        ("/inApps/v1/transactions", "429"),
        ("/inApps/v1/transactions", "timeout-before"),
        ("/inApps/v1/transactions", "timeout-after"),
    ],
)
async def test_an_app_store_purchase_credits_once_whatever_apple_does(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    services: Services,
    path: str,
    kind: str,
) -> None:
    apple.fail(path, kind)
    receipt = apple_buy(apple, alice)
    first = await redeem(api, alice, "k", receipt)
    again = await redeem(api, alice, "k", receipt)
    assert first["__typename"] == "CoinsPurchased" and again == first
    assert await coins_of(api, alice) == 350
    assert len(store_items(services, "pur_")) == 1


@pytest.mark.short_budget
async def test_apple_down_is_try_again_then_the_retry_credits_once(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    apple.fail("/inApps/v1/transactions", "500", times=1000)
    receipt = apple_buy(apple, alice)
    variables = {"i": {"store": "APP_STORE", "receipt": receipt, "idempotencyKey": "k"}}
    failed = await api.gql(REDEEM, variables, alice)
    assert failed["errors"][0]["extensions"]["code"] == "TRY_AGAIN"
    assert await coins_of(api, alice) == 0
    apple.faults.clear()
    assert (await redeem(api, alice, "k", receipt))["__typename"] == "CoinsPurchased"
    assert await coins_of(api, alice) == 350
    assert len(store_items(services, "pur_")) == 1


async def test_a_crash_between_verification_and_credit_then_the_retry_credits_once(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the credit transaction dies once, after Apple verified the purchase
    real_transact = services.dynamo.transact
    crashed: list[int] = []

    async def crash_once(actions: Any) -> None:
        if not crashed:
            crashed.append(1)
            raise ConnectionError("the process died before the credit")
        await real_transact(actions)

    monkeypatch.setattr(services.dynamo, "transact", crash_once)
    receipt = apple_buy(apple, alice)
    variables = {"i": {"store": "APP_STORE", "receipt": receipt, "idempotencyKey": "k"}}
    failed = await api.gql(REDEEM, variables, alice)
    assert failed["errors"][0]["message"] == "Internal error."
    assert await coins_of(api, alice) == 0
    # WHEN the app retries (the same key, or a new one after losing it) THEN credited once
    retried = await redeem(api, alice, "k", receipt)
    assert retried["__typename"] == "CoinsPurchased"
    assert (await redeem(api, alice, "k-new", receipt))["purchase"] == retried["purchase"]
    assert await coins_of(api, alice) == 350
    assert len(store_items(services, "pur_")) == 1


async def test_one_receipt_redeemed_by_two_accounts_at_once_credits_one(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    # GIVEN a purchase whose app set no account token (a receipt anyone could send)
    receipt = apple_buy(apple)
    users = [alice, *(claims_for(f"sharer-{i}") for i in range(5))]
    # WHEN six accounts redeem it at the same moment, two keys each
    results = await asyncio.gather(
        *(redeem(api, user, f"k{n}", receipt) for user in users for n in range(2))
    )
    # THEN exactly one account has it, under both its keys; every other is told so
    won = [r for r in results if r["__typename"] == "CoinsPurchased"]
    lost = [r for r in results if r["__typename"] == "ReceiptAlreadyRedeemed"]
    assert len(won) == 2 and len(lost) == 10, [r["__typename"] for r in results]
    assert won[0]["purchase"]["id"] == won[1]["purchase"]["id"]
    assert sum([await coins_of(api, user) for user in users]) == 350
    assert len(store_items(services, "pur_")) == 1
    (binding,) = store_items(services, "store#")
    assert binding["status"] == "CREDITED" and binding["purchaseId"] == won[0]["purchase"]["id"]


def _forged(apple: AppStoreFake) -> str:
    from tests.app_store_fake import make_chain

    return apple.signed_transaction(apple.buy(APPLE_PRODUCT), chain=make_chain("Attacker"))


@pytest.mark.parametrize(
    ("case", "proof"),
    [
        ("forged", _forged),
        (
            "another app",
            lambda apple: apple.signed_transaction(
                apple.buy(APPLE_PRODUCT), bundleId="com.other.app"
            ),
        ),
        (
            "an environment this deployment refuses",
            lambda apple: apple.signed_transaction(apple.buy(APPLE_PRODUCT), environment="Xcode"),
        ),
        (
            "a product no package is sold as",
            lambda apple: apple.signed_transaction(apple.buy("com.livecoins.unknown")),
        ),
        (
            "another account's",
            lambda apple: apple_buy(apple, None, account_token=account_token("mallory")),
        ),
        ("not a JWS", lambda apple: "not-a-jws"),
    ],
)
async def test_proofs_that_are_not_alices_to_redeem_are_refused_and_remembered(
    api: Client,
    alice: dict[str, Any],
    apple: AppStoreFake,
    services: Services,
    case: str,
    proof: Any,
) -> None:
    receipt = proof(apple)
    refused = await redeem(api, alice, "k", receipt)
    assert refused["__typename"] == "ReceiptInvalid", (case, refused)
    assert await redeem(api, alice, "k", receipt) == refused
    assert await coins_of(api, alice) == 0
    assert store_items(services, "pur_") == [] and store_items(services, "store#") == []


async def test_a_claimed_product_must_be_the_signed_one(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, admin: dict[str, Any]
) -> None:
    # a cheap product's receipt, claimed as the expensive one
    await api.data(
        'mutation { upsertCoinPackage(input: {id: "coins-17500", coins: 17500, '
        'priceAmount: 24999, appStoreProductId: "com.livecoins.coins17500"}) { id } }',
        user=admin,
    )
    receipt = apple_buy(apple, alice)
    variables = {
        "i": {
            "store": "APP_STORE",
            "receipt": receipt,
            "productId": "com.livecoins.coins17500",
            "idempotencyKey": "k",
        }
    }
    result = (await api.data(REDEEM, variables, alice))["redeemStorePurchase"]
    assert result["__typename"] == "ReceiptInvalid"
    assert await coins_of(api, alice) == 0


async def test_a_purchase_refunded_before_it_is_redeemed_is_refused(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    # GIVEN the device's signed transaction, from before Apple refunded it
    tid = apple.buy(APPLE_PRODUCT, account_token=account_token("alice"))
    receipt = apple.signed_transaction(tid)
    apple.refund(tid)
    # WHEN it is redeemed THEN Apple's record now says revoked: nothing credited
    refused = await redeem(api, alice, "k", receipt)
    assert refused["__typename"] == "ReceiptInvalid" and "refunded" in refused["message"]
    assert await coins_of(api, alice) == 0 and store_items(services, "pur_") == []


async def test_sandbox_purchases_are_for_test_accounts_only(
    api: Client, alice: dict[str, Any], apple: AppStoreFake
) -> None:
    tester = claims_for(TESTER)
    refused = await redeem(api, alice, "k", apple_buy(apple, environment="Sandbox"))
    assert refused["__typename"] == "ReceiptInvalid" and "test accounts" in refused["message"]
    credited = await redeem(api, tester, "k", apple_buy(apple, environment="Sandbox"))
    assert credited["__typename"] == "CoinsPurchased"
    assert await coins_of(api, tester) == 350 and await coins_of(api, alice) == 0
    # Apple was asked on its Sandbox host
    assert {r["environment"] for r in apple.requests} == {"Sandbox"}


async def test_a_minors_purchase_stays_bound_and_is_redeemable_once_they_may_buy(
    api: Client, minor: dict[str, Any], apple: AppStoreFake, services: Services
) -> None:
    receipt = apple_buy(apple)
    # WHEN a minor redeems it THEN it is not credited, and the answer says it stays theirs
    kept = await redeem(api, minor, "k", receipt)
    assert kept["__typename"] == "AgeRestricted" and "stays bound" in kept["message"]
    assert await redeem(api, minor, "k", receipt) == kept
    # AND nobody else can take it
    other = await redeem(api, claims_for("adult-friend"), "k", receipt)
    assert other["__typename"] == "ReceiptAlreadyRedeemed"
    # WHEN the same account may buy (the same sub, now an adult) with a new key THEN credited
    grown = claims_for(minor["sub"])
    assert (await redeem(api, grown, "k2", receipt))["__typename"] == "CoinsPurchased"
    assert await coins_of(api, grown) == 350


async def test_a_restricted_accounts_purchase_stays_bound_until_cleared(
    api: Client,
    alice: dict[str, Any],
    admin: dict[str, Any],
    apple: AppStoreFake,
    services: Services,
) -> None:
    await coins_of(api, alice)  # the account exists
    await services.dynamo.update(
        "accounts", {"id": "alice"}, "ADD restrictedBy :r", values={":r": {"pur_x"}}
    )
    receipt = apple_buy(apple, alice)
    kept = await redeem(api, alice, "k", receipt)
    assert kept["__typename"] == "AccountRestricted" and "stays bound" in kept["message"]
    await api.data(
        'mutation { clearRestriction(input: {accountId: "alice"}) { __typename } }', user=admin
    )
    assert (await redeem(api, alice, "k2", receipt))["__typename"] == "CoinsPurchased"
    assert await coins_of(api, alice) == 350


@pytest.mark.parametrize(
    ("field", "input_"),
    [
        ("idempotencyKey", {"idempotencyKey": "has space"}),
        ("receipt", {"receipt": " "}),
        ("receipt", {"receipt": "x" * (32 * 1024 + 1)}),
        ("productId", {"productId": "bad id"}),
        ("productId", {"store": "PLAY_STORE", "productId": None}),
        ("receipt", {"store": "PLAY_STORE", "productId": "coins_350", "receipt": "a/b"}),
    ],
)
async def test_bad_input_names_the_field(
    api: Client, alice: dict[str, Any], field: str, input_: dict[str, Any]
) -> None:
    variables = {"i": {"store": "APP_STORE", "receipt": "x.y.z", "idempotencyKey": "k", **input_}}
    result = (await api.data(REDEEM, variables, alice))["redeemStorePurchase"]
    assert (result["__typename"], result["field"]) == ("InvalidInput", field)


async def test_a_deployment_without_the_store_says_so(api: Client, alice: dict[str, Any]) -> None:
    variables = {"i": {"store": "APP_STORE", "receipt": "x.y.z", "idempotencyKey": "k"}}
    result = await api.gql(REDEEM, variables, alice)
    assert result["errors"][0]["extensions"]["code"] == "PAYMENTS_NOT_CONFIGURED"


async def test_admins_cannot_refund_a_store_purchase_themselves(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], apple: AppStoreFake
) -> None:
    bought = await redeem(api, alice, "k", apple_buy(apple, alice))
    refund = await api.data(
        "mutation R($id: ID!) { refundPurchase(input: {purchaseId: $id}) { __typename "
        "... on UserError { message } } }",
        {"id": bought["purchase"]["id"]},
        admin,
    )
    assert refund["refundPurchase"]["__typename"] == "InvalidState"
    assert await coins_of(api, alice) == 350


async def test_app_store_redeem_call_counts(
    api: Client, alice: dict[str, Any], apple: AppStoreFake, calls: Any
) -> None:
    await redeem(api, alice, "warm", apple_buy(apple, alice))  # the product and account exist
    calls.reset()
    receipt = apple_buy(apple, alice)
    await api.data(
        "mutation R($i: RedeemStorePurchaseInput!) { redeemStorePurchase(input: $i) "
        "{ ... on CoinsPurchased { purchase { id } } } }",
        {"i": {"store": "APP_STORE", "receipt": receipt, "idempotencyKey": "counted"}},
        alice,
    )
    # the key claimed (PutItem), the transaction bound (UpdateItem), the buyer not restricted
    # (GetItem), one transaction credits
    assert calls.counts() == {
        "PutItem": 1,
        "UpdateItem": 1,
        "GetItem": 1,
        "TransactWriteItems": 1,
    }
    calls.reset()
    await redeem(api, alice, "counted", receipt)  # a replay: the claim returns the record
    assert calls.counts() == {"PutItem": 1, "GetItem": 2}  # + the purchase, + the wallet
    calls.reset()
    # a new key: the bind is refused and the binding read; the record completes as its purchase
    await redeem(api, alice, "counted-again", receipt)
    assert calls.counts() == {"PutItem": 1, "UpdateItem": 2, "GetItem": 3}  # + the wallet
    calls.reset()
    # another account: the binding read, the refusal remembered
    await redeem(api, claims_for("bob"), "counted", apple.signed_transaction(_shared(apple)))
    calls.reset()
    await redeem(api, claims_for("carol"), "counted", apple.signed_transaction(_shared(apple, 0)))
    assert calls.counts() == {"PutItem": 1, "UpdateItem": 2, "GetItem": 1}


def _shared(apple: AppStoreFake, created: int = 1) -> str:
    """The last transaction bought without an account token (a new one when `created`)."""
    if created:
        return apple.buy(APPLE_PRODUCT)
    return max(t for t, p in apple.transactions.items() if "appAccountToken" not in p)


# --- Google Play ------------------------------------------------------------------------------


def play_buy(google: PlayStoreFake, user: dict[str, Any] | None = None, **options: Any) -> str:
    """A purchase of the 350-coin product: its token, for `user`'s account when given."""
    if user is not None:
        options.setdefault("account_id", account_token(user["sub"]))
    return google.buy(PLAY_PRODUCT, **options)


async def redeem_play(
    api: Client, user: dict[str, Any], key: str, token: str, product: str = PLAY_PRODUCT
) -> dict[str, Any]:
    return await redeem(api, user, key, token, "PLAY_STORE", product)


def consumed(google: PlayStoreFake, token: str) -> bool:
    return bool(google.purchases[token]["resource"]["consumptionState"] == 1)


def consumes(google: PlayStoreFake) -> int:
    return sum(1 for r in google.requests if r["path"].endswith(":consume"))


async def test_a_google_play_purchase_credits_its_quantity_at_list_price_then_is_consumed(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    # GIVEN 3 of the 350-coin product bought on Google Play by the app signed in as Alice
    token = play_buy(google, alice, quantity=3)
    # WHEN the app redeems the purchase token
    result = await redeem_play(api, alice, "k1", token)
    # THEN 3 x 350 coins at 3 x the package's price (Google's record has no price)
    assert result["__typename"] == "CoinsPurchased", result
    assert (result["purchase"]["coins"], result["purchase"]["store"]) == (1050, "PLAY_STORE")
    assert result["purchase"]["price"]["amount"] == 3 * 499
    (stored,) = store_items(services, "pur_")
    assert stored["priceSource"] == "list" and stored["quantity"] == 3
    assert stored["storeTransactionId"] == play_transaction_id(token)
    # AND the purchase is consumed once, after the credit, and off the unconsumed list
    assert consumed(google, token) and consumes(google) == 1
    (binding,) = store_items(services, "store#")
    assert "day" not in binding and binding["consumedAt"]
    assert await redeem_play(api, alice, "k1", token) == result
    assert consumes(google) == 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/tokens/", "500"),
        ("/tokens/", "429"),
        ("/tokens/", "timeout-before"),
        ("/tokens/", "timeout-after"),
    ],
)
async def test_a_google_purchase_credits_and_consumes_once_whatever_google_does(
    api: Client,
    alice: dict[str, Any],
    google: PlayStoreFake,
    services: Services,
    path: str,
    kind: str,
) -> None:
    google.fail(path, kind, times=2)  # the read, then (or) the consume
    token = play_buy(google, alice)
    first = await redeem_play(api, alice, "k", token)
    assert first["__typename"] == "CoinsPurchased"
    assert await redeem_play(api, alice, "k", token) == first
    assert await coins_of(api, alice) == 350 and consumed(google, token)
    assert len(store_items(services, "pur_")) == 1


@pytest.mark.short_budget
async def test_a_consume_that_gets_no_answer_is_finished_by_the_catch_up(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    from resolvers.store_purchases import catch_up

    google.fail(":consume", "500", times=1000)
    token = play_buy(google, alice)
    # the coins are credited whatever the consume did
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "CoinsPurchased"
    assert not consumed(google, token)
    (binding,) = store_items(services, "store#")
    assert binding["day"].startswith("unconsumed#")
    # WHEN Google answers again and the scheduled catch-up runs THEN consumed, once
    google.faults.clear()
    report = await catch_up(services)
    assert report.consumed == 1 and consumed(google, token)
    (binding,) = store_items(services, "store#")
    assert "day" not in binding
    assert (await catch_up(services)).consumed == 0
    assert await coins_of(api, alice) == 350


async def test_a_crash_between_googles_answer_and_the_credit_then_the_retry_credits_once(
    api: Client,
    alice: dict[str, Any],
    google: PlayStoreFake,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_transact = services.dynamo.transact
    crashed: list[int] = []

    async def crash_once(actions: Any) -> None:
        if not crashed:
            crashed.append(1)
            raise ConnectionError("the process died before the credit")
        await real_transact(actions)

    monkeypatch.setattr(services.dynamo, "transact", crash_once)
    token = play_buy(google, alice)
    variables = {
        "i": {
            "store": "PLAY_STORE",
            "receipt": token,
            "productId": PLAY_PRODUCT,
            "idempotencyKey": "k",
        }
    }
    assert (await api.gql(REDEEM, variables, alice))["errors"][0]["message"] == "Internal error."
    assert not consumed(google, token)  # never consumed before the credit
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "CoinsPurchased"
    assert await coins_of(api, alice) == 350 and consumed(google, token)


async def test_one_token_redeemed_by_two_accounts_at_once_credits_one(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    token = play_buy(google)
    users = [alice, *(claims_for(f"sharer-{i}") for i in range(3))]
    results = await asyncio.gather(*(redeem_play(api, user, "k", token) for user in users))
    kinds = sorted(r["__typename"] for r in results)
    assert kinds == ["CoinsPurchased"] + ["ReceiptAlreadyRedeemed"] * 3
    assert sum([await coins_of(api, user) for user in users]) == 350
    assert consumes(google) == 1


@pytest.mark.parametrize(
    ("case", "purchase", "product"),
    [
        ("a cheaper product's token", lambda g: g.buy("coins_70"), PLAY_PRODUCT),
        ("a product no package is sold as", lambda g: g.buy("coins_x"), "coins_x"),
        ("an unknown token", lambda g: "Zz000000.AO-J1Ozunknown", PLAY_PRODUCT),
        ("another app's", lambda g: g.buy(PLAY_PRODUCT, package="com.other.app"), PLAY_PRODUCT),
        (
            "another account's",
            lambda g: g.buy(PLAY_PRODUCT, account_id=account_token("mallory")),
            PLAY_PRODUCT,
        ),
        ("a test purchase", lambda g: g.buy(PLAY_PRODUCT, purchase_type=0), PLAY_PRODUCT),
        ("a promo purchase", lambda g: g.buy(PLAY_PRODUCT, purchase_type=1), PLAY_PRODUCT),
        ("a cancelled one", lambda g: _cancelled(g), PLAY_PRODUCT),
        ("a refunded one", lambda g: _voided(g), PLAY_PRODUCT),
    ],
)
async def test_google_purchases_that_are_not_alices_to_redeem_are_refused(
    api: Client,
    alice: dict[str, Any],
    google: PlayStoreFake,
    services: Services,
    case: str,
    purchase: Any,
    product: str,
) -> None:
    token = purchase(google)
    refused = await redeem_play(api, alice, "k", token, product)
    assert refused["__typename"] == "ReceiptInvalid", (case, refused)
    assert await redeem_play(api, alice, "k", token, product) == refused
    assert await coins_of(api, alice) == 0 and consumes(google) == 0


def _cancelled(google: PlayStoreFake) -> str:
    token = google.buy(PLAY_PRODUCT, pending=True)
    google.cancel(token)
    return token


def _voided(google: PlayStoreFake) -> str:
    token = google.buy(PLAY_PRODUCT)
    google.void(token)
    return token


async def test_test_purchases_are_for_test_accounts(api: Client, google: PlayStoreFake) -> None:
    tester = claims_for(TESTER)
    token = google.buy(PLAY_PRODUCT, purchase_type=0)
    assert (await redeem_play(api, tester, "k", token))["__typename"] == "CoinsPurchased"
    assert consumed(google, token)


async def test_a_pending_purchase_is_bound_then_credited_when_google_says_it_completed(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, services: Services
) -> None:
    # GIVEN a purchase paid by a slow method (Google has not taken the money yet), by an app
    # that does not name the buyer's account
    token = play_buy(google, pending=True)
    pending = await redeem_play(api, alice, "k", token)
    assert pending["__typename"] == "PaymentPending"
    assert await redeem_play(api, alice, "k", token) == pending  # still pending: the same
    assert await coins_of(api, alice) == 0 and consumes(google) == 0
    # AND it is bound to Alice: nobody else can redeem it meanwhile
    assert (await redeem_play(api, claims_for("bob"), "k", token))[
        "__typename"
    ] == "ReceiptAlreadyRedeemed"
    # WHEN the payment completes and Google's notification arrives (twice)
    google.complete(token)
    delivery = google.push(google.notification("one_time", token, notification_type=1))
    for _ in range(2):
        response = await api.request(
            "POST", delivery[1], headers={"Authorization": delivery[0]}, path="/webhooks/play"
        )
        assert response.status == 200, response.body
    # THEN the coins are credited once and the purchase consumed; the same key answers it
    assert await coins_of(api, alice) == 350 and consumed(google, token)
    credited = await redeem_play(api, alice, "k", token)
    assert credited["__typename"] == "CoinsPurchased"
    assert len(store_items(services, "pur_")) == 1 and consumes(google) == 1


async def test_a_pending_purchase_whose_notification_is_lost_is_credited_when_asked_again(
    api: Client, alice: dict[str, Any], google: PlayStoreFake
) -> None:
    token = play_buy(google, alice, pending=True)
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "PaymentPending"
    google.complete(token)
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "CoinsPurchased"
    assert await coins_of(api, alice) == 350 and consumed(google, token)


async def test_a_pending_purchase_that_is_cancelled_credits_nothing(
    api: Client, alice: dict[str, Any], google: PlayStoreFake
) -> None:
    token = play_buy(google, alice, pending=True)
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "PaymentPending"
    google.cancel(token)
    delivery = google.push(google.notification("one_time", token, notification_type=2))
    response = await api.request(
        "POST", delivery[1], headers={"Authorization": delivery[0]}, path="/webhooks/play"
    )
    assert response.status == 200
    assert (await redeem_play(api, alice, "k", token))["__typename"] == "ReceiptInvalid"
    assert await coins_of(api, alice) == 0


async def test_a_minors_google_purchase_is_left_unconsumed_for_google_to_refund(
    api: Client, minor: dict[str, Any], google: PlayStoreFake
) -> None:
    token = play_buy(google, minor)
    kept = await redeem_play(api, minor, "k", token)
    assert kept["__typename"] == "AgeRestricted" and "Google refunds it" in kept["message"]
    assert consumes(google) == 0 and not google.purchases[token]["resource"]["acknowledgementState"]
    # three days later Google refunds it; redeemed again it is refused
    google.lapse(token)
    assert (await redeem_play(api, claims_for(minor["sub"]), "k2", token))[
        "__typename"
    ] == "ReceiptInvalid"


async def test_google_redeem_call_counts(
    api: Client, alice: dict[str, Any], google: PlayStoreFake, calls: Any
) -> None:
    await redeem_play(api, alice, "warm", play_buy(google, alice))
    calls.reset()
    await api.data(
        "mutation R($i: RedeemStorePurchaseInput!) { redeemStorePurchase(input: $i) "
        "{ ... on CoinsPurchased { purchase { id } } } }",
        {
            "i": {
                "store": "PLAY_STORE",
                "receipt": play_buy(google, alice),
                "productId": PLAY_PRODUCT,
                "idempotencyKey": "counted",
            }
        },
        alice,
    )
    # as the App Store's, + one UpdateItem taking the consumed purchase off the list
    assert calls.counts() == {
        "PutItem": 1,
        "UpdateItem": 2,
        "GetItem": 1,
        "TransactWriteItems": 1,
    }


# --- the catalog ------------------------------------------------------------------------------

PACKAGES = "{ coinPackages { id storeProducts { store productId } } }"


def upsert(package: str, coins: int, price: int, **products: str | None) -> str:
    fields = "".join(f", {k}: {'null' if v is None else repr(v)}" for k, v in products.items())
    return (
        f'mutation {{ upsertCoinPackage(input: {{id: "{package}", coins: {coins}, '
        f"priceAmount: {price}{fields}}}) {{ id storeProducts {{ store productId }} }} }}"
    ).replace("'", '"')


async def test_packages_name_their_store_products_once_each(
    api: Client, admin: dict[str, Any], alice: dict[str, Any], calls: Any
) -> None:
    # WHEN an admin sells a package as a product in each store
    sold = await api.data(
        upsert("coins-70", 70, 99, appStoreProductId="ios.70", playStoreProductId="play_70"),
        user=admin,
    )
    assert sold["upsertCoinPackage"]["storeProducts"] == [
        {"store": "APP_STORE", "productId": "ios.70"},
        {"store": "PLAY_STORE", "productId": "play_70"},
    ]
    packages = {p["id"]: p for p in (await api.data(PACKAGES, user=alice))["coinPackages"]}
    assert len(packages["coins-70"]["storeProducts"]) == 2
    assert packages["coins-350"]["storeProducts"] == []  # card only
    # THEN another package cannot be sold as the same product
    taken = await api.gql(upsert("coins-700", 700, 999, appStoreProductId="ios.70"), user=admin)
    assert taken["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "appStoreProductId",
    }
    # UNLESS the first lets it go; a product id that is not one is refused
    await api.data(upsert("coins-70", 70, 99, playStoreProductId="play_70"), user=admin)
    moved = await api.data(upsert("coins-700", 700, 999, appStoreProductId="ios.70"), user=admin)
    assert moved["upsertCoinPackage"]["storeProducts"] == [
        {"store": "APP_STORE", "productId": "ios.70"}
    ]
    bad = await api.gql(upsert("coins-700", 700, 999, playStoreProductId="no spaces"), user=admin)
    assert bad["errors"][0]["extensions"]["field"] == "playStoreProductId"


async def test_a_package_no_longer_sold_redeems_nothing(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], apple: AppStoreFake
) -> None:
    await api.data(upsert("coins-350", 350, 499, appStoreProductId=APPLE_PRODUCT), user=admin)
    await api.data(
        'mutation { upsertCoinPackage(input: {id: "coins-350", coins: 350, priceAmount: 499, '
        f'active: false, appStoreProductId: "{APPLE_PRODUCT}"}}) {{ id }} }}',
        user=admin,
    )
    result = await redeem(api, alice, "k", apple_buy(apple, alice))
    assert result["__typename"] == "ReceiptInvalid" and "no coin package" in result["message"]
