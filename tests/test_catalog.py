"""The catalog: the seeded defaults, ordering, admin upserts and their limits."""

from __future__ import annotations

from typing import Any

from infra.services import Services
from resolvers.catalog import seed
from tests.clients import Client

CATALOG = (
    "{ coinPackages { id coins price { amount currency formatted } } "
    "gifts { id name coins diamonds } }"
)


async def test_default_catalog_is_public_and_cheapest_first(api: Client) -> None:
    data = await api.data(CATALOG)
    assert [(p["coins"], p["price"]["amount"]) for p in data["coinPackages"]] == [
        (70, 99),
        (350, 499),
        (700, 999),
        (1400, 1999),
        (3500, 4999),
        (7000, 9999),
        (17500, 24999),
    ]
    assert data["coinPackages"][-1]["price"]["formatted"] == "$249.99"
    assert [(g["name"], g["coins"]) for g in data["gifts"]] == [
        ("Rose", 1),
        ("Panda", 5),
        ("Love Bang", 25),
        ("Rainbow Puke", 100),
        ("Concert", 500),
        ("Galaxy", 1000),
        ("Drama Queen", 5000),
        ("Interstellar", 10000),
        ("Lion", 29999),
        ("Universe", 44999),
    ]
    assert all(g["coins"] == g["diamonds"] for g in data["gifts"])


async def test_seed_is_idempotent_and_keeps_admin_edits(
    api: Client, admin: dict[str, Any], services: Services
) -> None:
    await api.data(
        'mutation { upsertGift(input: {id: "rose", name: "Red Rose", coins: 2, '
        "diamonds: 2}) { id } }",
        user=admin,
    )
    assert await seed(services.catalog) == 0
    gifts = (await api.data("{ gifts { id name coins } }"))["gifts"]
    assert {"id": "rose", "name": "Red Rose", "coins": 2} in gifts


async def test_admin_upserts_add_reprice_and_hide(api: Client, admin: dict[str, Any]) -> None:
    add = await api.data(
        'mutation { upsertGift(input: {id: "heart", name: "Heart", coins: 3, '
        "diamonds: 3}) { id name coins diamonds } }",
        user=admin,
    )
    assert add["upsertGift"] == {"id": "heart", "name": "Heart", "coins": 3, "diamonds": 3}
    await api.data(
        'mutation { upsertCoinPackage(input: {id: "coins-70", coins: 70, '
        'priceAmount: 89, currency: "EUR"}) { id } }',
        user=admin,
    )
    await api.data(
        'mutation { upsertGift(input: {id: "rose", name: "Rose", coins: 1, '
        "diamonds: 1, active: false}) { id } }",
        user=admin,
    )
    data = await api.data(CATALOG)
    assert data["coinPackages"][0]["price"] == {
        "amount": 89,
        "currency": "EUR",
        "formatted": "€0.89",
    }
    assert "rose" not in [g["id"] for g in data["gifts"]]
    assert "heart" in [g["id"] for g in data["gifts"]]


async def test_upserts_are_admin_only(api: Client, alice: dict[str, Any]) -> None:
    doc = 'mutation { upsertGift(input: {id: "x", name: "X", coins: 1, diamonds: 1}) { id } }'
    assert (await api.gql(doc, user=alice))["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api.gql(doc))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_upsert_limits_name_the_field(api: Client, admin: dict[str, Any]) -> None:
    cases = {
        'upsertGift(input: {id: "g", name: "G", coins: 0, diamonds: 0})': "coins",
        'upsertGift(input: {id: "g", name: "G", coins: 5, diamonds: 6})': "diamonds",
        'upsertGift(input: {id: "g", name: " ", coins: 5, diamonds: 5})': "name",
        'upsertGift(input: {id: "bad id", name: "G", coins: 5, diamonds: 5})': "id",
        'upsertCoinPackage(input: {id: "p", coins: 10, priceAmount: -1})': "priceAmount",
        'upsertCoinPackage(input: {id: "p", coins: 10, priceAmount: 1, currency: "XX"})': (
            "currency"
        ),
    }
    for call, field in cases.items():
        result = await api.gql(f"mutation {{ {call} {{ id }} }}", user=admin)
        error = result["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, call
    assert "g" not in [g["id"] for g in (await api.data("{ gifts { id } }"))["gifts"]]


async def test_catalog_reads_are_cached(api: Client, calls: Any) -> None:
    await api.data(CATALOG)
    calls.reset()
    await api.data(CATALOG)
    assert calls.counts() == {}
