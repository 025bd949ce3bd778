"""The payment processor's webhooks (`POST /webhooks/stripe`), for the local server and the
GraphQL Lambda alike: verify the delivery, apply its event exactly once, answer.

- A delivery whose `Stripe-Signature` does not verify (forged, altered, or older than the
  library's 5-minute tolerance: a replay) is HTTP 400 and changes nothing.
- An event applied before (Stripe delivers at least once, retries for 3 days, and in no
  particular order) is remembered by its id for 30 days and answered 200 at once; each step of
  applying one is conditional anyway, so two deliveries racing cannot apply it twice.
- 2xx only once the event is durably applied. A transient failure (DynamoDB busy past the
  request's retry budget, a case waiting for a refund in progress) is 503 and a warning; an
  unexpected one is 500, logged with its stack trace but never shown. Stripe delivers both
  again, and every step resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from infra.dynamo import Unavailable, start_request
from infra.idempotency import COMPLETED
from infra.payments import ProviderUnavailable
from infra.services import Services
from resolvers import chargebacks
from resolvers.errors import TryAgain
from resolvers.purchases import REFUNDED, REFUNDING, credit, finish_refund

logger = logging.getLogger("livecoins")
Answer = tuple[int, dict[str, Any]]


async def stripe_webhook(services: Services, payload: bytes, signature: str | None) -> Answer:
    provider = services.payments
    verify = getattr(provider, "event", None)
    if verify is None:
        return 404, {"error": "this deployment takes no Stripe payments"}
    try:
        event = verify(payload, signature)
    except ValueError as error:
        logger.warning("refused a webhook delivery: %s", error)
        return 400, {"error": "the delivery is not a valid, signed Stripe event"}
    start_request(services.settings.retry_budget_seconds)
    try:
        if await services.idempotency.seen_event(event.id):
            return 200, {"received": True, "duplicate": True}
        # the verified payload, as plain data (the library's objects are not dicts)
        await apply(services, event.type, json.loads(payload)["data"]["object"])
        await services.idempotency.remember_event(event.id)
    except (TryAgain, Unavailable, ProviderUnavailable) as error:
        logger.warning("a webhook delivery to be retried: %r", error, extra={"event": event.id})
        return 503, {"error": "busy; deliver this event again"}
    except Exception:
        logger.exception("a webhook delivery failed", extra={"event": event.id})
        return 500, {"error": "Internal error."}
    logger.info("applied a Stripe event", extra={"event": event.id, "type": event.type})
    return 200, {"received": True}


async def apply(services: Services, kind: str, obj: Any) -> None:
    """One event's effect; safe to repeat (every step is conditional)."""
    if kind == "payment_intent.succeeded":
        key = (obj.get("metadata") or {}).get("recordKey")
        record = await services.idempotency.get(key) if key else None
        if record is not None and record.get("status") not in (COMPLETED,):
            if record.get("status") == "PENDING":
                await credit(services, record, obj["id"], obj.get("latest_charge") or obj["id"])
        return
    if kind == "charge.refunded":
        purchase = await services.purchases.by_charge(obj["id"])
        if purchase is None or purchase["status"] == REFUNDED:
            return
        if purchase["status"] == REFUNDING:  # an admin's refund whose finish had not landed
            await finish_refund(services, purchase, "stripe")
            return
        # refunded in the processor's dashboard: the money is gone, so coins are taken back
        # in proportion, rounded up, whatever the wallet holds
        coins = math.ceil(purchase["coins"] * obj["amount_refunded"] / obj["amount"])
        case_id = f"refund#{obj['id']}#{obj['amount_refunded']}"
        await chargebacks.open_case(services, case_id, purchase, coins, "REFUND")
        if obj["amount_refunded"] >= obj["amount"]:
            await services.purchases.mark_refunded(purchase["id"])
        return
    if kind in ("charge.dispute.created", "charge.dispute.closed"):
        purchase = await services.purchases.by_charge(obj["charge"])
        if purchase is None:
            logger.warning("a dispute of an unknown charge", extra={"charge": obj["charge"]})
            return
        if kind == "charge.dispute.created":
            coins = purchase["coins"]
            await chargebacks.open_case(services, obj["id"], purchase, coins, "CHARGEBACK")
        else:
            await chargebacks.close_dispute(services, obj["id"], purchase, obj["status"] == "won")
        return
    logger.info("ignored a Stripe event", extra={"type": kind})


def body(answer: Answer) -> str:
    return json.dumps(answer[1])
