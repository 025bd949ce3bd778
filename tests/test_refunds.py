"""refundPurchase: refund the charge and take the coins back, once, or change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from infra.services import Services
from tests.clients import Client, claims_for
from tests.gifting import go_live, send
from tests.test_purchases import buy, coins_of

REFUND = """mutation R($id: ID!) { refundPurchase(input: {purchaseId: $id}) { __typename
  ... on PurchaseRefunded { purchase { id status coins } }
  ... on InsufficientCoins { required available } ... on UserError { message } } }"""


async def refund(api: Client, admin: dict[str, Any], purchase: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(REFUND, {"id": purchase}, admin))["refundPurchase"]
    return result


async def test_refund_before_spending(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    kept = (await buy(api, alice, "k1"))["purchase"]["id"]
    refunded = (await buy(api, alice, "k2", "coins-350"))["purchase"]["id"]
    result = await refund(api, admin, refunded)
    assert result == {
        "__typename": "PurchaseRefunded",
        "purchase": {"id": refunded, "status": "REFUNDED", "coins": 350},
    }
    assert await coins_of(api, alice) == 70
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]
    entries = (
        await api.data(
            "{ me { transactions(first: 1) { edges { node { kind coins referenceId } } } } }",
            user=alice,
        )
    )["me"]["transactions"]
    assert entries["edges"][0]["node"] == {"kind": "REFUND", "coins": -350, "referenceId": refunded}
    # a second refund changes nothing
    assert (await refund(api, admin, refunded))["purchase"]["status"] == "REFUNDED"
    assert await coins_of(api, alice) == 70
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]
    # the purchase is replayed with its new status
    assert (await buy(api, alice, "k2", "coins-350"))["purchase"]["status"] == "REFUNDED"
    assert kept


async def test_refund_after_spending_changes_nothing(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    purchase = (await buy(api, alice, "k"))["purchase"]["id"]
    stream = await go_live(api, claims_for("creator"))
    assert (await send(api, alice, "g", gift="rainbow-puke", stream=stream))["__typename"] == (
        "InsufficientCoins"
    )
    await send(api, alice, "g2", gift="love-bang", stream=stream, quantity=2)
    result = await refund(api, admin, purchase)
    assert (result["__typename"], result["required"], result["available"]) == (
        "InsufficientCoins",
        70,
        20,
    )
    assert await coins_of(api, alice) == 20
    assert services.payments.refunds == []  # type: ignore[attr-defined]
    status = await api.data(REFUND, {"id": purchase}, admin)
    assert status["refundPurchase"]["__typename"] == "InsufficientCoins"


async def test_refund_rules(api: Client, alice: dict[str, Any], admin: dict[str, Any]) -> None:
    purchase = (await buy(api, alice, "k"))["purchase"]["id"]
    forbidden = await api.gql(REFUND, {"id": purchase}, alice)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await refund(api, admin, "pur_nope"))["__typename"] == "NotFound"
    assert (await refund(api, admin, "nonsense"))["__typename"] == "NotFound"


async def test_concurrent_refunds_refund_once(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    purchase = (await buy(api, alice, "k", "coins-700"))["purchase"]["id"]
    await buy(api, alice, "k2")
    results = await asyncio.gather(*(refund(api, admin, purchase) for _ in range(6)))
    assert {r["__typename"] for r in results} == {"PurchaseRefunded"}
    assert await coins_of(api, alice) == 70
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]
