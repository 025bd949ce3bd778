"""Reconciliation: purchases and refunds against the payment processor's charges and refunds
over a period (`livecoins reconcile --since 2026-11-01 --until 2026-12-01`), every difference
listed. Both sides are read whole for the period: the processor's charges and refunds
(paged), and this side's purchases by day (the purchases table's byDay index)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from infra.services import Services


@dataclass(frozen=True)
class Difference:
    kind: str
    reference: str  # the charge or purchase it concerns
    detail: str


async def reconcile(services: Services, since: date, until: date) -> list[Difference]:
    provider: Any = services.payments
    if provider is None or not hasattr(provider, "charges"):
        raise ValueError("reconciliation needs a processor that lists charges (Stripe)")
    start = int(datetime.combine(since, datetime.min.time(), UTC).timestamp())
    end = int(datetime.combine(until, datetime.min.time(), UTC).timestamp())
    charges = {c["id"]: c for c in await provider.charges(start, end)}
    refunds = await provider.refunds(start, end)
    purchases: dict[str, dict[str, Any]] = {}
    day = since
    while day < until:
        for item in await services.purchases.on_day(day.isoformat()):
            purchases[item["chargeId"]] = item
        day += timedelta(days=1)
    found: list[Difference] = []
    for charge_id, charge in charges.items():
        paid = charge.get("status", "succeeded") == "succeeded" and charge.get("paid", True)
        purchase: dict[str, Any] | None = purchases.get(charge_id)
        if purchase is None:
            purchase = await services.purchases.by_charge(charge_id)
        if purchase is None:
            if paid:
                meant = (charge.get("metadata") or {}).get("purchaseId", "an unknown purchase")
                found.append(
                    Difference(
                        "charged, never credited",
                        charge_id,
                        f"{charge['amount']} {charge['currency']} for {meant}",
                    )
                )
            continue
        if purchase["priceAmount"] != charge["amount"]:
            found.append(
                Difference(
                    "amount differs",
                    purchase["id"],
                    f"charged {charge['amount']}, purchase says {purchase['priceAmount']}",
                )
            )
        expected = math.ceil(
            purchase["coins"] * charge.get("amount_refunded", 0) / charge["amount"]
        )
        taken = (
            purchase["coins"] if purchase["status"] == "REFUNDED" else purchase.get("takenBack", 0)
        )
        if charge.get("disputed"):
            continue  # a dispute's coins follow its own case (resolvers/chargebacks.py)
        if taken != expected:
            found.append(
                Difference(
                    "refund differs",
                    purchase["id"],
                    f"the processor refunded {charge.get('amount_refunded', 0)} "
                    f"({expected} coins), {taken} coins were taken back",
                )
            )
    for charge_id, purchase in purchases.items():
        if charge_id not in charges:
            found.append(
                Difference("credited, no charge", purchase["id"], f"charge {charge_id} not found")
            )
    refunded = {r.get("charge") for r in refunds}
    for purchase in purchases.values():
        if purchase["status"] == "REFUNDED" and purchase["chargeId"] not in refunded:
            charge = charges.get(purchase["chargeId"])
            if not charge or not charge.get("amount_refunded"):
                found.append(
                    Difference("refunded here only", purchase["id"], "no refund at the processor")
                )
    return found
