"""purchaseCoins: charging, crediting, idempotency, age, input limits, concurrency, retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra.services import Services
from tests.clients import Client, claims_for

PURCHASE = """
mutation Buy($input: PurchaseCoinsInput!) {
  purchaseCoins(input: $input) {
    __typename
    ... on CoinsPurchased { purchase { id coins status price { amount currency formatted }
                                        package { id coins } } wallet { coins diamonds } }
    ... on UserError { message }
    ... on InvalidInput { field }
  }
}
"""
WALLET = "{ me { wallet { coins diamonds } } }"


async def buy(
    api: Client, user: dict[str, Any], key: str, package: str = "coins-70", token: str = "tok_visa"
) -> dict[str, Any]:
    variables = {"input": {"packageId": package, "paymentToken": token, "idempotencyKey": key}}
    data = await api.data(PURCHASE, variables, user)
    result: dict[str, Any] = data["purchaseCoins"]
    return result


async def coins_of(api: Client, user: dict[str, Any]) -> int:
    coins: int = (await api.data(WALLET, user=user))["me"]["wallet"]["coins"]
    return coins


async def test_purchase_credits_coins_and_ledger(
    api: Client, alice: dict[str, Any], services: Services
) -> None:
    # GIVEN a new adult account WHEN it buys the 350-coin package
    result = await buy(api, alice, "k-1", "coins-350")
    # THEN it is charged $4.99 once and credited 350 coins with one PURCHASE entry
    assert result["__typename"] == "CoinsPurchased"
    assert result["purchase"]["coins"] == 350
    assert result["purchase"]["status"] == "COMPLETED"
    assert result["purchase"]["price"] == {"amount": 499, "currency": "USD", "formatted": "$4.99"}
    assert result["wallet"] == {"coins": 350, "diamonds": 0}
    assert [c.amount for c in services.payments.charges] == [499]  # type: ignore[attr-defined]
    me = await api.data(
        "{ me { transactions { edges { node { kind coins diamonds referenceId } } } } }", user=alice
    )
    nodes = [e["node"] for e in me["me"]["transactions"]["edges"]]
    assert nodes == [
        {"kind": "PURCHASE", "coins": 350, "diamonds": 0, "referenceId": result["purchase"]["id"]}
    ]


async def test_same_key_same_input_replays_first_result(
    api: Client, alice: dict[str, Any], services: Services
) -> None:
    first = await buy(api, alice, "k-1")
    again = await buy(api, alice, "k-1")
    assert again["purchase"]["id"] == first["purchase"]["id"]
    assert again["wallet"]["coins"] == 70
    assert len(services.payments.charges) == 1  # type: ignore[attr-defined]


async def test_same_key_different_input_is_conflict(api: Client, alice: dict[str, Any]) -> None:
    await buy(api, alice, "k-1", "coins-70")
    result = await buy(api, alice, "k-1", "coins-350")
    assert result["__typename"] == "IdempotencyConflict"
    assert await coins_of(api, alice) == 70


async def test_keys_are_scoped_to_the_caller(api: Client, alice: dict[str, Any]) -> None:
    bob = claims_for("bob")
    a = await buy(api, alice, "shared-key")
    b = await buy(api, bob, "shared-key")
    assert a["purchase"]["id"] != b["purchase"]["id"]
    assert await coins_of(api, bob) == 70


async def test_idempotency_record_has_ttl_of_at_least_a_day(
    alice: dict[str, Any], api: Client, services: Services
) -> None:
    import time

    await buy(api, alice, "k-ttl")
    record = await services.idempotency.get("alice#purchaseCoins#k-ttl")
    assert record is not None
    assert record["expiresAt"] >= time.time() + 24 * 3600 - 60


@pytest.mark.parametrize("token", ["tok_chargeDeclined", "tok_unknown"])
async def test_declined_payment_changes_nothing_and_replays(
    api: Client, alice: dict[str, Any], token: str, services: Services
) -> None:
    result = await buy(api, alice, "k-d", token=token)
    assert result["__typename"] == "PaymentDeclined"
    assert (await buy(api, alice, "k-d", token=token))["__typename"] == "PaymentDeclined"
    assert await coins_of(api, alice) == 0
    assert services.payments.charges == []  # type: ignore[attr-defined]


async def test_minors_and_missing_birthdates_cannot_buy(api: Client, minor: dict[str, Any]) -> None:
    assert (await buy(api, minor, "k"))["__typename"] == "AgeRestricted"
    no_birthdate = claims_for("anon-age", birthdate=None)
    assert (await buy(api, no_birthdate, "k"))["__typename"] == "AgeRestricted"
    assert await coins_of(api, minor) == 0


async def test_unknown_and_inactive_packages_are_not_found(
    api: Client, alice: dict[str, Any], admin: dict[str, Any]
) -> None:
    assert (await buy(api, alice, "k1", "coins-3"))["__typename"] == "NotFound"
    await api.data(
        'mutation { upsertCoinPackage(input: {id: "coins-70", coins: 70, '
        "priceAmount: 99, active: false}) { id } }",
        user=admin,
    )
    assert (await buy(api, alice, "k2", "coins-70"))["__typename"] == "NotFound"
    assert await coins_of(api, alice) == 0


@pytest.mark.parametrize(
    ("field", "input_"),
    [
        ("idempotencyKey", {"idempotencyKey": ""}),
        ("idempotencyKey", {"idempotencyKey": "x" * 65}),
        ("idempotencyKey", {"idempotencyKey": "has space"}),
        ("packageId", {"packageId": "bad id!"}),
        ("paymentToken", {"paymentToken": "  "}),
    ],
)
async def test_bad_input_names_the_field(
    api: Client, alice: dict[str, Any], field: str, input_: dict[str, str]
) -> None:
    variables = {
        "input": {
            "packageId": "coins-70",
            "paymentToken": "tok_visa",
            "idempotencyKey": "k",
            **input_,
        }
    }
    result = (await api.data(PURCHASE, variables, alice))["purchaseCoins"]
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == field
    assert await coins_of(api, alice) == 0


async def test_anonymous_purchase_is_unauthenticated(api: Client) -> None:
    variables = {
        "input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": "k"}
    }
    result = await api.gql(PURCHASE, variables)
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_past_purchases_keep_their_price(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    first = await buy(api, alice, "k1")
    await api.data(
        'mutation { upsertCoinPackage(input: {id: "coins-70", coins: 70, '
        "priceAmount: 149}) { id } }",
        user=admin,
    )
    second = await buy(api, alice, "k2")
    replay = await buy(api, alice, "k1")
    assert first["purchase"]["price"]["amount"] == 99
    assert second["purchase"]["price"]["amount"] == 149
    assert replay["purchase"]["price"]["amount"] == 99


async def test_concurrent_distinct_keys_each_land_once(
    api: Client, alice: dict[str, Any], services: Services
) -> None:
    results = await asyncio.gather(*(buy(api, alice, f"k-{i}") for i in range(12)))
    assert {r["__typename"] for r in results} == {"CoinsPurchased"}
    assert len({r["purchase"]["id"] for r in results}) == 12
    assert await coins_of(api, alice) == 12 * 70
    assert len(services.payments.charges) == 12  # type: ignore[attr-defined]


async def test_concurrent_repeats_of_one_key_land_once(
    api: Client, alice: dict[str, Any], services: Services
) -> None:
    results = await asyncio.gather(*(buy(api, alice, "same") for _ in range(12)))
    assert {r["__typename"] for r in results} == {"CoinsPurchased"}
    assert len({r["purchase"]["id"] for r in results}) == 1
    assert await coins_of(api, alice) == 70
    assert len(services.payments.charges) == 1  # type: ignore[attr-defined]


async def test_crash_between_charge_and_credit_then_retry(
    api: Client, alice: dict[str, Any], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the credit transaction fails once after the card was charged
    real_transact = services.dynamo.transact
    failures = []

    async def crash_once(actions: Any) -> None:
        if not failures:
            failures.append(1)
            raise ConnectionError("network died after the charge")
        await real_transact(actions)

    monkeypatch.setattr(services.dynamo, "transact", crash_once)
    # WHEN the first attempt errors (masked) and the client retries with the same key
    result = await api.gql(
        PURCHASE,
        {
            "input": {
                "packageId": "coins-70",
                "paymentToken": "tok_visa",
                "idempotencyKey": "retry-me",
            }
        },
        alice,
    )
    assert result["errors"][0]["message"] == "Internal error."
    assert "network" not in str(result)
    assert await coins_of(api, alice) == 0
    retried = await buy(api, alice, "retry-me")
    # THEN the coins are credited once and the card charged once
    assert retried["__typename"] == "CoinsPurchased"
    assert await coins_of(api, alice) == 70
    assert len(services.payments.charges) == 1  # type: ignore[attr-defined]
    assert (await buy(api, alice, "retry-me"))["purchase"]["id"] == retried["purchase"]["id"]


async def test_purchase_call_counts(api: Client, alice: dict[str, Any], calls: Any) -> None:
    await buy(api, alice, "warm")  # warms the catalog cache and creates the account
    calls.reset()
    variables = {
        "input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": "counted"}
    }
    await api.data(
        "mutation B($input: PurchaseCoinsInput!) { purchaseCoins(input: $input) "
        "{ ... on CoinsPurchased { purchase { id } } } }",
        variables,
        alice,
    )
    # one conditional PutItem claims the key, one GetItem sees the buyer is not restricted,
    # one UpdateItem keeps the provider's payment id before confirming, one transaction credits
    assert calls.counts() == {"PutItem": 1, "GetItem": 1, "UpdateItem": 1, "TransactWriteItems": 1}
    calls.reset()
    await buy(api, alice, "counted-2")  # also selects wallet: one more consistent GetItem
    assert calls.counts() == {"PutItem": 1, "GetItem": 2, "UpdateItem": 1, "TransactWriteItems": 1}
